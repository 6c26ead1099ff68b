"""Kafka records -> ClickHouse rows. Pure functions, one per table, in column order."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from schemas.calendar import day_to_date

LEDGER_COLUMNS = ("borrower", "lender_id", "event_id", "loan_id", "event_type", "amount_minor",
                  "currency", "occurred_at", "product", "admitted_at", "version",
                  "cancels_event_id")
BUCKET_COLUMNS = ("draws", "draw_amount_minor", "repayments", "repaid_amount_minor", "defaults",
                  "lenders", "last_draw_at", "version")
DAILY_COLUMNS = ("borrower", "day", *BUCKET_COLUMNS)
HOURLY_COLUMNS = ("borrower", "hour", *BUCKET_COLUMNS)
CONSENT_COLUMNS = ("borrower", "lender_id", "action", "effective_at", "reference", "recorded_at",
                   "source_topic", "source_partition", "source_offset")
REJECTION_COLUMNS = ("lender_id", "reason", "detail", "day", "event_id", "source_topic",
                     "source_partition", "source_offset", "rejected_at")

TABLE_COLUMNS = {
    "admitted_events": LEDGER_COLUMNS,
    "borrower_daily": DAILY_COLUMNS,
    "borrower_hourly": HOURLY_COLUMNS,
    "consent_audit": CONSENT_COLUMNS,
    "rejections": REJECTION_COLUMNS,
}


def ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def ledger_row(item: dict[str, Any]) -> list[Any]:
    return [item["borrower"], item["lender_id"], item["event_id"], item["loan_id"],
            item["event_type"], item["amount_minor"], item["currency"], ts(item["occurred_at_ms"]),
            item["product"] or "", ts(item["admitted_at_ms"]), item["version"],
            item.get("cancels_event_id") or ""]


def _bucket_tail(item: dict[str, Any]) -> list[Any]:
    last = item["last_draw_at_ms"]
    return [item["draws"], item["draw_amount_minor"], item["repayments"],
            item["repaid_amount_minor"], item["defaults"], item["lenders"],
            None if last is None else ts(last), item["version"]]


def daily_row(item: dict[str, Any]) -> list[Any]:
    return [item["borrower"], day_to_date(item["bucket"]), *_bucket_tail(item)]


def hourly_row(item: dict[str, Any]) -> list[Any]:
    return [item["borrower"], ts(item["bucket"]), *_bucket_tail(item)]


def consent_row(rec: dict[str, Any]) -> list[Any]:
    return [rec["borrower"], rec["lender_id"], rec["action"], ts(rec["effective_at_ms"]),
            rec["reference"], ts(rec["recorded_at_ms"]), rec["source_topic"],
            rec["source_partition"], rec["source_offset"]]


def rejection_row(rec: dict[str, Any], tz: ZoneInfo) -> list[Any]:
    at = ts(rec["rejected_at_ms"])
    day: date = at.astimezone(tz).date()
    return [rec["lender_id"], rec["reason"], rec["detail"], day, rec["event_id"],
            rec["source_topic"], rec["source_partition"], rec["source_offset"], at]
