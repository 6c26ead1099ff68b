"""Session-scoped real Kafka, Redis and ClickHouse; per-test isolation by name.

Each test gets its own topic namespace, consumer-group prefix, Redis key prefix and ClickHouse
database, so tests never see each other's data on the shared services.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from consumers.clickhouse.client import ClickHouse, connect
from consumers.clickhouse.migrations import apply_migrations
from streams.settings import Settings
from tests.support.services import (
    REPO,
    Services,
    container_services,
    docker_available,
    free_port,
    local_services,
    settings_env,
)

ARTIFACTS = REPO / "tests" / "artifacts"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On CI (``CI`` set, as ``.ci/run`` is run), a skipped test FAILS: a few tests skip
    themselves where a testcontainers broker lacks the local script's listeners or cluster,
    and on CI, which takes the local path, every one of them must run."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped on CI, where every test must run: {reason}"


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    if docker_available():
        with container_services() as found:
            yield found
    else:
        with local_services(tmp_path_factory.mktemp("services")) as found:
            yield found


@pytest.fixture(scope="session")
def kafka_sasl_bootstrap(services: Services) -> str:
    """The broker's SASL_PLAINTEXT (SCRAM-SHA-512, ACL-checked) listener; skip if it has none."""
    if not services.kafka_sasl_bootstrap:
        pytest.skip("the test broker has no SASL listener (testcontainers)")
    return services.kafka_sasl_bootstrap


@pytest.fixture(scope="session")
def kafka_tls(services: Services) -> Services:
    """The services, asserted to include the broker's SSL (client certificate required) and
    SASL_SSL (SCRAM-SHA-512) listeners and the CA file that verifies them; skip if none."""
    if not services.kafka_sasl_ssl_bootstrap:
        pytest.skip("the test broker has no TLS listeners (testcontainers)")
    return services


@pytest.fixture
def client_cert(kafka_tls: Services, tmp_path: Path) -> Callable[[str], tuple[Path, Path]]:
    """``client_cert(name)``: a certificate CN=name signed by the test broker's CA and its key,
    as (certificate file, key file), made by ``infra/kafka/kafka.sh client-cert``."""

    def issue(name: str) -> tuple[Path, Path]:
        folder = tmp_path / "client-certs"
        subprocess.run([REPO / "infra/kafka/kafka.sh", "client-cert", name, str(folder)],
                       env={**os.environ, "KAFKA_DATA_DIR": kafka_tls.kafka_data_dir},
                       check=True, capture_output=True, timeout=60)
        return folder / f"{name}.pem", folder / f"{name}.key"

    return issue


@pytest.fixture(scope="session")
def clickhouse(services: Services, tmp_path_factory: pytest.TempPathFactory) -> ClickHouse:
    """ClickHouse for tests that query it in this process, migrations applied.

    Embedded chDB admits one data folder per process, so the whole session shares one folder
    (and one database); workers started by tests use folders of their own.
    """
    ch = connect(Settings(
        clickhouse_url=services.clickhouse_url,
        registry_data_dir=tmp_path_factory.mktemp("clickhouse"),
        clickhouse_database=unique("s"),
    ))
    apply_migrations(ch)
    return ch


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(services: Services, tmp_path: Path) -> Settings:
    """Settings of an isolated registry deployment on the shared test services."""
    name = unique("t")
    return Settings(
        kafka_bootstrap=services.kafka_bootstrap,
        redis_url=services.redis_url,
        clickhouse_url=services.clickhouse_url,
        clickhouse_database=name,
        kafka_namespace=f"{name}.",
        registry_app_id=name,
        registry_data_dir=tmp_path / "data",
        api_port=free_port(),
        registry_partitions=6,
    )


class WorkerProcess:
    """A ``registry`` subprocess (``registry worker`` unless ``args`` says otherwise, e.g.
    ``["worker", "--role", "ops"]``) with its log in the test's folder."""

    def __init__(self, settings: Settings, log_path: Path, extra_env: dict[str, str],
                 args: list[str] | None = None) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", *(args or ["worker"])],
            env={**settings_env(settings), **extra_env}, cwd=REPO,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def stop(self, timeout: float = 40.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def worker_factory(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(extra_env: dict[str, str] | None = None,
              args: list[str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"worker-{len(started)}.log",
                               extra_env or {}, args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()

