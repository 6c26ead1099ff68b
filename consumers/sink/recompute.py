"""The correction path: rebuild buckets from the de-duplicated ledger.

Used when late events reach buckets that already left stream state. The ledger
(``admitted_events FINAL``) holds each admitted event once, so a rebuilt bucket is exact. The
sink rebuilds all such buckets of one batch and kind with ONE ``INSERT ... SELECT`` (it was
one per kind and partition: each costs a chDB query, and the correction path was the largest
share of the sink's time in a py-spy profile), after the batch's ledger rows are in. Each
bucket is written with the version the stream gave its correction: versions rise per
borrower (:mod:`streams.aggregation`), so it outranks every earlier row of that bucket, and
the rebuilt content is the ledger as of the end of the batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from zoneinfo import ZoneInfo

from consumers.clickhouse.client import ClickHouse
from schemas.calendar import HOUR_MS, Calendar
from schemas.records import REGISTRY_CURRENCY

_AGGREGATES = """
    countIf(event_type = 'draw'),
    sumIf(amount_minor, event_type = 'draw' AND currency = {currency:String}),
    countIf(event_type = 'repayment'),
    sumIf(amount_minor, event_type = 'repayment' AND currency = {currency:String}),
    countIf(event_type = 'default'),
    arraySort(groupUniqArray(lender_id)),
    if(countIf(event_type = 'draw') = 0, NULL, maxIf(occurred_at, event_type = 'draw')),
    transform(concat(borrower, ':', toString({key_number})),
              {keys:Array(String)}, {versions:Array(UInt64)}, toUInt64(0))
"""


def recompute(ch: ClickHouse, calendar: Calendar, tz: ZoneInfo, kind: str,
              wanted: Mapping[tuple[str, int], int]) -> None:
    """Rebuild the ``(borrower, bucket)`` pairs of one kind (``recompute_daily``/``_hourly``),
    each with its own version: one ``INSERT ... SELECT`` for all of them. Pseudonyms and
    buckets travel as typed parameters, never inlined into the SQL text."""
    pairs = sorted(wanted)
    if not pairs:
        return
    if kind == "recompute_daily":
        target, columns = "borrower_daily", "borrower, day"
        key = f"toDate(occurred_at, '{tz.key}')"
        key_number = f"toUInt16({key})"
        spans = [(calendar.day_start_ms(b), calendar.day_end_ms(b)) for _, b in pairs]
        numbers = [b for _, b in pairs]
    else:
        target, columns = "borrower_hourly", "borrower, hour"
        key = "toStartOfHour(toDateTime(occurred_at, 'UTC'))"
        key_number = f"toUnixTimestamp({key})"
        spans = [(b, b + HOUR_MS) for _, b in pairs]
        numbers = [b // 1000 for _, b in pairs]
    keys = [f"{borrower}:{n}" for (borrower, _), n in zip(pairs, numbers, strict=True)]
    ch.command(
        f"INSERT INTO {target} ({columns}, draws, draw_amount_minor, repayments, "
        "repaid_amount_minor, defaults, lenders, last_draw_at, version) "
        f"SELECT borrower, {key}, {_AGGREGATES.replace('{key_number}', key_number)} "
        "FROM admitted_events FINAL "
        "WHERE borrower IN {borrowers:Array(String)} "
        "AND occurred_at >= fromUnixTimestamp64Milli({start:Int64}, 'UTC') "
        "AND occurred_at < fromUnixTimestamp64Milli({end:Int64}, 'UTC') "
        f"AND concat(borrower, ':', toString({key_number})) IN {{keys:Array(String)}} "
        f"GROUP BY borrower, {key}",
        parameters={"borrowers": sorted({b for b, _ in pairs}),
                    "start": min(s for s, _ in spans), "end": max(e for _, e in spans),
                    "keys": keys, "versions": [wanted[p] for p in pairs],
                    "currency": REGISTRY_CURRENCY},
    )
