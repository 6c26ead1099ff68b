"""Erasure that stays erased: the stream state of the borrower goes too (issue: a new draw after
an erasure used to bring the erased draw back, because the day bucket in the Faust table still
counted it).

Each scenario, as a data subject and a lender would live it: consent at lender L, one draw,
the risk API shows 1 draw; the erasure; the answer shows 0; the borrower consents again and
draws once more the same day; the answer shows exactly 1 draw. Variants: a worker restart
between the erasure and the new draw (state restored from the changelog), and a SIGKILL in the
middle of the erasure (the command is replayed and the erasure completes after the restart).
After each, the latest changelog record of the borrower's key is a tombstone.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest

from schemas import national_id
from schemas.records import ConsentAction, ConsentRecord, EventType, LoanEvent
from streams.kafka.topics import ensure_lender_topics
from streams.lender.publisher import LenderPublisher
from streams.settings import Settings
from tests.support.oracle import pseudonym
from tests.support.pipeline import read_to_end, wait_drained

pytestmark = pytest.mark.integration

TOKEN = "local-dev-token"
LENDER = "ant-huabei"
WINDOW_DAYS = 2  # today and yesterday: both draws fall in it even across local midnight


def _call(settings: Settings, method: str, path: str, body: dict[str, Any] | None = None,
          request_id: str | None = None, timeout: float = 60) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    if request_id:
        headers["X-Request-Id"] = request_id
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.api_port}{path}", method=method, headers=headers,
        data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


async def _draws(settings: Settings, borrower_id: str) -> int:
    status, answer = await asyncio.to_thread(
        _call, settings, "POST", "/api/v1/frequency",
        {"borrower_id": borrower_id, "window_days": WINDOW_DAYS})
    assert status == 200, answer
    return int(answer["draws"])


async def _api_up(settings: Settings, worker: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert worker.proc.poll() is None, worker.log_tail()
        try:
            await asyncio.to_thread(_call, settings, "GET", "/api/v1/lag", None, None, 5)
            return
        except OSError:
            assert time.monotonic() < deadline, "the worker's API did not come up"
            await asyncio.sleep(0.5)


async def _follow(settings: Settings, request_id: str, timeout: float = 150) -> dict[str, Any]:
    """Poll ``GET /api/v1/erasure/{id}`` until the erasure is done (202 meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        status, answer = await asyncio.to_thread(
            _call, settings, "GET", f"/api/v1/erasure/{request_id}")
        if status == 200:
            return answer
        assert status == 202 and time.monotonic() < deadline, (status, answer)
        await asyncio.sleep(0.5)


async def _consent_and_draw(settings: Settings, borrower_id: str, event_id: str,
                            consent_at_ms: int, draw_at_ms: int) -> None:
    await ensure_lender_topics(settings, LENDER)
    async with LenderPublisher(settings, LENDER) as publisher:
        await publisher.publish_consent(
            ConsentRecord(LENDER, borrower_id, ConsentAction.GRANT, consent_at_ms))
        await publisher.flush()
        await publisher.publish_event(LoanEvent(
            event_id, LENDER, borrower_id, "loan-1", EventType.DRAW, 125_000, "CNY",
            draw_at_ms))
        await publisher.flush()


async def _changelog_latest(settings: Settings, key: bytes) -> list[bytes | None]:
    """The value of the latest record of ``key`` in the borrower-state changelog, per
    partition that holds the key (None = tombstone)."""
    topic = f"{settings.registry_app_id}-borrower-state-changelog"
    latest: dict[int, bytes | None] = {}

    def keep(record: Any) -> None:
        if record.key == key:
            latest[record.partition] = record.value

    await read_to_end(settings, lambda name: name == topic, keep, timeout=60)
    return list(latest.values())


async def _scenario(settings: Settings, worker_factory, *, between: str) -> dict[str, Any]:
    borrower_id = national_id.generate(random.Random(hash(between) & 0xFFFF))
    who = pseudonym(settings.pseudonym_key_bytes, borrower_id)
    now = int(time.time() * 1000)
    await _consent_and_draw(settings, borrower_id, f"{between}-1", now - 3_600_000, now - 60_000)
    env = {"FAULT_KILL_DURING_ERASURE": "1"} if between == "kill" else {}
    worker = worker_factory(env)
    await wait_drained(settings, timeout=180, worker=worker)
    await _api_up(settings, worker)
    figures: dict[str, Any] = {"draws_before": await _draws(settings, borrower_id)}

    request_id = uuid.uuid4().hex
    if between == "kill":
        try:
            status, erased = await asyncio.to_thread(
                _call, settings, "POST", "/api/v1/erasure", {"borrower_id": borrower_id},
                request_id)
        except OSError:  # the worker died mid-request, as it was told to
            status, erased = 0, {}
        deadline = time.monotonic() + 60
        while worker.proc.poll() is None:
            assert time.monotonic() < deadline, "the fault switch did not kill the worker"
            await asyncio.sleep(0.2)
        figures["killed_mid_erasure"] = status == 0
        assert "fault injection: SIGKILL during an erasure" in worker.log_path.read_text()
        worker.stop()
        worker = worker_factory()
        await _api_up(settings, worker)
        erased = await _follow(settings, request_id)
    else:
        status, erased = await asyncio.to_thread(
            _call, settings, "POST", "/api/v1/erasure", {"borrower_id": borrower_id},
            request_id)
        assert status == 200, erased
    assert erased["status"] == "done" and erased["request_id"] == request_id
    figures["rows_erased"] = erased["rows_before"]
    figures["draws_after_erasure"] = await _draws(settings, borrower_id)

    # a fresh consumer restoring the table finds no state: the latest record is a tombstone
    deadline = time.monotonic() + 60
    while True:
        latest = await _changelog_latest(settings, who.encode())
        if latest and all(v is None for v in latest):
            break
        assert time.monotonic() < deadline, f"changelog not tombstoned: {latest}"
        await asyncio.sleep(1.0)
    figures["changelog_tombstoned_partitions"] = len(latest)

    if between == "restart":
        assert worker.stop() == 0, worker.log_tail()
        worker = worker_factory()
        await _api_up(settings, worker)

    # the same erasure again changes nothing (after a restart the group may still be
    # re-forming: then the answer is 202 and the request id is followed)
    again_id = uuid.uuid4().hex
    again, repeated = await asyncio.to_thread(
        _call, settings, "POST", "/api/v1/erasure", {"borrower_id": borrower_id}, again_id)
    if again == 202:
        repeated = await _follow(settings, again_id)
    assert repeated["rows_before"] == 1, repeated  # the one inquiry row

    now = int(time.time() * 1000)
    await _consent_and_draw(settings, borrower_id, f"{between}-2", now - 1000, now)
    await wait_drained(settings, timeout=180, worker=worker)
    figures["draws_after_new_draw"] = await _draws(settings, borrower_id)
    assert worker.stop() == 0, worker.log_tail()
    latest = await _changelog_latest(settings, who.encode())
    figures["changelog_live_after_new_draw"] = sum(v is not None for v in latest)
    return figures


@pytest.mark.parametrize("between", ["nothing", "restart", "kill"])
async def test_erased_draw_stays_erased_after_a_new_draw(settings: Settings, worker_factory,
                                                        between: str) -> None:
    figures = await _scenario(settings, worker_factory, between=between)
    print(f"\n[erasure-stream {between}] {figures}")
    assert figures["draws_before"] == 1
    assert figures["draws_after_erasure"] == 0
    assert figures["draws_after_new_draw"] == 1
    assert figures["rows_erased"] >= 4  # ledger, daily, hourly, consent audit (+ inquiry)
    assert figures["changelog_tombstoned_partitions"] == 1
    # the new draw wrote the key again after the tombstone: exactly one live state
    assert figures["changelog_live_after_new_draw"] == 1
