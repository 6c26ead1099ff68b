"""Row versions stay ordered when Faust re-delivers a partition's records out of order.

Seen after a rebalance: a worker processed records 27..39 of a partition, then (after the
liveness check re-sought the partition) records 19..26 that had been skipped, then 27..39 again
as duplicates. The bucket row emitted last must carry the highest version and the full content,
because ClickHouse keeps the row with the highest version."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from schemas.calendar import HOUR_MS, Calendar
from streams.aggregation import Aggregator, StateCodec
from streams.buckets import BucketPolicy

T0 = 1_790_000_000_000
BORROWER = "c" * 32


def _draw(i: int) -> dict[str, Any]:
    return {"borrower": BORROWER, "lender_id": "lender-a", "event_id": f"ev-{i}",
            "loan_id": "l", "event_type": "draw", "amount_minor": 100, "currency": "CNY",
            "occurred_at_ms": T0 + i * 1000, "product": None, "admitted_at_ms": T0}


def test_older_records_processed_after_newer_ones_still_produce_the_newest_rows() -> None:
    agg = Aggregator(BucketPolicy(Calendar(ZoneInfo("Asia/Shanghai")), 72 * HOUR_MS,
                                  48 * HOUR_MS))
    codec, stored = StateCodec(), {}
    best: dict[str, tuple[int, int]] = {}  # kind -> (version, draws): what ClickHouse keeps

    def process(offset: int) -> None:
        out = agg.process(0, offset, [_draw(offset)],
                          lambda b: codec.load(stored.get(b)))
        for borrower, state in out.states.items():
            stored[borrower] = codec.dump(state)
        for row in out.activity["buckets"]:
            kind = "daily" if row["daily"] else "hourly"
            version, _ = best.get(kind, (-1, 0))
            if row["version"] > version:
                best[kind] = (row["version"], row["draws"])

    for offset in [*range(27, 40), *range(19, 27), *range(27, 40)]:
        process(offset)
    assert best["daily"][1] == 21 and best["hourly"][1] == 21  # records 19..39, each once
