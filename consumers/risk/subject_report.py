"""The data subject's access report: everything ClickHouse holds under one pseudonym.

:func:`subject_report` reads, for pseudonym ``borrower``:

* ``events`` — every admitted event of the ledger (``admitted_events FINAL``: one row per
  ``(lender, event_id)``, the newest version), ordered by lender, then event time, then id, with
  the amount as a decimal string, ``cancels_event_id`` (a cancel's own row: the event it
  withdraws; None otherwise) and a ``cancelled`` flag: true when a cancel row of the same
  borrower and lender names the event (README, Corrections). Cancelled events stay listed:
  the subject sees what was furnished and that it was withdrawn;
* ``consents`` — per lender (ordered by lender id), the whole consent history as applied
  (``consent_audit FINAL``: one row per source record, ordered by effective time, grant before
  revoke at equal times, then by arrival) and ``in_force``: whether consent is in force at
  ``now_ms`` by the rule of :mod:`streams.consent.store` — the latest change effective at or
  before ``now_ms`` decides, a revoke wins a tie, no such change means not in force;
* ``inquiries`` — every inquiry about the borrower (institution, time, purpose, window, request
  id), oldest first; the caller records the report's own inquiry first, so it is listed;
* ``erasures`` — every erasure audit row whose ``borrower_hash`` is ``sha256(pseudonym)``.

Times are RFC 3339 UTC with milliseconds. Nothing here reads or returns the national id. Only
ClickHouse is read: the stream state and topics hold the same facts in other forms (see the
README's privacy section). Raises the facade's ``ClickHouseError`` when ClickHouse cannot answer.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any, Protocol

from consumers.risk.frequency import money
from schemas.records import format_timestamp

SUBJECT_ACCESS_PURPOSE = "subject_access"

_EVENTS_SQL = (
    "SELECT lender_id, event_id, loan_id, event_type, amount_minor, currency, "
    "toUnixTimestamp64Milli(occurred_at), product, toUnixTimestamp64Milli(admitted_at), "
    "cancels_event_id, event_type != 'cancel' AND (lender_id, event_id) IN ("
    "SELECT lender_id, cancels_event_id FROM admitted_events FINAL "
    "WHERE borrower = {b:String} AND event_type = 'cancel') "
    "FROM admitted_events FINAL WHERE borrower = {b:String} "
    "ORDER BY lender_id, occurred_at, event_id"
)
_CONSENTS_SQL = (
    "SELECT lender_id, action, toUnixTimestamp64Milli(effective_at), reference, "
    "toUnixTimestamp64Milli(recorded_at), source_topic, source_partition, source_offset "
    "FROM consent_audit FINAL WHERE borrower = {b:String}"
)
_INQUIRIES_SQL = (
    "SELECT institution, toUnixTimestamp64Milli(inquired_at), purpose, window_days, request_id "
    "FROM inquiries WHERE borrower = {b:String} ORDER BY inquired_at, request_id"
)
_ERASURES_SQL = (
    "SELECT toUnixTimestamp64Milli(erased_at), request_id, institution, tables, rows_before "
    "FROM erasures WHERE borrower_hash = {h:String} ORDER BY erased_at, request_id"
)


class QueryFacade(Protocol):
    """The part of :class:`consumers.clickhouse.client.ClickHouse` this module needs."""

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]: ...


def erasure_hash(borrower: str) -> str:
    """The key of ``erasures`` rows: sha256 of the pseudonym, hex."""
    return hashlib.sha256(borrower.encode()).hexdigest()


def consent_in_force(changes: list[tuple[int, str]], now_ms: int) -> bool:
    """``changes`` = ``(effective_ms, action)``; the rule of :mod:`streams.consent.store`."""
    applicable = [(at, action == "revoke") for at, action in changes if at <= now_ms]
    if not applicable:
        return False
    _, revoked = max(applicable)  # latest time; at equal times True (revoke) sorts last
    return not revoked


def subject_report(ch: QueryFacade, *, borrower: str, now_ms: int) -> dict[str, Any]:
    """The report's data keys (``events``, ``consents``, ``inquiries``, ``erasures``)."""
    params = {"b": borrower}
    events = [
        {
            "lender_id": lender, "event_id": event_id, "loan_id": loan_id,
            "event_type": event_type,
            # a cancel sent without an amount is stored as 0: shown as none, not as 0.00
            "amount": None if event_type == "cancel" and int(amount) == 0
            else money(int(amount)), "currency": currency,
            "occurred_at": format_timestamp(int(occurred)), "product": product or None,
            "admitted_at": format_timestamp(int(admitted)),
            "cancels_event_id": cancels or None, "cancelled": bool(cancelled),
        }
        for (lender, event_id, loan_id, event_type, amount, currency, occurred, product,
             admitted, cancels, cancelled)
        in ch.query(_EVENTS_SQL, params)
    ]

    per_lender: dict[str, list[tuple]] = defaultdict(list)
    for lender, action, effective, reference, recorded, topic, partition, offset in ch.query(
            _CONSENTS_SQL, params):
        per_lender[lender].append((int(effective), action == "revoke", int(recorded), topic,
                                   int(partition), int(offset), action, reference))
    consents = []
    for lender in sorted(per_lender):
        rows = sorted(per_lender[lender])
        consents.append({
            "lender_id": lender,
            "in_force": consent_in_force([(r[0], r[6]) for r in rows], now_ms),
            "history": [
                {"action": r[6], "effective_at": format_timestamp(r[0]), "reference": r[7],
                 "recorded_at": format_timestamp(r[2])}
                for r in rows
            ],
        })

    inquiries = [
        {"institution": institution, "inquired_at": format_timestamp(int(at)),
         "purpose": purpose, "window_days": int(window), "request_id": request_id}
        for institution, at, purpose, window, request_id in ch.query(_INQUIRIES_SQL, params)
    ]
    erasures = [
        {"erased_at": format_timestamp(int(at)), "request_id": request_id,
         "institution": institution, "tables": list(tables), "rows_before": int(rows_before)}
        for at, request_id, institution, tables, rows_before in ch.query(
            _ERASURES_SQL, {"h": erasure_hash(borrower)})
    ]
    return {"events": events, "consents": consents, "inquiries": inquiries,
            "erasures": erasures}
