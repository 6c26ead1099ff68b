"""The frequency answer's window and arithmetic, against a fake of our ClickHouse facade.

The window is the local days [today - N + 1, today] of the registry zone (Asia/Shanghai here),
and the inquiry count starts at LOCAL midnight of the first day (16:00 UTC the day before).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from consumers.risk.frequency import (
    Ask,
    answer_batch,
    frequency,
    money,
    window_bounds,
    window_start_utc,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 3, 1)  # the window crosses the end of a short February


class FakeCH:
    """Answers the one batch query with fixed rows: kind 0 daily rows (version 1 unless a row
    gives ``(version, row)``), kind 1 (borrower, institution, inquiry ms) rows, in the column
    layout of ``_BATCH_SQL``."""

    def __init__(self, daily: list[tuple] | None = None,
                 inquiries: list[tuple[str, str, int]] | None = None) -> None:
        self.rows = [(0, row[1][0], row[1][1], row[0], *row[1][2:]) if isinstance(row[0], int)
                     else (0, row[0], row[1], 1, *row[2:]) for row in daily or []]
        self.rows += [(1, b, date(1970, 1, 1), 0, 0, 0, 0, 0, 0, [inst], ms)
                      for b, inst, ms in inquiries or []]
        self.calls: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []

    def query(self, sql: str, parameters: dict[str, Any] | None = None, *,
              settings: dict[str, Any] | None = None) -> list[tuple]:
        self.calls.append((sql, dict(parameters or {}), settings))
        return self.rows


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def test_window_bounds_include_today_and_cross_month_end() -> None:
    assert window_bounds(TODAY, 1) == (TODAY, TODAY)
    assert window_bounds(TODAY, 2) == (date(2026, 2, 28), TODAY)
    assert window_bounds(TODAY, 30) == (date(2026, 1, 31), TODAY)


@pytest.mark.parametrize("bad", [0, -1, 401])
def test_window_outside_limits_is_refused(bad: int) -> None:
    with pytest.raises(ValueError):
        window_bounds(TODAY, bad)


def test_window_start_is_local_midnight_in_utc() -> None:
    assert window_start_utc(date(2026, 2, 28), SHANGHAI) == datetime(2026, 2, 27, 16, tzinfo=UTC)


def test_query_is_one_point_range_with_local_day_bounds() -> None:
    ch = FakeCH()
    frequency(ch, borrower="p1", window_days=7, tz=SHANGHAI, today=TODAY)
    since = datetime(2026, 2, 22, 16, tzinfo=UTC)
    assert [(params, settings) for _, params, settings in ch.calls] == [
        ({"b": ["p1"], "start": date(2026, 2, 23), "end": TODAY, "since_ms": _ms(since)},
         {"max_threads": 1})]


def test_unknown_borrower_answers_zeros_for_every_day() -> None:
    answer = frequency(FakeCH(), borrower="nobody", window_days=30, tz=SHANGHAI, today=TODAY)
    body = answer.to_json()
    assert body["draws"] == body["repayments"] == body["defaults"] == 0
    assert body["draw_amount"] == body["repaid_amount"] == "0.00"
    assert body["distinct_lenders"] == body["active_days"] == 0
    assert body["inquiring_institutions"] == 0
    assert body["last_draw_at"] is None and body["as_of"] is None
    assert len(body["daily"]) == 30
    assert body["daily"][0] == {"date": "2026-01-31", "draws": 0, "draw_amount": "0.00"}
    assert body["daily"][-1]["date"] == "2026-03-01"


def test_totals_lenders_and_series_from_rows() -> None:
    last_ms = int(datetime(2026, 2, 28, 3, 4, 5, 678000, tzinfo=UTC).timestamp() * 1000)
    rows = [
        ("p", date(2026, 2, 27), 2, 125000, 0, 0, 0, ["a", "b"], last_ms - 86_400_000),
        ("p", date(2026, 2, 28), 1, 5, 1, 30000, 1, ["b", "c"], last_ms),
        ("p", date(2026, 3, 1), 0, 0, 1, 99, 0, ["a"], None),
    ]
    start = _ms(datetime(2026, 2, 26, 16, tzinfo=UTC))  # local midnight of 2026-02-27
    inquiries = [("p", "bank-a", start), ("p", "bank-b", start + 1), ("p", "bank-c", last_ms),
                 ("p", "bank-d", start - 1)]  # bank-d asked last before the window
    answer = frequency(FakeCH(rows, inquiries), borrower="p", window_days=3, tz=SHANGHAI,
                       today=TODAY, as_of_ms=1_772_300_000_123)
    body = answer.to_json()
    assert body["draws"] == 3 and body["draw_amount"] == "1250.05"
    assert body["repayments"] == 2 and body["repaid_amount"] == "300.99"
    assert body["defaults"] == 1
    assert body["distinct_lenders"] == 3
    assert body["active_days"] == 3
    assert body["last_draw_at"] == "2026-02-28T03:04:05.678Z"
    assert body["as_of"].endswith("Z")
    assert body["inquiring_institutions"] == 3
    assert [d["draws"] for d in body["daily"]] == [2, 1, 0]
    assert body["daily"][0]["draw_amount"] == "1250.00"


def test_money_formats_minor_units() -> None:
    assert money(0) == "0.00"
    assert money(125000) == "1250.00"
    assert money(7) == "0.07"
    assert money(-150) == "-1.50"


def test_batch_answers_each_ask_from_its_own_borrower_window_and_inquiries() -> None:
    """Two borrowers, windows of 1 and 3 days, one read: every answer keeps only its borrower,
    its days and the inquiries since its own window start."""
    day1 = _ms(datetime(2026, 2, 28, 16, tzinfo=UTC))  # local midnight of TODAY
    rows = [("p", date(2026, 2, 27), 2, 200, 0, 0, 0, ["a"], None),
            ("p", TODAY, 1, 100, 0, 0, 0, ["b"], None),
            ("q", TODAY, 5, 500, 0, 0, 0, ["c"], None)]
    inquiries = [("p", "bank-a", day1 - 1), ("p", "bank-b", day1), ("q", "bank-a", day1 + 5)]
    ch = FakeCH(rows, inquiries)
    p3, p1, q1 = answer_batch(ch, [Ask("p", 3, SHANGHAI, TODAY), Ask("p", 1, SHANGHAI, TODAY),
                                   Ask("q", 1, SHANGHAI, TODAY, as_of_ms=7)])
    assert len(ch.calls) == 1
    _, params, _ = ch.calls[0]
    assert params["b"] == ["p", "q"]
    assert (params["start"], params["end"]) == (date(2026, 2, 27), TODAY)
    assert params["since_ms"] == _ms(datetime(2026, 2, 26, 16, tzinfo=UTC))
    assert (p3.draws, p3.draw_amount_minor, p3.distinct_lenders, p3.inquiring_institutions) == (
        3, 300, 2, 2)
    assert (p1.draws, p1.draw_amount_minor, p1.distinct_lenders, p1.inquiring_institutions) == (
        1, 100, 1, 1)
    assert (q1.draws, q1.inquiring_institutions, q1.as_of_ms, p1.as_of_ms) == (5, 1, 7, None)
    assert answer_batch(ch, []) == [] and len(ch.calls) == 1


def test_highest_version_of_a_day_wins_whatever_the_row_order() -> None:
    """Daily rows come as stored (unmerged parts hold several versions of a day): the answer
    uses the highest version only, and an institution counts once however often it asked."""
    day1 = _ms(datetime(2026, 2, 28, 16, tzinfo=UTC))
    rows = [(2, ("p", TODAY, 3, 300, 1, 50, 0, ["b"], day1 + 9)),
            (1, ("p", TODAY, 1, 100, 0, 0, 0, ["a"], day1 + 1)),
            (3, ("p", date(2026, 2, 28), 1, 10, 0, 0, 1, ["a"], None)),
            (1, ("p", date(2026, 2, 28), 7, 70, 0, 0, 0, ["c"], day1 - 5))]
    start = day1 - 86_400_000  # local midnight of the window's first day
    inquiries = [("p", "bank-a", day1 + 1), ("p", "bank-a", start), ("p", "bank-b", start - 1)]
    answer = frequency(FakeCH(rows, inquiries), borrower="p", window_days=2, tz=SHANGHAI,
                       today=TODAY)
    assert (answer.draws, answer.draw_amount_minor, answer.repayments, answer.defaults) == (
        4, 310, 1, 1)
    assert (answer.distinct_lenders, answer.last_draw_at_ms) == (2, day1 + 9)
    assert answer.inquiring_institutions == 1
    assert [d.draws for d in answer.daily] == [1, 3]
