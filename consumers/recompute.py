"""The correction path: rebuild one bucket from the de-duplicated ledger.

Used when a late event reaches a bucket that already left stream state. The ledger
(``admitted_events FINAL``) holds each admitted event once, so the rebuilt bucket is exact; it
is written with the version of the late event, which outranks every earlier row of that bucket.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from consumers.clickhouse.client import ClickHouse
from streams.calendar import HOUR_MS, Calendar

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


def recompute(ch: ClickHouse, calendar: Calendar, tz: ZoneInfo, kind: str, borrower: str,
              bucket: int, version: int) -> None:
    if kind == "recompute_daily":
        start_ms, end_ms = calendar.day_start_ms(bucket), calendar.day_end_ms(bucket)
        target, key = "borrower_daily", f"toDate(occurred_at, '{tz.key}')"
        columns = "borrower, day"
    else:
        start_ms, end_ms = bucket, bucket + HOUR_MS
        target, key = "borrower_hourly", "toStartOfHour(toDateTime(occurred_at, 'UTC'))"
        columns = "borrower, hour"
    ch.command(
        f"INSERT INTO {target} ({columns}, draws, draw_amount_minor, repayments, "
        "repaid_amount_minor, defaults, lenders, last_draw_at, version) "
        f"SELECT borrower, {key}, {_AGGREGATES} FROM admitted_events FINAL "
        "WHERE borrower = {borrower:String} "
        "AND occurred_at >= fromUnixTimestamp64Milli({start:Int64}, 'UTC') "
        "AND occurred_at < fromUnixTimestamp64Milli({end:Int64}, 'UTC') "
        f"GROUP BY borrower, {key}",
        parameters={"borrower": borrower, "start": start_ms, "end": end_ms, "version": version},
    )
