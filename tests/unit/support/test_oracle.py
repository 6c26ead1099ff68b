"""The tests' oracle (tests/support/oracle.py) on a tiny hand-built ledger with cancels: which
events count, the exact buckets, the ledger it expects, and the comparison's handling of the
all-zero bucket rows ClickHouse may keep for withdrawn events."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

from tests.support.oracle import (
    counted_events,
    expected_buckets,
    expected_ledger,
    expected_rows,
    ledger_difference,
    pseudonym,
    stale_last_draw,
    stored_buckets,
)

KEY = b"oracle-test-key"
TZ = ZoneInfo("Asia/Shanghai")
T = int(datetime(2026, 3, 1, 2, 0, tzinfo=UTC).timestamp() * 1000)  # 10:00 local, 1 March
HOUR, DAY = 3_600_000, 86_400_000
P1, P2 = pseudonym(KEY, "B1"), pseudonym(KEY, "B2")


class Event(NamedTuple):
    """The fields of an admitted event the oracle reads (the ground truth's AdmittedEvent)."""

    lender_id: str
    event_id: str
    borrower_id: str
    event_type: str
    amount_minor: int
    occurred_at_ms: int
    cancels_event_id: str = ""


ADMITTED = [
    Event("L1", "e1", "B1", "draw", 10_000, T),
    Event("L2", "e2", "B1", "draw", 5_000, T + 30 * 60_000),
    Event("L1", "e3", "B1", "repayment", 4_000, T + DAY),
    Event("L1", "e4", "B1", "default", 10_000, T + 2 * DAY),
    Event("L1", "c1", "B1", "cancel", 0, T + 3 * HOUR, "e1"),  # withdraws e1
    Event("L2", "c2", "B1", "cancel", 0, T + DAY, "e3"),  # e3 is L1's: nothing
    Event("L1", "c3", "B2", "cancel", 0, T + 2 * DAY, "e4"),  # e4 is B1's: nothing
    Event("L1", "c4", "B1", "cancel", 0, T + 4 * HOUR, "c1"),  # a cancel of a cancel: nothing
    Event("L1", "c5", "B1", "cancel", 0, T + DAY, "e3"),  # withdraws e3 ...
    Event("L1", "c6", "B1", "cancel", 0, T + DAY + HOUR, "e3"),  # ... once
    Event("L1", "c7", "B2", "cancel", 0, T, "e5"),  # before its event (any order): withdraws e5
    Event("L1", "e5", "B2", "draw", 7_000, T),
    Event("L1", "c8", "B2", "cancel", 0, T, "e404"),  # names no admitted event: nothing
]


def test_counted_events_leave_out_cancels_and_what_they_withdraw() -> None:
    assert [ev.event_id for ev in counted_events(ADMITTED)] == ["e2", "e4"]


def test_buckets_from_counted_events_only() -> None:
    daily, hourly = expected_buckets(ADMITTED, KEY, TZ)
    assert expected_rows(daily) == {
        (P1, "2026-03-01"): {"draws": 1, "draw_amount_minor": 5_000, "repayments": 0,
                             "repaid_amount_minor": 0, "defaults": 0, "lenders": ["L2"],
                             "last_draw_at_ms": T + 30 * 60_000},
        (P1, "2026-03-03"): {"draws": 0, "draw_amount_minor": 0, "repayments": 0,
                             "repaid_amount_minor": 0, "defaults": 1, "lenders": ["L1"],
                             "last_draw_at_ms": None},
    }
    assert expected_rows(hourly) == {
        (P1, "2026-03-01T02:00"): {"draws": 1, "draw_amount_minor": 5_000, "repayments": 0,
                                   "repaid_amount_minor": 0, "defaults": 0, "lenders": ["L2"],
                                   "last_draw_at_ms": T + 30 * 60_000},
        (P1, "2026-03-03T02:00"): {"draws": 0, "draw_amount_minor": 0, "repayments": 0,
                                   "repaid_amount_minor": 0, "defaults": 1, "lenders": ["L1"],
                                   "last_draw_at_ms": None},
    }


def test_stored_rows_drop_all_zero_buckets() -> None:
    """What ClickHouse may hold: the withdrawn days as all-zero rows; they do not count."""
    rows = [
        [P1, "2026-03-01", 1, 5_000, 0, 0, 0, ["L2"], T + 30 * 60_000],
        [P1, "2026-03-02", 0, 0, 0, 0, 0, [], None],  # e3's day, all withdrawn
        [P1, "2026-03-03", 0, 0, 0, 0, 1, ["L1"], None],
        [P2, "2026-03-01", 0, 0, 0, 0, 0, [], None],  # e5's day
    ]
    daily, _ = expected_buckets(ADMITTED, KEY, TZ)
    assert stored_buckets(rows) == expected_rows(daily)
    assert stale_last_draw(rows) == []
    # the last draw must be the last counted one (e1 at T was withdrawn)
    rows[0][8] = T
    assert stored_buckets(rows) != expected_rows(daily)
    rows[0][8] = T + 30 * 60_000
    # a row with anything left in it is not dropped, and then differs
    rows[1] = [P1, "2026-03-02", 0, 0, 1, 4_000, 0, ["L1"], None]
    assert stored_buckets(rows) != expected_rows(daily)
    rows[1] = [P1, "2026-03-02", 0, 0, 0, 0, 0, ["L1"], None]  # a lender left: not all-zero
    assert (P1, "2026-03-02") in stored_buckets(rows)
    rows[1] = [P1, "2026-03-02", 0, 0, 0, 0, 0, [], T]  # all-zero with a stale last draw
    assert stored_buckets(rows) == expected_rows(daily)
    assert stale_last_draw(rows) == [rows[1]]


def test_ledger_holds_every_admitted_event_cancels_included() -> None:
    want = expected_ledger(ADMITTED)
    assert sum(want.values()) == len(ADMITTED) == 13
    assert want[("L1", "c1", "cancel", "e1")] == 1 and want[("L1", "e1", "draw", "")] == 1
    rows = [[ev.lender_id, ev.event_id, ev.event_type, ev.cancels_event_id]
            for ev in reversed(ADMITTED)]
    assert ledger_difference(rows, ADMITTED) == ""
    assert "1 missing" in ledger_difference(rows[1:], ADMITTED)
    wrong = [*rows[:-1], [rows[-1][0], rows[-1][1], rows[-1][2], "e9"]]
    assert "1 unexpected" in ledger_difference(wrong, ADMITTED)
    assert Counter(map(tuple, rows)) == want
