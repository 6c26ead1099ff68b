"""ClickHouse outage: the sink waits, keeps its offsets, the lag monitor says so, nothing is lost.

The worker runs with the test-only fault ``FAULT_CLICKHOUSE_DOWN_AFTER_S`` /
``FAULT_CLICKHOUSE_DOWN_FOR_S``: every insert and command of its ClickHouse facade fails like an
unreachable server during a window measured from the facade's creation, here for 60 s: long
enough for the lag status (10 samples at ``LAG_POLL_SECONDS=1``) to judge the sink group, and
for offset samples 6 s, 18 s and ~55 s into the window.

The window opens ``DOWN_AFTER_S`` (30 s) after ClickHouse is opened rather than ~5 s: on a
loaded 2-core machine shared with other test runs the Faust agents were seen to need more than
12 s to join their group and produce, and the sink must have committed on ``registry.activity``
before the outage, or the lag monitor (which only knows partitions a group has committed on)
would have nothing to judge. The simulator publishes 30 000 records at 350/s (~86 s), so records
still arrive on ``registry.activity`` well into the window.

Asserted during the outage: the worker keeps its PID (no crash loop), the sink group's committed
offsets on ``registry.activity`` do not move while records keep arriving there, and the sink
group's status in ``GET /api/v1/lag`` is not ``OK``. After recovery: the ledger and the buckets
equal the oracle exactly, without duplicates.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from streams.kafka.topics import ensure_lender_topics
from streams.lender.population import lenders
from streams.lender.simulator import SimulationParams, run_simulation
from streams.settings import Settings
from tests.support.faults import assert_matches_oracle, committed_offsets, group_status
from tests.support.pipeline import dump_clickhouse, group_lag, wait_drained

pytestmark = pytest.mark.integration

DOWN_AFTER_S = 30.0
DOWN_FOR_S = 60.0
_DOWN = re.compile(r"ClickHouse insert failed \(fault injection")


async def _wait_log(worker, pattern: re.Pattern[str], timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.proc.poll() is None, worker.log_tail()
        if pattern.search(worker.log_path.read_text(errors="replace")):
            return time.monotonic()
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {pattern.pattern!r} in the worker log:\n{worker.log_tail()}")


async def test_clickhouse_outage_holds_offsets_and_loses_nothing(
        settings: Settings, worker_factory, tmp_path) -> None:
    params = SimulationParams(seed=4242, lenders=3, borrowers=1500, events=30_000, days=20,
                              consent_rate=0.5, duplicate_rate=0.01, late_rate=0.02,
                              malformed_rate=0.003, rate=350)
    # every lender topic exists before the worker starts: this test is about the sink, not
    # about discovering lenders (which restarts the worker in place)
    for lender in lenders(params.lenders):
        await ensure_lender_topics(settings, lender.lender_id)
    simulation = asyncio.create_task(run_simulation(settings, params))
    worker = worker_factory({"FAULT_CLICKHOUSE_DOWN_AFTER_S": str(DOWN_AFTER_S),
                             "FAULT_CLICKHOUSE_DOWN_FOR_S": str(DOWN_FOR_S),
                             "LAG_POLL_SECONDS": "1"})
    pid = worker.proc.pid
    started = time.monotonic()
    # the sink's first failed insert: its batches are at most SINK_BATCH_MS apart while records
    # flow, so this is the start of the window to a fraction of a second (never before it)
    down_from = await _wait_log(worker, _DOWN, timeout=150)
    down_until = down_from + DOWN_FOR_S  # an upper bound of the window's end
    activity = settings.topics.activity
    sink_group = f"{settings.registry_app_id}-sink"

    def is_activity(topic: str) -> bool:
        return topic == activity

    before = await committed_offsets(settings, sink_group, is_activity)
    assert sum(before.values()) > 0, "the sink must have committed before the outage"

    await asyncio.sleep(max(0.0, down_from + 6 - time.monotonic()))
    first = await committed_offsets(settings, sink_group, is_activity)
    lag_first = (await group_lag(settings))["sink"]
    statuses: list[str | None] = []
    while time.monotonic() < down_from + 18:
        assert worker.proc.poll() is None and worker.proc.pid == pid, worker.log_tail()
        statuses.append(await group_status(settings, sink_group))
        await asyncio.sleep(1.0)
    second = await committed_offsets(settings, sink_group, is_activity)
    lag_second = (await group_lag(settings))["sink"]
    while time.monotonic() < down_until - 4:
        assert worker.proc.poll() is None, worker.log_tail()
        statuses.append(await group_status(settings, sink_group))
        await asyncio.sleep(1.0)
    last = await committed_offsets(settings, sink_group, is_activity)

    result = await simulation
    truth = result.truth
    assert result.acked == result.sent
    drained_after = await wait_drained(settings, timeout=300, worker=worker)
    recovered_in = time.monotonic() - down_until
    assert worker.proc.poll() is None and worker.proc.pid == pid
    log = worker.log_path.read_text(errors="replace")
    failures = log.count("ClickHouse insert failed")
    assert worker.stop() == 0, worker.log_tail()

    print(f"[clickhouse-outage] first failed insert {down_from - started:.1f}s after the worker "
          f"started (window: +{DOWN_AFTER_S:.0f}s after ClickHouse opened, for "
          f"{DOWN_FOR_S:.0f}s); sink lag "
          f"{lag_first} -> {lag_second} during it; statuses {statuses}; failed inserts logged "
          f"{failures}; drained {drained_after:.1f}s after start of wait "
          f"({recovered_in:.1f}s after the outage); admitted {len(truth.admitted)}")
    assert first == second == last, "the sink committed during the outage"
    assert lag_second > lag_first > 0, "records kept arriving on registry.activity"
    non_ok = [s for s in statuses if s not in (None, "OK")]
    assert non_ok, f"the sink group never left OK: {statuses}"
    assert failures > 0
    assert "Traceback" not in log
    assert_matches_oracle(dump_clickhouse(settings), truth.admitted, settings)
