"""The risk API against the real stack: a seeded simulation goes through Kafka -> Faust worker
-> Redis -> embedded ClickHouse, and the worker's own HTTP server answers ``POST
/api/v1/frequency`` for the simulator's borrowers who draw about once a month and about ten
times a month. Every number of every answer (totals, distinct lenders, active days, last draw,
the daily series) equals what the simulator's ground truth says for the same local-day window;
ten-a-month borrowers show clearly more draws than monthly ones; ``as_of`` is a real watermark;
and after the worker stopped, ``inquiries`` holds exactly one row per query.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from streams.lender.ground_truth import AdmittedEvent, GroundTruth
from streams.lender.scenario import build_scenario
from streams.lender.sim_types import ItemKind, SimulationParams
from streams.lender.simulator import run_simulation
from streams.settings import Settings
from tests.support.pipeline import wait_drained
from tests.support.services import REPO, settings_env

pytestmark = pytest.mark.integration

TOKENS = {"tok-bank-a": "bank-a", "tok-bank-b": "bank-b"}
WINDOW = 30
PER_PROFILE = 5

_INQUIRIES = """
import json, sys
from consumers.clickhouse.client import connect
from streams.settings import Settings
ch = connect(Settings())
rows = ch.query("SELECT request_id, institution, borrower, purpose, window_days FROM inquiries")
json.dump([list(r) for r in rows], sys.stdout, default=str)
"""


# --- the expected answer, computed from the ground truth only ------------------------------


def _pseudonym(key: bytes, national_id: str) -> str:
    return hmac.new(key, national_id.encode(), hashlib.sha256).hexdigest()[:32]


def _money(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def _stamp(ms: int | None) -> str | None:
    if ms is None:
        return None
    at = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{at:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def _local_day(ms: int, settings: Settings) -> date:
    return datetime.fromtimestamp(ms // 1000, UTC).astimezone(settings.tz).date()


def _window(end: date, days: int) -> tuple[date, date]:
    return end - timedelta(days=days - 1), end


def _expected(events: list[AdmittedEvent], settings: Settings, start: date, end: date
              ) -> dict[str, Any]:
    """The answer's numbers for the counted events (admitted, not cancels, not cancelled)
    whose local day is in [start, end]."""
    inside = [ev for ev in events if start <= _local_day(ev.occurred_at_ms, settings) <= end]
    draws = [ev for ev in inside if ev.event_type == "draw"]
    repayments = [ev for ev in inside if ev.event_type == "repayment"]
    per_day: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for ev in draws:
        day = per_day[_local_day(ev.occurred_at_ms, settings)]
        day[0] += 1
        day[1] += ev.amount_minor
    days = (end - start).days + 1
    series = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        n, amount = per_day.get(day, (0, 0))
        series.append({"date": day.isoformat(), "draws": n, "draw_amount": _money(amount)})
    return {
        "window_days": days,
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "draws": len(draws),
        "draw_amount": _money(sum(ev.amount_minor for ev in draws)),
        "repayments": len(repayments),
        "repaid_amount": _money(sum(ev.amount_minor for ev in repayments)),
        "defaults": sum(1 for ev in inside if ev.event_type == "default"),
        "distinct_lenders": len({ev.lender_id for ev in inside}),
        "active_days": len({_local_day(ev.occurred_at_ms, settings) for ev in inside}),
        "last_draw_at": _stamp(max((ev.occurred_at_ms for ev in draws), default=None)),
        "daily": series,
    }


def _pick(truth: GroundTruth, published: dict[str, set[str]], settings: Settings,
          profile: str, today: date) -> list[str]:
    """Borrowers of ``profile`` whose every published event of the window was admitted (their
    consent covered the whole window, so their answer shows the profile's real rhythm) and
    who drew in it; those with admitted events before the window first (the cut is tested)."""
    start, end = _window(today, WINDOW)
    by_borrower: dict[str, list[AdmittedEvent]] = defaultdict(list)
    for ev in truth.admitted:
        by_borrower[ev.borrower_id].append(ev)
    counted = {(ev.lender_id, ev.event_id) for ev in truth.counted()}  # not cancelled

    def days(ev: AdmittedEvent) -> date:
        return _local_day(ev.occurred_at_ms, settings)

    candidates = []
    for bid, info in sorted(truth.borrowers.items()):
        if info.profile != profile:
            continue
        events = by_borrower.get(bid, [])
        inside = {ev.event_id for ev in events if start <= days(ev) <= end}
        if not any(ev.event_type == "draw" and ev.event_id in inside
                   and (ev.lender_id, ev.event_id) in counted for ev in events):
            continue
        if inside != published.get(bid, set()):
            continue  # part of the window without consent
        before = any(days(ev) < start for ev in events)
        candidates.append((not before, bid))
    candidates.sort()
    return [bid for _, bid in candidates[:PER_PROFILE]]


# --- the test -------------------------------------------------------------------------------


async def test_api_answers_match_ground_truth_through_the_pipeline(
    settings: Settings, worker_factory, tmp_path
) -> None:
    began = time.monotonic()
    began_ms = int(time.time() * 1000)
    params = SimulationParams(seed=20261201, lenders=3, borrowers=300, days=40,
                              consent_rate=1.0, duplicate_rate=0.02, late_rate=0.03,
                              malformed_rate=0.005, now_ms=began_ms // 1000 * 1000)
    scenario = build_scenario(params)
    # exactly the history's loan-topic records: the run then stops instead of going live
    history = [item for item in scenario.items if item.kind is not ItemKind.CONSENT]
    params = SimulationParams(**{**params.to_json(), "events": len(history)})

    result = await run_simulation(settings, params, truth_path=tmp_path / "truth.json")
    truth = result.truth
    assert result.history_complete and result.live_items == 0
    assert result.acked == result.sent
    simulated = time.monotonic()

    worker = worker_factory({"API_TOKENS": ",".join(f"{inst}:{tok}"
                                                    for tok, inst in TOKENS.items())})
    await wait_drained(settings, timeout=240, worker=worker)
    drained = time.monotonic()

    # what was published per borrower in the selection window (duplicates are one event)
    today = datetime.now(UTC).astimezone(settings.tz).date()
    start, end = _window(today, WINDOW)
    published: dict[str, set[str]] = defaultdict(set)
    for item in history:
        if item.kind is ItemKind.LOAN and item.loan is not None:
            ev = item.loan
            if start <= _local_day(ev.occurred_at_ms, settings) <= end:
                published[ev.borrower_id].add(ev.event_id)
    chosen = {profile: _pick(truth, published, settings, profile, today)
              for profile in ("monthly", "ten_a_month")}
    assert all(len(ids) == PER_PROFILE for ids in chosen.values()), chosen
    # the answers count what was not cancelled (cancels themselves count nowhere)
    events = {bid: truth.counted_for(bid) for ids in chosen.values() for bid in ids}

    base = f"http://{settings.api_host}:{settings.api_port}"
    asked: list[tuple[str, str, str, int]] = []  # (request id, institution, pseudonym, window)
    answers: dict[tuple[str, int, str], dict[str, Any]] = {}  # (national id, window, token)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def up() -> bool:
            try:
                async with http.get(f"{base}/metrics") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        deadline = time.monotonic() + 120
        while not await up():
            assert worker.proc.poll() is None, worker.log_tail()
            assert time.monotonic() < deadline, f"risk API never came up\n{worker.log_tail()}"
            await asyncio.sleep(0.25)

        async def ask(bid: str, window: int, token: str) -> dict[str, Any]:
            request_id = f"q{len(asked):03d}"
            before = datetime.now(UTC).astimezone(settings.tz).date()
            async with http.post(f"{base}/api/v1/frequency",
                                 headers={"Authorization": f"Bearer {token}",
                                          "X-Request-Id": request_id},
                                 json={"borrower_id": bid, "window_days": window}) as response:
                assert response.status == 200, await response.text()
                body = await response.json()
            after = datetime.now(UTC).astimezone(settings.tz).date()
            asked.append((request_id, TOKENS[token],
                          _pseudonym(settings.pseudonym_key_bytes, bid), window))
            assert body["request_id"] == request_id
            assert bid not in json.dumps(body)  # the national id is never echoed
            # the window is the local days [today - N + 1, today] of the registry time zone
            assert date.fromisoformat(body["window_end"]) in (before, after)
            answers[(bid, window, token)] = body
            return body

        for ids in chosen.values():
            for bid in ids:
                await ask(bid, WINDOW, "tok-bank-a")
        for bid in chosen["ten_a_month"][:2]:  # a short window cuts the series too
            await ask(bid, 7, "tok-bank-a")
        second = chosen["monthly"][0]  # another institution asks: both are counted
        await ask(second, WINDOW, "tok-bank-b")

    now_ms = int(time.time() * 1000)
    for (bid, window, _), body in answers.items():
        start, end = _window(date.fromisoformat(body["window_end"]), window)
        expected = _expected(events[bid], settings, start, end)
        got = {key: body[key] for key in expected}
        assert got == expected, (bid, window)
        assert body["as_of"] is not None
        as_of = datetime.fromisoformat(body["as_of"].replace("Z", "+00:00"))
        assert began_ms <= as_of.timestamp() * 1000 <= now_ms, body["as_of"]
    assert answers[(second, WINDOW, "tok-bank-a")]["inquiring_institutions"] == 1
    assert answers[(second, WINDOW, "tok-bank-b")]["inquiring_institutions"] == 2

    draws = {profile: [answers[(bid, WINDOW, "tok-bank-a")]["draws"] for bid in ids]
             for profile, ids in chosen.items()}
    short = [answers[(b, 7, "tok-bank-a")]["draws"] for b in chosen["ten_a_month"][:2]]
    print(f"\nmonthly draws in {WINDOW} days: {draws['monthly']}; "
          f"ten_a_month: {draws['ten_a_month']}; "
          f"ten_a_month in 7 days: {short}; "
          f"admitted {len(truth.admitted)} of {truth.published['loans']} loan events; "
          f"as_of {answers[(second, WINDOW, 'tok-bank-b')]['as_of']}")
    assert min(draws["ten_a_month"]) > max(draws["monthly"])
    assert sum(draws["ten_a_month"]) >= 3 * sum(draws["monthly"])
    assert max(draws["monthly"]) <= 2 and min(draws["ten_a_month"]) >= 6

    assert worker.stop() == 0, worker.log_tail()
    done = subprocess.run([sys.executable, "-c", _INQUIRIES], env=settings_env(settings),
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = sorted(tuple(r) for r in json.loads(done.stdout))
    assert rows == sorted((rid, inst, who, "loan_application", window)
                          for rid, inst, who, window in asked)
    print(f"timings: simulate {simulated - began:.1f}s, drain {drained - simulated:.1f}s, "
          f"total {time.monotonic() - began:.1f}s; {len(asked)} queries, {len(rows)} inquiries")

