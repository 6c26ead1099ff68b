"""Deleting one borrower from every ClickHouse table, with an anonymous audit row.

Called by the sink when an erasure reaches it in partition order (see :mod:`consumers.sink.loop`
and :mod:`streams.app`), so every row of the borrower stored before the request is deleted
and nothing stored after it is. What one call does, in this order:

1. find every MergeTree table of the registry database with a ``borrower`` column
   (``system.columns``: ``admitted_events``, ``borrower_daily``, ``borrower_hourly``,
   ``consent_audit``, ``inquiries``);
2. count the borrower's rows in each, then delete them with ``ALTER TABLE ... DELETE`` and
   ``mutations_sync=2``: the parts are rewritten without the rows before the call returns;
3. append the audit row to ``erasures`` (time, request id, institution, tables, rows before,
   ``borrower_hash = sha256(pseudonym)``: neither the id nor the pseudonym is kept), unless
   a row of that request id exists already: a replayed erasure changes nothing.

Raises the facade's :class:`ClickHouseError` when ClickHouse fails (the sink retries).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from consumers.clickhouse.client import ClickHouse

_TABLES_SQL = (
    "SELECT c.table FROM system.columns AS c "
    "INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table "
    "WHERE c.database = currentDatabase() AND c.name = 'borrower' "
    "AND t.engine LIKE '%MergeTree' ORDER BY c.table"
)
#: tables not written in the borrower's partition order: their rows carry a write time, and an
#: erasure deletes those written up to the request
_WRITTEN_AT = {"inquiries": "inquired_at", "consent_audit": "recorded_at"}
AUDIT_COLUMNS = ("erased_at", "request_id", "borrower_hash", "institution", "tables",
                 "rows_before")


def borrower_hash(borrower: str) -> str:
    """What the audit keeps of a pseudonym: its SHA-256, hex."""
    return hashlib.sha256(borrower.encode()).hexdigest()


def _where(table: str) -> str:
    cutoff = _WRITTEN_AT.get(table)
    if cutoff is None:
        return "borrower = {b:String}"
    return f"borrower = {{b:String}} AND {cutoff} <= fromUnixTimestamp64Milli({{at:Int64}}, 'UTC')"


def erase_borrower(ch: ClickHouse, borrower: str, *, request_id: str, institution: str,
                   requested_at_ms: int,
                   after_first_delete: Callable[[], None] | None = None) -> tuple[list[str], int]:
    """Delete ``borrower``'s rows everywhere, record the audit row; (tables, rows before).

    Rows of tables written outside the borrower's partition order (inquiries, consent audit)
    are deleted up to ``requested_at_ms`` only, so a replayed erasure never removes what was
    recorded after the request (a later inquiry, a new consent)."""
    tables = [row[0] for row in ch.query(_TABLES_SQL)]
    params = {"b": borrower, "at": requested_at_ms}
    rows_before = 0
    for table in tables:
        rows_before += ch.query(f"SELECT count() FROM `{table}` WHERE {_where(table)}",
                                params)[0][0]
    for n, table in enumerate(tables):
        ch.command(f"ALTER TABLE `{table}` DELETE WHERE {_where(table)}", params,
                   settings={"mutations_sync": 2})
        if n == 0 and after_first_delete is not None:
            after_first_delete()
    if erasure_status(ch, request_id) is None:
        ch.insert("erasures", [[datetime.now(UTC), request_id, borrower_hash(borrower),
                                institution, tables, rows_before]], AUDIT_COLUMNS)
    return tables, rows_before


def erasure_status(ch: ClickHouse, request_id: str) -> dict[str, Any] | None:
    """The audit row of a finished erasure (``erased_at``, ``tables``, ``rows_before``,
    ``institution``), or None while it has not finished (or never was requested)."""
    rows = ch.query("SELECT erased_at, tables, rows_before, institution FROM erasures "
                    "WHERE request_id = {r:String} ORDER BY erased_at LIMIT 1",
                    {"r": request_id})
    if not rows:
        return None
    erased_at, tables, rows_before, institution = rows[0]
    return {"erased_at": erased_at, "tables": list(tables), "rows_before": int(rows_before),
            "institution": institution}
