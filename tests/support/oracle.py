"""The expected ClickHouse contents, computed independently of the registry's code from the
simulator's ground truth (plain loops over the admitted events; no registry module used)."""

from __future__ import annotations

import hashlib
import hmac
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo


def pseudonym(key: bytes, national_id: str) -> str:
    return hmac.new(key, national_id.encode(), hashlib.sha256).hexdigest()[:32]


def _empty() -> dict[str, Any]:
    return {"draws": 0, "draw_amount_minor": 0, "repayments": 0, "repaid_amount_minor": 0,
            "defaults": 0, "lenders": set()}


def expected_buckets(admitted: list[Any], key: bytes, tz: ZoneInfo
                     ) -> tuple[dict[tuple[str, str], dict], dict[tuple[str, str], dict]]:
    """(daily, hourly) keyed by (pseudonym, ISO date) and (pseudonym, ISO UTC hour)."""
    daily: dict[tuple[str, str], dict] = defaultdict(_empty)
    hourly: dict[tuple[str, str], dict] = defaultdict(_empty)
    for ev in admitted:
        who = pseudonym(key, ev.borrower_id)
        at = datetime.fromtimestamp(ev.occurred_at_ms / 1000, UTC)
        day = at.astimezone(tz).date().isoformat()
        hour = at.replace(minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:00")
        for bucket in (daily[(who, day)], hourly[(who, hour)]):
            if ev.event_type == "draw":
                bucket["draws"] += 1
                bucket["draw_amount_minor"] += ev.amount_minor
            elif ev.event_type == "repayment":
                bucket["repayments"] += 1
                bucket["repaid_amount_minor"] += ev.amount_minor
            else:
                bucket["defaults"] += 1
            bucket["lenders"].add(ev.lender_id)
    return dict(daily), dict(hourly)
