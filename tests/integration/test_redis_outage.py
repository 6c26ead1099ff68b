"""Redis outage: admission fails closed, waits, and resumes exactly where it stopped.

The test runs its own Redis (``infra/redis/redis.sh`` on a free port, appendonly, its own data
folder), so stopping it hurts no other test. While the worker processes a rate-limited
simulation, Redis is shut down for ~15 s and then started again on the same data folder, so the
consent intervals and dedup marks written before the outage are still there.

Asserted during the outage: the worker keeps its PID, and the Faust group's committed offsets on
``registry.validated`` do not move (no event is decided without Redis, so none is acknowledged;
bulk intake, which needs no Redis, may go on reading lender topics). After the restart: the
ClickHouse ledger and buckets equal the oracle exactly — no event admitted without a consent
decision, none lost, none twice.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.lender.simulator import SimulationParams, run_simulation
from streams.settings import Settings
from tests.support.faults import assert_matches_oracle, committed_offsets
from tests.support.pipeline import dump_clickhouse, wait_drained
from tests.support.services import REPO, free_port

pytestmark = pytest.mark.integration

OUTAGE_S = 15.0
REDIS_SH = REPO / "infra/redis/redis.sh"


class DedicatedRedis:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, "REDIS_PORT": str(self.port), "REDIS_DATA_DIR": str(data_dir)}
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def run(self, action: str) -> None:
        subprocess.run([REDIS_SH, action], env=self.env, check=True, timeout=60)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[DedicatedRedis]:
    server = DedicatedRedis(tmp_path / "redis")
    server.run("start")
    yield server
    server.run("stop")


async def test_redis_outage_admits_nothing_undecided_and_loses_nothing(
        settings: Settings, redis_server: DedicatedRedis, worker_factory, tmp_path) -> None:
    settings.redis_url = redis_server.url  # the worker factory starts workers with these settings
    params = SimulationParams(seed=777, lenders=3, borrowers=1500, events=15_000, days=20,
                              consent_rate=0.5, duplicate_rate=0.02, late_rate=0.02,
                              malformed_rate=0.003, rate=400)
    simulation = asyncio.create_task(run_simulation(settings, params))
    worker = worker_factory()
    try:
        pid = worker.proc.pid
        loans = re.compile(settings.topics.loans_pattern)
        group, intake = settings.registry_app_id, f"{settings.registry_app_id}-intake"

        def is_loans(topic: str) -> bool:
            return bool(loans.match(topic))

        def is_validated(topic: str) -> bool:
            return topic == settings.topics.validated

        # mid-stream: intake has read 2,000 lender records and the Faust group (which decides
        # with Redis) has committed batch records of them
        deadline = time.monotonic() + 150
        while (sum((await committed_offsets(settings, intake, is_loans)).values()) < 2000
               or not sum((await committed_offsets(settings, group, is_validated)).values())):
            assert worker.proc.poll() is None, worker.log_tail()
            assert time.monotonic() < deadline, worker.log_tail()
            await asyncio.sleep(0.5)
        before = await committed_offsets(settings, group, is_validated)
        stopped_at = time.monotonic()
        await asyncio.to_thread(redis_server.run, "stop")
        await asyncio.sleep(4.0)  # commits of events decided before the stop may still land
        first = await committed_offsets(settings, group, is_validated)
        await asyncio.sleep(max(0.0, stopped_at + OUTAGE_S - 1 - time.monotonic()))
        second = await committed_offsets(settings, group, is_validated)
        assert worker.proc.poll() is None and worker.proc.pid == pid, worker.log_tail()
        await asyncio.to_thread(redis_server.run, "start")
        outage = time.monotonic() - stopped_at

        result = await simulation
        assert result.acked == result.sent
        drained = await wait_drained(settings, timeout=300, worker=worker)
        assert worker.proc.poll() is None and worker.proc.pid == pid
        log = worker.log_path.read_text(errors="replace")
        waits = log.count("redis unavailable")
    finally:
        code = worker.stop()  # before the fixture stops Redis
    assert code == 0, worker.log_tail()
    truth = result.truth
    print(f"[redis-outage] Redis down {outage:.1f}s; validated batches committed before stop "
          f"{sum(before.values())}, +4s {sum(first.values())}, at end of outage "
          f"{sum(second.values())}; 'redis unavailable' waits logged {waits}; "
          f"drained {drained:.1f}s after the simulation ended; published {result.sent}, admitted "
          f"{len(truth.admitted)}")
    assert first == second, "the stream committed loan offsets while Redis was down"
    assert waits > 0
    assert_matches_oracle(dump_clickhouse(settings), truth.admitted, settings)
