"""The correction path: rebuild buckets from the de-duplicated ledger.

Used when late events reach buckets that already left stream state. The ledger
(``admitted_events FINAL``) holds each admitted event once, so a rebuilt bucket is exact. The
sink rebuilds all such buckets of one batch and one ``registry.activity`` partition with ONE
``INSERT ... SELECT``, after the batch's ledger rows are in, and writes them with the highest
version among that partition's corrections in the batch. That version outranks every earlier
row of those buckets (versions are positions in the same partition), and the rebuilt content
is the ledger as of the end of the batch, so a later replay with smaller batches can only
produce rows that lose to it or equal it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from consumers.clickhouse.client import ClickHouse
from streams.calendar import HOUR_MS, Calendar

_PSEUDONYM = re.compile(r"[0-9a-f]{32}")

_AGGREGATES = """
    countIf(event_type = 'draw'),
    sumIf(amount_minor, event_type = 'draw' AND currency = 'CNY'),
    countIf(event_type = 'repayment'),
    sumIf(amount_minor, event_type = 'repayment' AND currency = 'CNY'),
    countIf(event_type = 'default'),
    arraySort(groupUniqArray(lender_id)),
    if(countIf(event_type = 'draw') = 0, NULL, maxIf(occurred_at, event_type = 'draw')),
    {version:UInt64}
"""


def recompute(ch: ClickHouse, calendar: Calendar, tz: ZoneInfo, kind: str,
              buckets: Iterable[tuple[str, int]], version: int) -> None:
    """Rebuild ``(borrower, bucket)`` pairs of one kind (``recompute_daily``/``_hourly``)."""
    pairs = sorted(set(buckets))
    if not pairs:
        return
    for borrower, _ in pairs:
        if not _PSEUDONYM.fullmatch(borrower):  # inlined below as a literal: be strict
            raise ValueError(f"not a pseudonym: {borrower!r}")
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
    wanted = ", ".join(f"('{borrower}', {n})" for (borrower, _), n in
                       zip(pairs, numbers, strict=True))
    ch.command(
        f"INSERT INTO {target} ({columns}, draws, draw_amount_minor, repayments, "
        "repaid_amount_minor, defaults, lenders, last_draw_at, version) "
        f"SELECT borrower, {key}, {_AGGREGATES} FROM admitted_events FINAL "
        "WHERE borrower IN {borrowers:Array(String)} "
        "AND occurred_at >= fromUnixTimestamp64Milli({start:Int64}, 'UTC') "
        "AND occurred_at < fromUnixTimestamp64Milli({end:Int64}, 'UTC') "
        f"AND (borrower, {key_number}) IN ({wanted}) "
        f"GROUP BY borrower, {key}",
        parameters={"borrowers": sorted({b for b, _ in pairs}),
                    "start": min(s for s, _ in spans), "end": max(e for _, e in spans),
                    "version": version},
    )
