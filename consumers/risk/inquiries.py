"""The inquiry log: every frequency query leaves one row in ``inquiries``.

The row is written BEFORE the answer is computed, so an answer's ``inquiring_institutions``
counts the asking institution itself, and an access to borrower data is never answered without
being recorded: if the insert fails the request fails. Rows carry the pseudonym only.
"""

from __future__ import annotations

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


def inquiring_institutions(ch: ClickHouse | _Facade, borrower: str, since: datetime) -> int:
    """Distinct institutions that inquired about ``borrower`` at or after ``since``."""
    rows = ch.query(
        "SELECT uniqExact(institution) FROM inquiries "
        "WHERE borrower = {b:String} "
        "AND inquired_at >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')",
        {"b": borrower, "since_ms": int(since.timestamp() * 1000)},
    )
    return int(rows[0][0]) if rows else 0
