"""Token scopes and the data subject's report, against a real worker (Kafka, Redis, ClickHouse).

One borrower has events from two lenders (one of them after a revocation, so rejected), a
lender's cancel of one of its events, a revoked consent and two inquiries; the report (JSON
route, CLI and HTML page) lists each of them with every field compared: the cancelled event is
held and flagged ``cancelled``, the cancel is listed as an event of its own, and neither counts
in the risk API's answers. Scopes: a lender's token without the ``erasure`` scope gets 403
and nothing is erased — the report's rows and the Redis consent keys are counted before and
after and are equal — and ``registry_security_api_denied_total`` moves by exactly the number
of refusals. A second borrower erased with a token that holds the scope shows the erasure in
their report. Neither national id appears in the worker's log, in any answer or in the CLI
output; no token appears in the log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from schemas import national_id
from schemas.records import ConsentAction, ConsentRecord, EventType, LoanEvent, format_timestamp
from streams.kafka.topics import ensure_lender_topics
from streams.lender.publisher import LenderPublisher
from streams.settings import Settings
from tests.support.openapi_check import check_response
from tests.support.oracle import pseudonym
from tests.support.pipeline import dump_clickhouse, wait_drained
from tests.support.services import REPO, settings_env

pytestmark = pytest.mark.integration

DAY = 86_400_000
BANK_A, BANK_B = "rpt-bank-a", "rpt-bank-b"
TOK_A, TOK_B = "tok-bank-a-41c9", "tok-bank-b-77d2"  # lenders: frequency only (no scope list)
TOK_COUNTER = "tok-counter-0a5e"  # the registry's counter: subject reports only
TOK_REGULATOR = "tok-regulator-93bb"  # may erase and report
API_TOKENS = (f"bank-a:{TOK_A},bank-b:{TOK_B}:frequency,counter:{TOK_COUNTER}:subject_report,"
              f"regulator:{TOK_REGULATOR}:erasure+subject_report")
DENIED = "registry_security_api_denied_total"


def _ms(at_ms: int) -> int:
    return at_ms // 1000 * 1000 + 123  # whole seconds plus a fixed millisecond part


def _stamp_ms(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000)


def _denied(metrics_text: str) -> dict[tuple[str, str], float]:
    """``{(route, reason): value}`` of the security counter, whatever the label order."""
    out = {}
    for line in metrics_text.splitlines():
        if line.startswith(DENIED + "{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line[:line.rindex("}")]))
            out[(labels["route"], labels["reason"])] = float(line.rsplit(" ", 1)[1])
    return out


async def _consent_keys(settings: Settings, who: str) -> int:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        return len([k async for k in client.scan_iter(match=f"{settings.redis_prefix}c:{who}:*")])
    finally:
        await client.aclose()


class Api:
    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http, self.base = http, base

    async def post(self, path: str, token: str | None, body: dict[str, Any],
                   request_id: str | None = None) -> tuple[int, dict[str, Any], str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if request_id:
            headers["X-Request-Id"] = request_id
        async with self.http.post(self.base + path, json=body, headers=headers) as response:
            text = await response.text()
            return response.status, json.loads(text), text

    async def metrics(self) -> str:
        async with self.http.get(self.base + "/metrics") as response:
            assert response.status == 200
            return await response.text()


async def test_scopes_guard_erasure_and_the_report_lists_everything(
        settings: Settings, worker_factory) -> None:
    rng = random.Random(1616)
    person, erased_person = national_id.generate(rng), national_id.generate(rng)
    assert person != erased_person
    who = pseudonym(settings.pseudonym_key_bytes, person)
    now = int(time.time() * 1000)
    grant_at, revoke_at = _ms(now - 30 * DAY), _ms(now - 2 * DAY)
    consents = {
        BANK_A: [ConsentRecord(BANK_A, person, ConsentAction.GRANT, grant_at, "ev-a-1")],
        BANK_B: [ConsentRecord(BANK_B, person, ConsentAction.GRANT, grant_at, "ev-b-1"),
                 ConsentRecord(BANK_B, person, ConsentAction.REVOKE, revoke_at, "ev-b-2"),
                 ConsentRecord(BANK_B, erased_person, ConsentAction.GRANT, grant_at)],
    }
    e1 = LoanEvent("a-1", BANK_A, person, "loan-a", EventType.DRAW, 150_000, "CNY",
                   _ms(now - 10 * DAY), "huabei")
    e2 = LoanEvent("a-2", BANK_A, person, "loan-a", EventType.REPAYMENT, 50_000, "CNY",
                   _ms(now - 5 * DAY))
    e3 = LoanEvent("b-1", BANK_B, person, "loan-b", EventType.DRAW, 80_012, "CNY",
                   _ms(now - 8 * DAY), "jiebei")
    a_cancel = LoanEvent("a-3", BANK_A, person, "loan-a", EventType.CANCEL, 0, "CNY",
                         _ms(now - 4 * DAY), None, "a-2")  # bank A withdraws its repayment
    after_revoke = LoanEvent("b-2", BANK_B, person, "loan-b", EventType.DRAW, 99_900, "CNY",
                             _ms(now - DAY))
    other = LoanEvent("b-9", BANK_B, erased_person, "loan-q", EventType.DRAW, 10_000, "CNY",
                      _ms(now - 3 * DAY))
    events = {BANK_A: [e1, e2, a_cancel], BANK_B: [e3, after_revoke, other]}

    published_ms = int(time.time() * 1000)
    for lender in (BANK_A, BANK_B):
        await ensure_lender_topics(settings, lender)
        async with LenderPublisher(settings, lender) as publisher:
            for rec in consents[lender]:  # consent first and acknowledged (causal rule)
                await publisher.publish_consent(rec)
            await publisher.flush()
            for ev in events[lender]:
                await publisher.publish_event(ev)
            await publisher.flush()

    worker = worker_factory({"API_TOKENS": API_TOKENS})
    await wait_drained(settings, timeout=360, worker=worker)

    base = f"http://{settings.api_host}:{settings.api_port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        api = Api(http, base)
        deadline = time.monotonic() + 120
        while True:
            try:
                await api.metrics()
                break
            except (aiohttp.ClientError, AssertionError):
                assert worker.proc.poll() is None, worker.log_tail()
                assert time.monotonic() < deadline, f"API never came up\n{worker.log_tail()}"
                await asyncio.sleep(0.25)
        denied_before = _denied(await api.metrics())

        # --- two inquiries by two lenders ----------------------------------------------------
        asked, figures = [], []
        for token, purpose, window, rid, inst in (
                (TOK_A, "loan_application", 30, "q-bank-a", "bank-a"),
                (TOK_B, "account_review", 7, "q-bank-b", "bank-b")):
            t0 = int(time.time() * 1000)
            status, answer, _ = await api.post("/api/v1/frequency", token,
                                               {"borrower_id": person, "window_days": window,
                                                "purpose": purpose}, rid)
            assert status == 200
            asked.append((inst, purpose, window, rid, t0, int(time.time() * 1000)))
            figures.append({k: answer[k] for k in (
                "draws", "draw_amount", "repayments", "repaid_amount", "distinct_lenders",
                "active_days", "last_draw_at")})
        # the cancelled repayment and the cancel count nowhere: 30 days hold the two draws,
        # the last 7 days (the repayment's and the cancel's days) nothing at all
        assert figures == [
            {"draws": 2, "draw_amount": "2300.12", "repayments": 0, "repaid_amount": "0.00",
             "distinct_lenders": 2, "active_days": 2,
             "last_draw_at": format_timestamp(e3.occurred_at_ms)},
            {"draws": 0, "draw_amount": "0.00", "repayments": 0, "repaid_amount": "0.00",
             "distinct_lenders": 0, "active_days": 0, "last_draw_at": None}]

        # --- the report, compared field by field ----------------------------------------------
        t0 = int(time.time() * 1000)
        status, first, text = await api.post("/api/v1/subject-report", TOK_COUNTER,
                                             {"borrower_id": person}, "rep-1")
        t1 = int(time.time() * 1000)
        assert status == 200, first
        check_response("POST", "/api/v1/subject-report", 200, first)  # the OpenAPI schema
        assert person not in text
        assert set(first) == {"request_id", "generated_at", "pseudonym", "events", "consents",
                              "inquiries", "erasures"}
        assert first["request_id"] == "rep-1" and first["pseudonym"] == who
        assert t0 <= _stamp_ms(first["generated_at"]) <= t1

        admitted_at = [_stamp_ms(e.pop("admitted_at")) for e in first["events"]]
        assert all(published_ms <= at <= t0 for at in admitted_at), admitted_at
        assert first["events"] == [
            {"lender_id": BANK_A, "event_id": "a-1", "loan_id": "loan-a", "event_type": "draw",
             "amount": "1500.00", "currency": "CNY",
             "occurred_at": format_timestamp(e1.occurred_at_ms), "product": "huabei",
             "cancels_event_id": None, "cancelled": False},
            {"lender_id": BANK_A, "event_id": "a-2", "loan_id": "loan-a",
             "event_type": "repayment", "amount": "500.00", "currency": "CNY",
             "occurred_at": format_timestamp(e2.occurred_at_ms), "product": None,
             "cancels_event_id": None, "cancelled": True},
            {"lender_id": BANK_A, "event_id": "a-3", "loan_id": "loan-a",
             "event_type": "cancel", "amount": None, "currency": "CNY",
             "occurred_at": format_timestamp(a_cancel.occurred_at_ms), "product": None,
             "cancels_event_id": "a-2", "cancelled": False},
            {"lender_id": BANK_B, "event_id": "b-1", "loan_id": "loan-b", "event_type": "draw",
             "amount": "800.12", "currency": "CNY",
             "occurred_at": format_timestamp(e3.occurred_at_ms), "product": "jiebei",
             "cancels_event_id": None, "cancelled": False},
        ]  # b-2 came after the revocation: rejected, so not held

        recorded = [_stamp_ms(h.pop("recorded_at")) for c in first["consents"]
                    for h in c["history"]]
        assert all(published_ms <= at <= t0 for at in recorded), recorded
        assert first["consents"] == [
            {"lender_id": BANK_A, "in_force": True, "history": [
                {"action": "grant", "effective_at": format_timestamp(grant_at),
                 "reference": "ev-a-1"}]},
            {"lender_id": BANK_B, "in_force": False, "history": [
                {"action": "grant", "effective_at": format_timestamp(grant_at),
                 "reference": "ev-b-1"},
                {"action": "revoke", "effective_at": format_timestamp(revoke_at),
                 "reference": "ev-b-2"}]},
        ]

        expected_inquiries = [*asked, ("counter", "subject_access", 0, "rep-1", t0, t1)]
        assert len(first["inquiries"]) == len(expected_inquiries)
        for got, (inst, purpose, window, rid, lo, hi) in zip(
                first["inquiries"], expected_inquiries, strict=True):
            assert lo <= _stamp_ms(got.pop("inquired_at")) <= hi
            assert got == {"institution": inst, "purpose": purpose, "window_days": window,
                           "request_id": rid}
        assert first["erasures"] == []

        # --- erasure without the scope: refused, nothing erased --------------------------------
        keys_before = await _consent_keys(settings, who)
        assert keys_before == 2
        for token, code, body in (
                (TOK_A, 403, {"error": "forbidden", "detail": "token lacks scope erasure"}),
                (TOK_COUNTER, 403, {"error": "forbidden", "detail": "token lacks scope erasure"}),
                (None, 401, {"error": "unauthorized"}),
                ("not-a-token-5f", 401, {"error": "unauthorized"})):
            status, answer, _ = await api.post("/api/v1/erasure", token, {"borrower_id": person})
            assert (status, answer) == (code, body)
        status, answer, _ = await api.post("/api/v1/subject-report", TOK_A,
                                           {"borrower_id": person})
        assert (status, answer) == (403, {"error": "forbidden",
                                          "detail": "token lacks scope subject_report"})
        status, answer, _ = await api.post("/api/v1/frequency", TOK_COUNTER,
                                           {"borrower_id": person})
        assert (status, answer) == (403, {"error": "forbidden",
                                          "detail": "token lacks scope frequency"})

        status, second, _ = await api.post("/api/v1/subject-report", TOK_COUNTER,
                                           {"borrower_id": person}, "rep-2")
        assert status == 200
        for e in second["events"]:
            e.pop("admitted_at")
        for c in second["consents"]:
            for h in c["history"]:
                h.pop("recorded_at")
        assert second["events"] == first["events"]  # 4 events before, 4 after
        assert second["consents"] == first["consents"]  # 3 consent rows before and after
        assert second["erasures"] == []
        assert [q["request_id"] for q in second["inquiries"]] == [
            "q-bank-a", "q-bank-b", "rep-1", "rep-2"]  # only the report's own row was added
        assert await _consent_keys(settings, who) == keys_before

        denied = _denied(await api.metrics())
        moved = {key: denied.get(key, 0) - denied_before.get(key, 0)
                 for key in set(denied) | set(denied_before)}
        assert {k: v for k, v in moved.items() if v} == {
            ("/api/v1/erasure", "forbidden"): 2, ("/api/v1/erasure", "unauthorized"): 2,
            ("/api/v1/subject-report", "forbidden"): 1, ("/api/v1/frequency", "forbidden"): 1}

        # --- a regulator erases the second person; their report shows the erasure --------------
        status, erasure, _ = await api.post("/api/v1/erasure", TOK_REGULATOR,
                                            {"borrower_id": erased_person}, "erase-q")
        assert status == 200, erasure
        status, report_q, text = await api.post("/api/v1/subject-report", TOK_REGULATOR,
                                                {"borrower_id": erased_person}, "rep-q")
        assert status == 200 and erased_person not in text
        assert (report_q["events"], report_q["consents"]) == ([], [])
        assert [(q["institution"], q["purpose"], q["request_id"])
                for q in report_q["inquiries"]] == [("regulator", "subject_access", "rep-q")]
        assert len(report_q["erasures"]) == 1
        got = report_q["erasures"][0]
        assert t1 <= _stamp_ms(got.pop("erased_at")) <= int(time.time() * 1000)
        assert got == {"request_id": "erase-q", "institution": "regulator",
                       "tables": erasure["tables"], "rows_before": erasure["rows_before"]}
        assert erasure["rows_before"] == 4  # ledger row, daily and hourly bucket, consent row

        # --- the readable page: a form that POSTs, never the id in a URL ------------------------
        async with http.get(base + "/subject-report") as response:
            assert response.status == 200
            page = await response.text()
            assert 'method="post"' in page and 'name="borrower_id"' in page
        async with http.post(base + "/subject-report",
                             data={"borrower_id": person, "token": TOK_COUNTER}) as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "no-store"
            page = await response.text()
        assert person not in page
        for needle in (BANK_A, BANK_B, "1500.00", "500.00", "800.12", "huabei", "ev-b-2",
                       "subject_access", "q-bank-b", who):
            assert needle in page, needle
        # event id, product, withdraws, cancelled: the cancelled repayment, the cancel, a draw
        for needle in ("<td>a-2</td><td>-</td><td>-</td><td>yes</td>",
                       "<td>a-3</td><td>-</td><td>a-2</td><td>no</td>",
                       "<td>a-1</td><td>huabei</td><td>-</td><td>no</td>"):
            assert needle in page, needle
        async with http.post(base + "/subject-report",
                             data={"borrower_id": person, "token": TOK_A}) as response:
            assert response.status == 403
            assert "token lacks scope subject_report" in await response.text()

    # --- the CLI: JSON and table ----------------------------------------------------------------
    env = {**settings_env(settings), "API_TOKENS": API_TOKENS}
    cli = [sys.executable, "-m", "streams.cli", "report", person, "--url", base]
    done = await asyncio.to_thread(subprocess.run, [*cli, "--json"], env=env, cwd=REPO,
                                   capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert person not in done.stdout
    from_cli = json.loads(done.stdout)
    for e in from_cli["events"]:
        e.pop("admitted_at")
    assert from_cli["events"] == first["events"]
    assert from_cli["inquiries"][-1]["institution"] == "counter"  # first subject_report token
    done = await asyncio.to_thread(subprocess.run, cli, env=env, cwd=REPO,
                                   capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert person not in done.stdout
    print(f"[subject report] CLI table:\n{done.stdout}")
    assert "events (4)" in done.stdout and "consents (2 lenders)" in done.stdout
    rows = {line.split()[6]: line.split() for line in done.stdout.splitlines()
            if line.startswith(f"  {BANK_A} ") or line.startswith(f"  {BANK_B} ")
            if len(line.split()) == 9}
    assert {eid: (row[2], row[3], row[7], row[8]) for eid, row in rows.items()} == {
        "a-1": ("draw", "1500.00", "-", "no"), "a-2": ("repayment", "500.00", "-", "yes"),
        "a-3": ("cancel", "-", "a-2", "no"), "b-1": ("draw", "800.12", "-", "no")}
    assert "inquiries (7)" in done.stdout and "erasures (0)" in done.stdout
    done = await asyncio.to_thread(subprocess.run, [*cli, "--token", TOK_A], env=env, cwd=REPO,
                                   capture_output=True, text=True, timeout=120)
    assert done.returncode == 77  # permission (sysexits EX_NOPERM)
    assert done.stderr.strip() == "registry report: forbidden: token lacks scope subject_report"

    assert worker.stop() == 0, worker.log_tail()
    log_text = worker.log_path.read_text(errors="replace")
    assert person not in log_text and erased_person not in log_text
    for token in (TOK_A, TOK_B, TOK_COUNTER, TOK_REGULATOR, "not-a-token-5f"):
        assert token not in log_text
    assert log_text.count("security: API request denied") == 8  # 6 API, page, CLI
    found = dump_clickhouse(settings, who, hashlib.sha256(who.encode()).hexdigest())
    assert sorted(found[who]) == ["admitted_events", "borrower_daily", "borrower_hourly",
                                  "consent_audit", "inquiries"]
    assert found[hashlib.sha256(who.encode()).hexdigest()] == []  # never erased
