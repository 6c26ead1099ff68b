"""Real services for the test suite: testcontainers where a Docker engine answers, otherwise
the project's own local scripts (a KRaft broker from Maven Central jars, Debian's redis-server)
and embedded ClickHouse. Nothing here is a mock."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    redis_url: str
    clickhouse_url: str  # "" = embedded chDB
    how: str
    kafka_sasl_bootstrap: str = ""  # SASL_PLAINTEXT/SCRAM-SHA-512 listener with ACLs; "" = none
    kafka_ssl_bootstrap: str = ""  # SSL listener, client certificate required; "" = none
    kafka_sasl_ssl_bootstrap: str = ""  # SASL_SSL/SCRAM-SHA-512 listener with ACLs; "" = none
    kafka_ca_file: str = ""  # PEM of the CA that signed the broker's TLS certificate
    kafka_data_dir: str = ""  # the local broker's folder (kafka.sh client-cert needs it)


def free_port(pair: bool = False) -> int:
    """A free TCP port on 127.0.0.1 (with ``pair``, the next port is free too)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not pair:
            return port
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair")


def docker_available() -> bool:
    if os.environ.get("REGISTRY_TEST_SERVICES") == "local":
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@contextmanager
def container_services() -> Iterator[Services]:
    from testcontainers.clickhouse import ClickHouseContainer
    from testcontainers.kafka import KafkaContainer
    from testcontainers.redis import RedisContainer

    with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka, \
            RedisContainer("redis:7") as redis, \
            ClickHouseContainer("clickhouse/clickhouse-server:25.8") as clickhouse:
        redis_url = (f"redis://{redis.get_container_host_ip()}:"
                     f"{redis.get_exposed_port(6379)}/0")
        ch_url = (f"http://{clickhouse.username}:{clickhouse.password}@"
                  f"{clickhouse.get_container_host_ip()}:{clickhouse.get_exposed_port(8123)}")
        yield Services(kafka.get_bootstrap_server(), redis_url, ch_url, "testcontainers")


@contextmanager
def local_services(workdir: Path) -> Iterator[Services]:
    kafka_port, redis_port = free_port(pair=True), free_port()
    taken = {kafka_port, kafka_port + 1, redis_port}
    extra: list[int] = []
    while len(extra) < 3:  # SASL_PLAINTEXT, SSL, SASL_SSL
        port = free_port()
        if port not in taken:
            taken.add(port)
            extra.append(port)
    sasl_port, ssl_port, sasl_ssl_port = extra
    kafka_dir = workdir / "kafka"
    kafka_env = {**os.environ, "KAFKA_PORT": str(kafka_port), "KAFKA_SASL_PORT": str(sasl_port),
                 "KAFKA_SSL_PORT": str(ssl_port), "KAFKA_SASL_SSL_PORT": str(sasl_ssl_port),
                 "KAFKA_DATA_DIR": str(kafka_dir), "KAFKA_HEAP": "768m",
                 "KAFKA_PYTHON": sys.executable}
    redis_env = {**os.environ, "REDIS_PORT": str(redis_port),
                 "REDIS_DATA_DIR": str(workdir / "redis")}
    kafka_sh, redis_sh = REPO / "infra/kafka/kafka.sh", REPO / "infra/redis/redis.sh"
    subprocess.run([kafka_sh, "start"], env=kafka_env, check=True, timeout=600)
    try:
        subprocess.run([redis_sh, "start"], env=redis_env, check=True, timeout=120)
        try:
            yield Services(f"127.0.0.1:{kafka_port}", f"redis://127.0.0.1:{redis_port}/0", "",
                           "local", kafka_sasl_bootstrap=f"127.0.0.1:{sasl_port}",
                           kafka_ssl_bootstrap=f"127.0.0.1:{ssl_port}",
                           kafka_sasl_ssl_bootstrap=f"127.0.0.1:{sasl_ssl_port}",
                           kafka_ca_file=str(kafka_dir / "tls" / "ca.pem"),
                           kafka_data_dir=str(kafka_dir))
        finally:
            subprocess.run([redis_sh, "stop"], env=redis_env, timeout=60)
    finally:
        subprocess.run([kafka_sh, "stop"], env=kafka_env, timeout=60)


@dataclass(frozen=True)
class LocalCluster:
    """A three-node KRaft cluster run by ``infra/kafka/cluster.sh`` (node ids 1, 2, 3)."""

    bootstrap: str
    env: dict[str, str]

    def node_port(self, node: int) -> int:
        return int(self.bootstrap.split(",")[node - 1].rsplit(":", 1)[1])

    def _run(self, *args: str, timeout: float = 300) -> None:
        subprocess.run([REPO / "infra/kafka/cluster.sh", *args], env=self.env, check=True,
                       timeout=timeout)

    def kill_node(self, node: int) -> None:
        """SIGKILL node ``node``'s JVM and return once it is gone."""
        self._run("kill-node", str(node), timeout=60)

    def start_node(self, node: int) -> None:
        """Start node ``node`` again on its ports and folder; returns once it answers."""
        self._run("start-node", str(node))


@contextmanager
def local_cluster(workdir: Path, heap: str = "384m") -> Iterator[LocalCluster]:
    """Three combined broker+controller nodes on free ports of 127.0.0.1 in ``workdir``;
    stopped (all nodes) on exit."""
    ports: list[int] = []
    while len(ports) < 3:
        port = free_port(pair=True)
        if not {port, port + 1} & {p + d for p in ports for d in (-1, 0, 1)}:
            ports.append(port)
    env = {**os.environ, "KAFKA_CLUSTER_DIR": str(workdir),
           "KAFKA_CLUSTER_PORTS": ",".join(map(str, ports)), "KAFKA_HEAP": heap,
           "KAFKA_PYTHON": sys.executable, "KAFKA_START_TIMEOUT": "300"}
    cluster = LocalCluster(",".join(f"127.0.0.1:{p}" for p in ports), env)
    try:
        cluster._run("start", timeout=600)
        yield cluster
    finally:
        subprocess.run([REPO / "infra/kafka/cluster.sh", "stop"], env=env, timeout=120)


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment that makes a subprocess (worker, CLI) use ``settings``."""
    return settings.child_env()
