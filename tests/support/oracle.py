"""The expected ClickHouse contents, computed independently of the registry's code from the
simulator's ground truth (plain loops over the admitted events; no registry module used).

Cancels (CANCEL_SPEC, README "Corrections"): an admitted event of type ``cancel`` withdraws the
admitted non-cancel event of the same borrower and lender whose ``event_id`` it names, whenever
either arrived. The *counted* events are the admitted events that are not cancels and not so
withdrawn; the buckets are built from them only. The ledger (``admitted_events FINAL``) holds
every admitted event, cancels included. A bucket whose every event was withdrawn may stay in
ClickHouse as an all-zero row; comparisons drop all-zero rows on both sides.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

#: Bucket columns as ``chdb_dump`` reads them, after (borrower, day or hour); then comes
#: ``last_draw_at_ms`` (epoch ms, None without a draw).
BUCKET_FIELDS = ("draws", "draw_amount_minor", "repayments", "repaid_amount_minor", "defaults",
                 "lenders")
CANCEL = "cancel"


def pseudonym(key: bytes, national_id: str) -> str:
    return hmac.new(key, national_id.encode(), hashlib.sha256).hexdigest()[:32]


def cancelled_keys(admitted: Iterable[Any]) -> set[tuple[str, str, str]]:
    """``(borrower_id, lender_id, event_id)`` named by an admitted cancel."""
    return {(ev.borrower_id, ev.lender_id, ev.cancels_event_id)
            for ev in admitted if ev.event_type == CANCEL}


def counted_events(admitted: list[Any]) -> list[Any]:
    """The admitted events that count: not cancels, not withdrawn by an admitted cancel."""
    gone = cancelled_keys(admitted)
    return [ev for ev in admitted if ev.event_type != CANCEL
            and (ev.borrower_id, ev.lender_id, ev.event_id) not in gone]


def _empty() -> dict[str, Any]:
    return {"draws": 0, "draw_amount_minor": 0, "repayments": 0, "repaid_amount_minor": 0,
            "defaults": 0, "lenders": set(), "last_draw_at_ms": None}


def expected_buckets(admitted: list[Any], key: bytes, tz: ZoneInfo
                     ) -> tuple[dict[tuple[str, str], dict], dict[tuple[str, str], dict]]:
    """(daily, hourly) keyed by (pseudonym, ISO date) and (pseudonym, ISO UTC hour), from the
    counted events among ``admitted`` (which may hold cancels)."""
    daily: dict[tuple[str, str], dict] = defaultdict(_empty)
    hourly: dict[tuple[str, str], dict] = defaultdict(_empty)
    for ev in counted_events(admitted):
        who = pseudonym(key, ev.borrower_id)
        at = datetime.fromtimestamp(ev.occurred_at_ms / 1000, UTC)
        day = at.astimezone(tz).date().isoformat()
        hour = at.replace(minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:00")
        for bucket in (daily[(who, day)], hourly[(who, hour)]):
            if ev.event_type == "draw":
                bucket["draws"] += 1
                bucket["draw_amount_minor"] += ev.amount_minor
                last = bucket["last_draw_at_ms"]
                bucket["last_draw_at_ms"] = max(last or 0, ev.occurred_at_ms)
            elif ev.event_type == "repayment":
                bucket["repayments"] += 1
                bucket["repaid_amount_minor"] += ev.amount_minor
            elif ev.event_type == "default":
                bucket["defaults"] += 1
            else:
                raise ValueError(f"unknown event type {ev.event_type!r}")
            bucket["lenders"].add(ev.lender_id)
    return dict(daily), dict(hourly)


def all_zero(bucket: dict[str, Any]) -> bool:
    """Nothing counted in the bucket (every event of it was cancelled): no draw, repayment or
    default, amounts 0, no lender. (``last_draw_at_ms`` is not looked at: an all-zero row
    with a last draw left is kept out of the comparison like any all-zero row, and counted
    by :func:`stale_last_draw`.)"""
    return not any(bucket[name] for name in BUCKET_FIELDS)


def stored_buckets(rows: list[list]) -> dict[tuple[str, str], dict]:
    """``chdb_dump``'s daily or hourly rows as {(borrower, day or hour): bucket}, lenders
    sorted, all-zero rows dropped."""
    out = {}
    for r in rows:
        bucket = dict(zip(BUCKET_FIELDS, [*r[2:7], sorted(r[7])], strict=True))
        bucket["last_draw_at_ms"] = r[8]
        if not all_zero(bucket):
            out[(r[0], r[1])] = bucket
    return out


def stale_last_draw(rows: list[list]) -> list[list]:
    """All-zero rows of ``chdb_dump`` that still name a last draw (should be NULL)."""
    return [r for r in rows if not any([*r[2:7], r[7]]) and r[8] is not None]


def expected_rows(buckets: dict[tuple[str, str], dict]) -> dict[tuple[str, str], dict]:
    """:func:`expected_buckets`' daily or hourly buckets shaped like :func:`stored_buckets`."""
    return {k: {**v, "lenders": sorted(v["lenders"])} for k, v in buckets.items()
            if not all_zero(v)}


def expected_ledger(admitted: list[Any]) -> Counter[tuple[str, str, str, str]]:
    """``(lender_id, event_id, event_type, cancels_event_id)`` of every admitted event."""
    return Counter((ev.lender_id, ev.event_id, str(ev.event_type), ev.cancels_event_id or "")
                   for ev in admitted)


def stored_ledger(rows: list[list]) -> Counter[tuple[str, str, str, str]]:
    """``chdb_dump``'s ``ledger`` rows in the shape of :func:`expected_ledger`."""
    return Counter((r[0], r[1], r[2], r[3]) for r in rows)


def ledger_difference(stored: list[list], admitted: list[Any]) -> str:
    """'' if the ledger holds exactly the admitted events, else a short description."""
    got, want = stored_ledger(stored), expected_ledger(admitted)
    if got == want:
        return ""
    extra, missing = got - want, want - got
    return (f"ledger differs: {sum(extra.values())} unexpected rows (e.g. "
            f"{list(extra)[:3]}), {sum(missing.values())} missing (e.g. {list(missing)[:3]})")
