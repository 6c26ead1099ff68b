"""Reliability under SIGKILL: nothing lost, nothing counted twice.

The worker is killed with SIGKILL at random moments while it works through a seeded simulation
(>= 100,000 events over 6 partitions); some incarnations kill themselves right after a
ClickHouse insert and before the offset commit. The workload holds cancels (some beyond the
grace period, some published before the event they cancel). After the final drain the stored
results must equal the ground truth exactly. A negative control runs the same scenario with
de-duplication switched off and must come out WRONG, which proves the comparison can see
double counting.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from streams.lender.simulator import SimulationParams, run_simulation
from streams.settings import Settings
from tests.support.oracle import (
    expected_buckets,
    expected_rows,
    ledger_difference,
    stale_last_draw,
    stored_buckets,
)
from tests.support.pipeline import dump_clickhouse, group_lag, wait_drained

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def _kill_scenario(settings: Settings, worker_factory, tmp_path, *, events: int,
                         kills: int, seed: int, extra_env: dict[str, str]
                         ) -> tuple[dict[str, Any], Any, dict[str, int]]:
    params = SimulationParams(seed=seed, lenders=4, borrowers=2500, events=events, days=30,
                              consent_rate=0.5, duplicate_rate=0.02, late_rate=0.03,
                              malformed_rate=0.003, cancel_rate=0.003)
    truth = (await run_simulation(settings, params, truth_path=tmp_path / "truth.json")).truth
    rng = random.Random(seed)
    figures = {"sigkill_random": 0, "sigkill_after_insert": 0}
    for round_no in range(kills):
        after_insert = round_no % 3 == 2  # every third incarnation dies inside the sink
        env = dict(extra_env)
        if after_insert:
            env["FAULT_KILL_AFTER_INSERT_CYCLES"] = str(rng.randint(2, 6))
        worker = worker_factory(env)
        if after_insert:
            # wait for the self-inflicted SIGKILL between insert and commit
            for _ in range(240):
                if worker.proc.poll() is not None:
                    break
                await asyncio.sleep(0.25)
            else:
                worker.kill()  # too slow to reach the insert: a SIGKILL at a random moment
            if "fault injection: SIGKILL after insert" in worker.log_path.read_text(
                    errors="replace"):
                figures["sigkill_after_insert"] += 1
            else:
                figures["sigkill_random"] += 1
        else:
            await asyncio.sleep(rng.uniform(1.5, 6.0))
            worker.kill()
            figures["sigkill_random"] += 1
        worker.stop()
    figures["lag_before_final_drain"] = sum((await group_lag(settings)).values())
    final = worker_factory(dict(extra_env))
    await wait_drained(settings, timeout=420, worker=final)
    assert final.stop() == 0, final.log_tail()
    return dump_clickhouse(settings), truth, figures


async def test_sigkill_storm_loses_nothing_and_counts_nothing_twice(
        settings: Settings, worker_factory, tmp_path) -> None:
    stored, truth, figures = await _kill_scenario(
        settings, worker_factory, tmp_path, events=100_000, kills=10, seed=314, extra_env={})
    print(f"[kill] {figures}, admitted {len(truth.admitted)}, cancels {truth.cancels}")
    # cancels withdraw admitted events, some beyond the grace period, some published before
    # the event they cancel (seed 314: 137 effective, 18 late, 19 before)
    assert truth.cancels["effective"] >= 60, truth.cancels
    assert truth.cancels["effective_late"] >= 5, truth.cancels
    assert truth.cancels["effective_before_target"] >= 5, truth.cancels
    assert figures["sigkill_random"] + figures["sigkill_after_insert"] >= 10
    assert figures["sigkill_after_insert"] >= 1
    assert figures["lag_before_final_drain"] > 0, "the kills must interrupt real work"
    assert stored["ledger_rows"] == len(truth.admitted)  # cancels included
    assert stored["ledger_duplicates"] == 0
    wrong_ledger = ledger_difference(stored["ledger"], truth.admitted)
    assert not wrong_ledger, wrong_ledger
    daily, hourly = expected_buckets(truth.admitted, settings.pseudonym_key_bytes, settings.tz)
    assert stored_buckets(stored["daily"]) == expected_rows(daily)
    assert stored_buckets(stored["hourly"]) == expected_rows(hourly)
    assert not stale_last_draw(stored["daily"]) and not stale_last_draw(stored["hourly"])
    rejections = {(lender, reason): n for lender, reason, n in stored["rejections"]}
    assert rejections == {(lender, reason): n for lender, reasons in truth.rejections.items()
                          for reason, n in reasons.items()}


async def test_negative_control_without_dedup_the_kill_test_fails(
        settings: Settings, worker_factory, tmp_path) -> None:
    stored, truth, _ = await _kill_scenario(
        settings, worker_factory, tmp_path, events=20_000, kills=3, seed=271,
        extra_env={"TEST_DISABLE_DEDUP": "1"})
    daily, _ = expected_buckets(truth.admitted, settings.pseudonym_key_bytes, settings.tz)
    stored_draws = sum(r[2] for r in stored["daily"])
    expected_draws = sum(v["draws"] for v in daily.values())
    # the same comparison as the real test must fail: duplicates were counted
    assert stored_buckets(stored["daily"]) != expected_rows(daily)
    assert stored_draws > expected_draws
