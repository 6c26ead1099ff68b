"""Erasure: after ``POST /api/v1/erasure`` (and ``registry erase``) no ClickHouse table holds the
borrower's pseudonym, Redis holds no consent of theirs, the risk API answers zeros, and the
audit table ``erasures`` records the erasure without the national id or the pseudonym."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import pytest
import redis

from streams.lender.simulator import SimulationParams, run_simulation
from streams.settings import Settings
from tests.support.oracle import pseudonym
from tests.support.pipeline import dump_clickhouse, wait_drained
from tests.support.services import REPO, settings_env

pytestmark = pytest.mark.integration

TOKEN = "local-dev-token"


def _post(settings: Settings, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.api_port}{path}", data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _consent_keys(settings: Settings, who: str) -> list[bytes]:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        return list(client.scan_iter(match=f"{settings.redis_prefix}c:{who}:*"))
    finally:
        client.close()


async def test_erasure_removes_every_trace_and_keeps_an_anonymous_audit(
        settings: Settings, worker_factory, tmp_path) -> None:
    params = SimulationParams(seed=99, lenders=2, borrowers=300, events=3000, days=20,
                              consent_rate=0.7, duplicate_rate=0.01, late_rate=0.0,
                              malformed_rate=0.0)
    truth = (await run_simulation(settings, params)).truth
    worker = worker_factory()
    await wait_drained(settings, timeout=360, worker=worker)

    raw_id, events = Counter(ev.borrower_id for ev in truth.admitted).most_common(1)[0]
    who = pseudonym(settings.pseudonym_key_bytes, raw_id)
    assert _consent_keys(settings, who)
    unauthorised = urllib.request.Request(
        f"http://127.0.0.1:{settings.api_port}/api/v1/erasure",
        data=json.dumps({"borrower_id": raw_id}).encode())
    with pytest.raises(urllib.error.HTTPError) as refused:
        await asyncio.to_thread(urllib.request.urlopen, unauthorised, timeout=30)
    assert refused.value.code == 401

    window = {"borrower_id": raw_id, "window_days": 30}
    status, before = await asyncio.to_thread(_post, settings, "/api/v1/frequency", window)
    assert status == 200 and before["active_days"] > 0

    status, erased = await asyncio.to_thread(_post, settings, "/api/v1/erasure",
                                             {"borrower_id": raw_id})
    assert status == 200, erased
    assert set(erased["tables"]) == {"admitted_events", "borrower_daily", "borrower_hourly",
                                     "consent_audit", "inquiries"}
    assert erased["rows_before"] > events  # ledger rows + buckets + consent audit + inquiry
    assert erased["consent_keys"] > 0
    assert not _consent_keys(settings, who)

    status, after = await asyncio.to_thread(_post, settings, "/api/v1/frequency", window)
    assert status == 200
    assert (after["draws"], after["repayments"], after["defaults"], after["active_days"],
            after["distinct_lenders"]) == (0, 0, 0, 0, 0)

    # that query left a fresh inquiry row; the CLI erases it (an erasure is repeatable)
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "streams.cli", "erase", "--borrower", raw_id,
                         "--url", f"http://127.0.0.1:{settings.api_port}", "--json"],
        env=settings_env(settings), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert raw_id not in done.stdout and who not in done.stdout
    assert json.loads(done.stdout)["rows_before"] == 1
    assert worker.stop() == 0, worker.log_tail()

    audit_hash = hashlib.sha256(who.encode()).hexdigest()
    found = dump_clickhouse(settings, who, raw_id, audit_hash)
    print(f"[erasure] borrower with {events} admitted events: first erasure "
          f"{erased['rows_before']} rows in {len(erased['tables'])} tables, "
          f"{erased['consent_keys']} consent keys; second (CLI) 1 row; found {found}")
    assert found[who] == [] and found[raw_id] == []
    assert found[audit_hash] == ["erasures"]
    assert raw_id not in worker.log_path.read_text(errors="replace")
