"""The inquiry log: every frequency query leaves one row in ``inquiries``.

The row is written BEFORE the answer is computed, so an answer's ``inquiring_institutions``
counts the asking institution itself, and an access to borrower data is never answered without
being recorded: if the insert fails the request fails. Rows carry the pseudonym only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from consumers.clickhouse.client import ClickHouse

COLUMNS = ("inquired_at", "institution", "borrower", "purpose", "window_days", "request_id")


class _Facade(Protocol):
    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]: ...

    def insert(self, table: str, rows: Any, column_names: Any) -> None: ...


def record_inquiry(
    ch: ClickHouse | _Facade,
    *,
    institution: str,
    borrower: str,
    purpose: str,
    window_days: int,
    request_id: str,
    at: datetime | None = None,
) -> None:
    """Append one inquiry row (``at`` defaults to now, UTC)."""
    inquired_at = at or datetime.now(UTC)
    ch.insert(
        "inquiries",
        [[inquired_at, institution, borrower, purpose, window_days, request_id]],
        column_names=COLUMNS,
    )


@dataclass(frozen=True, slots=True)
class Inquiry:
    """One row of ``inquiries``."""

    inquired_at: datetime
    institution: str
    borrower: str
    purpose: str
    window_days: int
    request_id: str

    def row(self) -> list[object]:
        return [self.inquired_at, self.institution, self.borrower, self.purpose,
                self.window_days, self.request_id]


def record_inquiries(ch: ClickHouse | _Facade, inquiries: Sequence[Inquiry]) -> None:
    """Append the rows of ``inquiries`` with ONE insert: one block, so all or none of them are
    written (a block within ``max_insert_block_size`` rows is atomic), and one part instead of
    one per request (fewer parts for the point reads to search, fewer merges)."""
    if inquiries:
        ch.insert("inquiries", [inquiry.row() for inquiry in inquiries], column_names=COLUMNS)


def inquiring_institutions(ch: ClickHouse | _Facade, borrower: str, since: datetime) -> int:
    """Distinct institutions that inquired about ``borrower`` at or after ``since``."""
    rows = ch.query(
        "SELECT uniqExact(institution) FROM inquiries "
        "WHERE borrower = {b:String} "
        "AND inquired_at >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')",
        {"b": borrower, "since_ms": int(since.timestamp() * 1000)},
    )
    return int(rows[0][0]) if rows else 0
