"""Two stream workers share the partitions and stay exact through rebalances.

A seeded simulation with duplicates, late and non-consented events and cancels (some beyond
the grace period, some published before the event they cancel) is published at a fixed rate
while stream workers come and go: worker A starts alone; mid-stream worker B joins (the
intake and Faust groups rebalance, and the borrower state of the partitions B takes moves to B
through the changelog); later A is SIGKILLed (its partitions, state included, move to B). An
``ops`` worker runs the sink throughout. After the drain, ClickHouse equals the oracle exactly:
ledger (cancels included), daily and hourly buckets, rejections per lender and reason.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.lender.simulator import SimulationParams, run_simulation
from streams.settings import Settings
from tests.support.faults import assert_matches_oracle, committed_offsets
from tests.support.pipeline import dump_clickhouse, wait_drained

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STREAM = ["worker", "--role", "stream"]
OPS = ["worker", "--role", "ops"]


async def _intake_committed(settings: Settings) -> int:
    offsets = await committed_offsets(settings, f"{settings.registry_app_id}-intake",
                                      lambda t: t.endswith(".loans"))
    return sum(offsets.values())


async def _until_intake(settings: Settings, at_least: int, workers: list, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await _intake_committed(settings) < at_least:
        for w in workers:
            assert w.proc.poll() is None, w.log_tail()
        assert time.monotonic() < deadline, f"intake did not reach {at_least} records"
        await asyncio.sleep(0.5)


async def test_second_worker_joins_then_first_is_killed_and_results_stay_exact(
        settings: Settings, worker_factory, tmp_path) -> None:
    params = SimulationParams(seed=4242, lenders=4, borrowers=2000, events=24_000, days=20,
                              consent_rate=0.5, duplicate_rate=0.02, late_rate=0.03,
                              malformed_rate=0.003, cancel_rate=0.01, rate=800)
    simulation = asyncio.create_task(run_simulation(settings, params))
    ops = worker_factory(args=OPS)
    a = worker_factory(args=STREAM)
    timeline: dict[str, float] = {}
    started = time.monotonic()
    await _until_intake(settings, 4000, [ops, a], timeout=180)
    b = worker_factory(args=STREAM)
    timeline["b_joined_s"] = time.monotonic() - started
    timeline["records_at_join"] = await _intake_committed(settings)
    await _until_intake(settings, timeline["records_at_join"] + 6000, [ops, a, b], timeout=180)
    a.kill()
    timeline["a_killed_s"] = time.monotonic() - started
    timeline["records_at_kill"] = await _intake_committed(settings)
    result = await simulation
    assert result.acked == result.sent
    timeline["published_s"] = time.monotonic() - started
    await wait_drained(settings, timeout=300, worker=b)
    timeline["drained_s"] = time.monotonic() - started
    assert b.stop() == 0, b.log_tail()
    assert ops.stop() == 0, ops.log_tail()
    truth = result.truth
    print(f"\n[rebalance] {timeline}; published {result.sent}, admitted {len(truth.admitted)}, "
          f"cancels {truth.cancels}")
    # cancels withdraw admitted events, some beyond the grace period, some published before
    # the event they cancel
    assert truth.cancels["effective"] >= 40, truth.cancels
    assert truth.cancels["effective_late"] >= 3, truth.cancels
    assert truth.cancels["effective_before_target"] >= 3, truth.cancels
    assert timeline["records_at_kill"] < result.truth.published["loans"], "A died after the work"
    stored = dump_clickhouse(settings)
    assert_matches_oracle(stored, truth.admitted, settings)
    rejections = {(lender, reason): n for lender, reason, n in stored["rejections"]}
    assert rejections == {(lender, reason): n for lender, reasons in truth.rejections.items()
                          for reason, n in reasons.items()}
