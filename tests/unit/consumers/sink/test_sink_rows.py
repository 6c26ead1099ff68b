"""The ClickHouse sink's rows and insert tokens, without ClickHouse: each record becomes one row
in its table's column order (:mod:`consumers.sink.rows`), rows keep their source coordinates, an
erasure drops the borrower's earlier rows of the batch, and every table of a batch is inserted
once with ``insert_deduplication_token`` = the table and the batch's offset ranges, the same
token however often the batch is retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka import TopicPartition

from consumers.clickhouse.client import ClickHouse
from consumers.sink.loop import Batch, ClickHouseSink
from consumers.sink.rows import (
    TABLE_COLUMNS,
    consent_row,
    daily_row,
    hourly_row,
    ledger_row,
    rejection_row,
)
from streams.settings import Settings

SHANGHAI = ZoneInfo("Asia/Shanghai")
BORROWER = "a" * 32
OTHER = "b" * 32
AT_MS = 1_741_915_800_000  # 2025-03-14T01:30:00Z = 09:30 in Shanghai
AT = datetime(2025, 3, 14, 1, 30, tzinfo=UTC)
HOUR_MS = 1_741_914_000_000  # 2025-03-14T01:00:00Z
DAY = 20161  # 2025-03-14


def ledger(borrower: str = BORROWER, event_id: str = "e-1", version: int = 65_536,
           admitted_at_ms: int = AT_MS + 2_000, **change: Any) -> dict[str, Any]:
    return {"borrower": borrower, "lender_id": "lender-a", "event_id": event_id,
            "loan_id": "L-77", "event_type": "draw", "amount_minor": 125_000, "currency": "CNY",
            "occurred_at_ms": AT_MS, "product": None, "admitted_at_ms": admitted_at_ms,
            "version": version} | change


def bucket(daily: bool, borrower: str = BORROWER, last_draw_at_ms: int | None = AT_MS,
           ) -> dict[str, Any]:
    return {"daily": daily, "borrower": borrower, "bucket": DAY if daily else HOUR_MS,
            "version": 65_536, "draws": 1, "draw_amount_minor": 125_000, "repayments": 2,
            "repaid_amount_minor": 40_050, "defaults": 0, "lenders": ["lender-a", "lender-b"],
            "last_draw_at_ms": last_draw_at_ms}


def activity(*, ledger_rows: Sequence[dict[str, Any]] = (),
             buckets: Sequence[dict[str, Any]] = (),
             recomputes: Sequence[dict[str, Any]] = (),
             erasures: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """A decoded ``registry.activity`` v3 record."""
    return {"items": [], "erasures": list(erasures), "ledger": list(ledger_rows),
            "buckets": list(buckets), "recomputes": list(recomputes)}


class RecordingClickHouse:
    """Takes every insert and remembers (table, row count, token)."""

    def __init__(self) -> None:
        self.inserts: list[tuple[str, int, str | None]] = []

    def insert(self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str],
               *, dedup_token: str | None = None) -> None:
        assert all(len(row) == len(column_names) for row in rows)
        self.inserts.append((table, len(rows), dedup_token))


def sink(ch: RecordingClickHouse | None = None) -> ClickHouseSink:
    client: ClickHouse = ch or RecordingClickHouse()  # type: ignore[assignment]
    return ClickHouseSink(Settings(), client)


# --- rows ---------------------------------------------------------------------------------
def test_a_ledger_row_is_the_event_in_column_order_with_utc_times_and_no_null_product() -> None:
    assert ledger_row(ledger()) == [
        BORROWER, "lender-a", "e-1", "L-77", "draw", 125_000, "CNY", AT, "",
        datetime(2025, 3, 14, 1, 30, 2, tzinfo=UTC), 65_536, ""]


def test_a_cancel_row_names_the_event_it_withdraws() -> None:
    row = ledger_row(ledger(event_type="cancel", amount_minor=0, cancels_event_id="e-0"))
    assert row[4:6] == ["cancel", 0] and row[-1] == "e-0"


def test_a_daily_row_names_its_local_day_as_a_date() -> None:
    assert daily_row(bucket(True)) == [BORROWER, date(2025, 3, 14), 1, 125_000, 2, 40_050, 0,
                                       ["lender-a", "lender-b"], AT, 65_536]


def test_an_hourly_row_names_its_utc_hour_and_keeps_a_missing_last_draw_null() -> None:
    assert hourly_row(bucket(False, last_draw_at_ms=None)) == [
        BORROWER, datetime(2025, 3, 14, 1, tzinfo=UTC), 1, 125_000, 2, 40_050, 0,
        ["lender-a", "lender-b"], None, 65_536]


def test_a_consent_row_keeps_its_source_coordinates() -> None:
    rec = {"borrower": BORROWER, "lender_id": "lender-a", "action": "grant",
           "effective_at_ms": AT_MS, "reference": "ref-1", "recorded_at_ms": AT_MS + 1_000,
           "source_topic": "lenders.lender-a.consent", "source_partition": 3,
           "source_offset": 41}
    assert consent_row(rec) == [BORROWER, "lender-a", "grant", AT, "ref-1",
                                datetime(2025, 3, 14, 1, 30, 1, tzinfo=UTC),
                                "lenders.lender-a.consent", 3, 41]


def test_a_rejection_row_is_filed_under_the_local_day_of_its_rejection() -> None:
    at_ms = 1_741_969_800_000  # 2025-03-14T16:30:00Z = 2025-03-15T00:30 in Shanghai
    rec = {"lender_id": "lender-a", "reason": "DUPLICATE", "detail": "event_id already received",
           "event_id": "e-1", "source_topic": "lenders.lender-a.loans", "source_partition": 2,
           "source_offset": 11, "rejected_at_ms": at_ms}
    assert rejection_row(rec, SHANGHAI) == [
        "lender-a", "DUPLICATE", "event_id already received", date(2025, 3, 15), "e-1",
        "lenders.lender-a.loans", 2, 11, datetime(2025, 3, 14, 16, 30, tzinfo=UTC)]


def test_every_row_has_one_value_per_column_of_its_table() -> None:
    widths = {table: len(columns) for table, columns in TABLE_COLUMNS.items()}
    assert widths == {"admitted_events": 12, "borrower_daily": 10, "borrower_hourly": 10,
                      "consent_audit": 9, "rejections": 9}
    assert len(ledger_row(ledger())) == 12
    assert len(daily_row(bucket(True))) == len(hourly_row(bucket(False))) == 10


# --- a batch ------------------------------------------------------------------------------
def test_an_activity_record_fills_each_table_with_rows_aligned_to_their_source() -> None:
    batch = Batch()
    sink()._add_activity(batch, activity(
        ledger_rows=[ledger(event_id="e-1", admitted_at_ms=AT_MS + 5_000),
                     ledger(event_id="e-2", admitted_at_ms=AT_MS + 3_000)],
        buckets=[bucket(True), bucket(False)]), ("ns.registry.activity", 1, 500))
    assert [row[2] for row in batch.rows["admitted_events"]] == ["e-1", "e-2"]
    assert len(batch.rows["borrower_daily"]) == len(batch.rows["borrower_hourly"]) == 1
    assert batch.sources["admitted_events"] == [("ns.registry.activity", 1, 500)] * 2
    assert batch.row_count == 4
    assert batch.newest_admitted_ms == AT_MS + 5_000


def test_recomputes_of_one_bucket_collapse_to_the_highest_version_asked() -> None:
    batch = Batch()
    fixes = [{"daily": True, "borrower": BORROWER, "bucket": DAY, "version": v}
             for v in (70_000, 90_000, 80_000)]
    fixes.append({"daily": False, "borrower": BORROWER, "bucket": HOUR_MS, "version": 60_000})
    sink()._add_activity(batch, activity(recomputes=fixes), ("ns.registry.activity", 1, 9))
    assert batch.recomputes == {"recompute_daily": {(BORROWER, DAY): 90_000},
                                "recompute_hourly": {(BORROWER, HOUR_MS): 60_000}}
    assert batch.row_count == 0


def test_an_erasure_drops_the_borrowers_earlier_rows_and_keeps_later_ones_and_others() -> None:
    batch = Batch()
    s = sink()
    s._add_activity(batch, activity(ledger_rows=[ledger(event_id="old"),
                                                 ledger(OTHER, event_id="other")],
                                    recomputes=[{"daily": True, "borrower": BORROWER,
                                                 "bucket": DAY, "version": 1}]),
                    ("t", 0, 1))
    s._add_activity(batch, activity(erasures=[{"borrower": BORROWER, "request_id": "r-1",
                                               "institution": "court",
                                               "requested_at_ms": AT_MS}]), ("t", 0, 2))
    s._add_activity(batch, activity(ledger_rows=[ledger(event_id="new")]), ("t", 0, 3))
    assert [row[2] for row in batch.rows["admitted_events"]] == ["other", "new"]
    assert batch.sources["admitted_events"] == [("t", 0, 1), ("t", 0, 3)]
    assert batch.row_count == 2
    assert batch.recomputes == {"recompute_daily": {}}
    assert batch.erasures == [(BORROWER, "r-1", "court", AT_MS)]


# --- tokens -------------------------------------------------------------------------------
def offsets_batch(offsets: dict[tuple[str, int], tuple[int, int]]) -> Batch:
    batch = Batch()
    for (topic, partition), span in offsets.items():
        batch.offsets[TopicPartition(topic, partition)] = span
    return batch


def test_a_batch_token_is_the_table_and_a_digest_of_the_offset_ranges() -> None:
    batch = offsets_batch({("ns.registry.activity", 0): (100, 199),
                           ("ns.registry.activity", 1): (7, 7)})
    # 128-bit BLAKE2b of "ns.registry.activity/0/100-199,ns.registry.activity/1/7-7"
    assert batch.token("admitted_events") == (
        "admitted_events:89920962c873a680b6b0b06fe8a07dc7")
    assert batch.token("borrower_daily") == "borrower_daily:89920962c873a680b6b0b06fe8a07dc7"


def test_a_batch_token_does_not_depend_on_the_order_partitions_were_met() -> None:
    one = offsets_batch({("a", 0): (1, 5), ("a", 1): (2, 3), ("b", 0): (0, 0)})
    other = offsets_batch({("b", 0): (0, 0), ("a", 1): (2, 3), ("a", 0): (1, 5)})
    assert one.token("rejections") == other.token("rejections")


def test_another_offset_range_is_another_token() -> None:
    base = offsets_batch({("a", 0): (1, 5)}).token("rejections")
    assert offsets_batch({("a", 0): (1, 6)}).token("rejections") != base
    assert offsets_batch({("a", 0): (2, 5)}).token("rejections") != base
    assert offsets_batch({("a", 1): (1, 5)}).token("rejections") != base


def test_each_table_of_a_batch_is_one_insert_with_its_token_and_a_retry_repeats_them() -> None:
    ch = RecordingClickHouse()
    s = sink(ch)
    batch = Batch()
    s._add_activity(batch, activity(ledger_rows=[ledger(event_id="e-1"), ledger(event_id="e-2")],
                                    buckets=[bucket(True), bucket(False)]),
                    ("ns.registry.activity", 1, 500))
    batch.offsets[TopicPartition("ns.registry.activity", 1)] = (500, 500)
    s._write(batch)
    first = list(ch.inserts)
    assert sorted(first) == [("admitted_events", 2, batch.token("admitted_events")),
                             ("borrower_daily", 1, batch.token("borrower_daily")),
                             ("borrower_hourly", 1, batch.token("borrower_hourly"))]
    s._write(batch)  # the retry after ClickHouse failed: the very same blocks and tokens
    assert ch.inserts == first + first
