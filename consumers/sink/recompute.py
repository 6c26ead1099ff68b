"""The correction path: rebuild buckets from the de-duplicated ledger.

Used when late events reach buckets that already left stream state. The ledger
(``admitted_events FINAL``) holds each admitted event once, so a rebuilt bucket is exact. The
sink rebuilds all such buckets of one batch and kind with ONE ``INSERT ... SELECT`` (it was
one per kind and partition: each costs a chDB query, and the correction path was the largest
share of the sink's time in a py-spy profile), after the batch's ledger rows are in. Each
bucket is written with the version the stream gave its correction: versions rise per
borrower (:mod:`streams.aggregation`), so it outranks every earlier row of that bucket, and
the rebuilt content is the ledger as of the end of the batch.

Cancels (README, Corrections): an event counts only if no cancel row of the same borrower and
lender names it, and cancel rows count nowhere. The rows stay in the group, so a bucket whose
every event was cancelled is rebuilt as a row of zeros (replacing its old counts) rather than
left as it was. :func:`cancelled_buckets` finds the buckets a batch's cancels reach.
"""

from __future__ import annotations

from collections.abc import Mapping
from zoneinfo import ZoneInfo

from consumers.clickhouse.client import ClickHouse
from schemas.calendar import HOUR_MS, Calendar
from schemas.records import REGISTRY_CURRENCY

#: ``live``: the row is an event that counts (not a cancel, not cancelled)
_LIVE = """
    event_type != 'cancel' AND (borrower, lender_id, event_id) NOT IN (
        SELECT borrower, lender_id, cancels_event_id FROM admitted_events FINAL
        WHERE borrower IN {borrowers:Array(String)} AND event_type = 'cancel') AS live
"""
_AGGREGATES = """
    countIf(event_type = 'draw' AND live),
    sumIf(amount_minor, event_type = 'draw' AND live AND currency = {currency:String}),
    countIf(event_type = 'repayment' AND live),
    sumIf(amount_minor, event_type = 'repayment' AND live AND currency = {currency:String}),
    countIf(event_type = 'default' AND live),
    arraySort(groupUniqArrayIf(lender_id, live)),
    if(countIf(event_type = 'draw' AND live) = 0, NULL,
       maxIf(occurred_at, event_type = 'draw' AND live)),
    transform(concat(borrower, ':', toString({key_number})),
              {keys:Array(String)}, {versions:Array(UInt64)}, toUInt64(0))
"""
_TARGETS_SQL = (
    "SELECT borrower, toUnixTimestamp64Milli(occurred_at), "
    "concat(borrower, char(31), lender_id, char(31), event_id) "
    "FROM admitted_events FINAL "
    "WHERE borrower IN {borrowers:Array(String)} AND event_type != 'cancel' "
    "AND concat(borrower, char(31), lender_id, char(31), event_id) IN {keys:Array(String)}"
)


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
        f"WITH {_LIVE} "
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


def cancelled_buckets(ch: ClickHouse, calendar: Calendar,
                      cancels: Mapping[tuple[str, str, str], int],
                      ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """The (daily, hourly) buckets to rebuild for ``cancels``: (borrower, lender, event id
    withdrawn) -> the cancel's version. Each withdrawn event found in the ledger gives its day
    and hour, asked with the highest version of the cancels naming them (a cancel's version
    outranks every row of its borrower emitted before it). Events not in the ledger (not yet
    arrived, or never admitted) give nothing: the stream keeps such cancels pending."""
    if not cancels:
        return {}, {}
    wanted = {"\x1f".join(k): v for k, v in cancels.items()}
    daily: dict[tuple[str, int], int] = {}
    hourly: dict[tuple[str, int], int] = {}
    rows = ch.query(_TARGETS_SQL, parameters={
        "borrowers": sorted({b for b, _, _ in cancels}), "keys": sorted(wanted)})
    for borrower, at_ms, key in rows:
        version = wanted[key]
        day, hour = (borrower, calendar.day_of(int(at_ms))), (borrower, int(at_ms) // HOUR_MS
                                                              * HOUR_MS)
        daily[day] = max(daily.get(day, -1), version)
        hourly[hour] = max(hourly.get(hour, -1), version)
    return daily, hourly
