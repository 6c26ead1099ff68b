"""The heart of the registry: a seeded simulation with duplicates, late events (also beyond
the grace period), out-of-order, malformed and non-consented events, and cancels (also beyond
the grace period, also published before the event they cancel) goes through the real pipeline
(Kafka -> Faust worker -> Redis -> ClickHouse); afterwards every borrower's daily and hourly
activity equals the independently computed ground truth exactly, and the ledger holds every
admitted event, cancels included."""

from __future__ import annotations

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
from tests.support.pipeline import dump_clickhouse, wait_drained

pytestmark = pytest.mark.integration


async def test_pipeline_matches_ground_truth_exactly(settings: Settings, worker_factory,
                                                     tmp_path) -> None:
    params = SimulationParams(seed=20261122, lenders=5, borrowers=3000, events=100_000,
                              days=30, consent_rate=0.35, duplicate_rate=0.02, late_rate=0.03,
                              malformed_rate=0.005, cancel_rate=0.003)
    result = await run_simulation(settings, params, truth_path=tmp_path / "truth.json",
                                  progress=True)
    truth = result.truth
    assert result.acked == result.sent
    assert len(truth.admitted) > 20_000
    assert truth.rejected_total("DUPLICATE") > 0 and truth.rejected_total("NO_CONSENT") > 0
    # cancels that withdraw an admitted event, some beyond the grace period, some published
    # before the event they cancel (seed 20261122: 82 effective, 14 late, 11 before)
    print(f"[exactness] cancels {truth.cancels}")
    assert truth.cancels["effective"] >= 40, truth.cancels
    assert truth.cancels["effective_late"] >= 5, truth.cancels
    assert truth.cancels["effective_before_target"] >= 5, truth.cancels

    worker = worker_factory()
    await wait_drained(settings, timeout=420, worker=worker)
    assert worker.stop() == 0, worker.log_tail()

    stored = dump_clickhouse(settings)
    assert stored["ledger_rows"] == len(truth.admitted)  # cancels included
    assert stored["ledger_duplicates"] == 0
    wrong_ledger = ledger_difference(stored["ledger"], truth.admitted)
    assert not wrong_ledger, wrong_ledger

    expected_daily, expected_hourly = expected_buckets(
        truth.admitted, settings.pseudonym_key_bytes, settings.tz)
    daily, hourly = stored_buckets(stored["daily"]), stored_buckets(stored["hourly"])
    assert len(daily) == len(expected_daily)
    assert daily == expected_rows(expected_daily)
    assert hourly == expected_rows(expected_hourly)
    assert not stale_last_draw(stored["daily"]) and not stale_last_draw(stored["hourly"])
    # the cancels show: an oracle that ignored them would not match what is stored
    ignoring, _ = expected_buckets([ev for ev in truth.admitted if ev.event_type != "cancel"],
                                   settings.pseudonym_key_bytes, settings.tz)
    assert daily != expected_rows(ignoring)
    print(f"[exactness] all-zero bucket rows dropped: daily {len(stored['daily']) - len(daily)}"
          f", hourly {len(stored['hourly']) - len(hourly)}")

    rejections = {(lender, reason): n for lender, reason, n in stored["rejections"]}
    expected_rejections = {(lender, reason): n for lender, reasons in truth.rejections.items()
                           for reason, n in reasons.items()}
    assert rejections == expected_rejections
