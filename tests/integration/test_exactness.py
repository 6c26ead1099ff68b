"""The heart of the registry: a seeded simulation with duplicates, late events (also beyond
the grace period), out-of-order, malformed and non-consented events goes through the real
pipeline (Kafka -> Faust worker -> Redis -> ClickHouse); afterwards every borrower's daily and
hourly activity equals the independently computed ground truth exactly."""

from __future__ import annotations

import pytest

from streams.lender.simulator import SimulationParams, run_simulation
from streams.settings import Settings
from tests.support.oracle import expected_buckets
from tests.support.pipeline import dump_clickhouse, wait_drained

pytestmark = pytest.mark.integration

BUCKET_FIELDS = ("draws", "draw_amount_minor", "repayments", "repaid_amount_minor", "defaults",
                 "lenders")


def _as_dict(rows: list[list]) -> dict[tuple[str, str], dict]:
    return {(r[0], r[1]): dict(zip(BUCKET_FIELDS, [*r[2:7], sorted(r[7])], strict=True))
            for r in rows}


def _normalise(expected: dict[tuple[str, str], dict]) -> dict[tuple[str, str], dict]:
    return {k: {**v, "lenders": sorted(v["lenders"])} for k, v in expected.items()}


async def test_pipeline_matches_ground_truth_exactly(settings: Settings, worker_factory,
                                                     tmp_path) -> None:
    params = SimulationParams(seed=20261122, lenders=5, borrowers=3000, events=100_000,
                              days=30, consent_rate=0.35, duplicate_rate=0.02, late_rate=0.03,
                              malformed_rate=0.005)
    result = await run_simulation(settings, params, truth_path=tmp_path / "truth.json",
                                  progress=True)
    truth = result.truth
    assert result.acked == result.sent
    assert len(truth.admitted) > 20_000
    assert truth.rejected_total("DUPLICATE") > 0 and truth.rejected_total("NO_CONSENT") > 0

    worker = worker_factory()
    await wait_drained(settings, timeout=420, worker=worker)
    assert worker.stop() == 0, worker.log_tail()

    stored = dump_clickhouse(settings)
    assert stored["ledger_rows"] == len(truth.admitted)
    assert stored["ledger_duplicates"] == 0

    expected_daily, expected_hourly = expected_buckets(
        truth.admitted, settings.pseudonym_key_bytes, settings.tz)
    daily, hourly = _as_dict(stored["daily"]), _as_dict(stored["hourly"])
    assert len(daily) == len(expected_daily)
    assert daily == _normalise(expected_daily)
    assert hourly == _normalise(expected_hourly)

    rejections = {(lender, reason): n for lender, reason, n in stored["rejections"]}
    expected_rejections = {(lender, reason): n for lender, reasons in truth.rejections.items()
                           for reason, n in reasons.items()}
    assert rejections == expected_rejections
