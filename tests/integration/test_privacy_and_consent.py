"""Privacy and consent, end to end through a real worker.

Privacy: a canary national id published WITHOUT consent appears nowhere — no ClickHouse table,
no topic other than its lender's input topic, no worker log line, no Redis key or value; a
consented one appears only as its pseudonym.

Consent: a revocation at T admits events before T and rejects events after it; a grant at T
does not admit events before T.
"""

from __future__ import annotations

import random
import time

import pytest
import redis.asyncio as aioredis

from schemas import national_id
from schemas.records import ConsentAction, ConsentRecord, EventType, LoanEvent
from streams.kafka.topics import ensure_lender_topics
from streams.lender.publisher import LenderPublisher
from streams.settings import Settings
from tests.support.oracle import pseudonym
from tests.support.pipeline import dump_clickhouse, topics_containing, wait_drained

pytestmark = pytest.mark.integration

DAY = 86_400_000
LENDER = "canary-bank"


def _event(event_id: str, borrower: str, at_ms: int) -> LoanEvent:
    return LoanEvent(event_id, LENDER, borrower, f"loan-{event_id}", EventType.DRAW, 150_000,
                     "CNY", at_ms)


async def _publish(settings: Settings, consents: list[ConsentRecord],
                   events: list[LoanEvent]) -> None:
    await ensure_lender_topics(settings, LENDER)
    async with LenderPublisher(settings, LENDER) as publisher:
        for rec in consents:  # consent first and acknowledged: the registry's causal rule
            await publisher.publish_consent(rec)
        await publisher.flush()
        for ev in events:
            await publisher.publish_event(ev)
        await publisher.flush()


async def test_canary_id_without_consent_is_stored_nowhere(settings: Settings, worker_factory,
                                                           tmp_path) -> None:
    rng = random.Random(7)
    canary, consented = national_id.generate(rng), national_id.generate(rng)
    now = int(time.time() * 1000)
    await _publish(
        settings,
        [ConsentRecord(LENDER, consented, ConsentAction.GRANT, now - 10 * DAY)],
        [_event("canary-1", canary, now - DAY), _event("consented-1", consented, now - DAY)],
    )
    worker = worker_factory()
    await wait_drained(settings, timeout=360, worker=worker)
    assert worker.stop() == 0, worker.log_tail()

    consented_alias = pseudonym(settings.pseudonym_key_bytes, consented)
    canary_alias = pseudonym(settings.pseudonym_key_bytes, canary)
    tables = dump_clickhouse(settings, canary, consented, consented_alias, canary_alias)
    assert tables[canary] == [] and tables[consented] == []
    assert tables[canary_alias] == []  # not even its pseudonym: never admitted, never stored
    assert "admitted_events" in tables[consented_alias]

    topics = await topics_containing(settings, [canary.encode(), consented.encode(),
                                                canary_alias.encode()])
    input_topics = {settings.topics.loans(LENDER), settings.topics.consent(LENDER)}
    assert set(topics[canary.encode()]) <= input_topics
    assert set(topics[consented.encode()]) <= input_topics
    assert topics[canary.encode()], "the scan must at least see the canary in its input topic"
    assert topics[canary_alias.encode()] == []

    log_text = worker.log_path.read_text(errors="replace")
    assert canary not in log_text and consented not in log_text

    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}*")]
        assert keys, "the scan must see the deployment's Redis keys"
        for key in keys:
            values = [key]
            kind = await redis.type(key)
            if kind == b"string":
                values.append(await redis.get(key) or b"")
            elif kind == b"zset":
                values.extend(await redis.zrange(key, 0, -1))
            blob = b"\x00".join(values)
            assert canary.encode() not in blob and consented.encode() not in blob
            assert canary_alias.encode() not in blob
    finally:
        await redis.aclose()


async def test_revocation_and_late_grant_follow_event_time(settings: Settings, worker_factory
                                                           ) -> None:
    rng = random.Random(11)
    revoker, late_granter = national_id.generate(rng), national_id.generate(rng)
    now = int(time.time() * 1000)
    t = now - 5 * DAY
    await _publish(
        settings,
        [ConsentRecord(LENDER, revoker, ConsentAction.GRANT, t - 20 * DAY),
         ConsentRecord(LENDER, revoker, ConsentAction.REVOKE, t),
         ConsentRecord(LENDER, late_granter, ConsentAction.GRANT, t)],
        [_event("r-before", revoker, t - DAY), _event("r-after", revoker, t + 3_600_000),
         _event("g-before", late_granter, t - DAY), _event("g-after", late_granter, t + 1)],
    )
    worker = worker_factory()
    await wait_drained(settings, timeout=360, worker=worker)
    assert worker.stop() == 0, worker.log_tail()

    stored = dump_clickhouse(settings)
    assert stored["ledger_rows"] == 2
    assert sorted((r[0], r[1]) for r in stored["rejections"]) == [(LENDER, "NO_CONSENT")]
    assert stored["rejections"][0][2] == 2
    found = dump_clickhouse(settings, "r-before", "g-after", "r-after", "g-before")
    assert "admitted_events" in found["r-before"] and "admitted_events" in found["g-after"]
    assert found["r-after"] == ["rejections"] and found["g-before"] == ["rejections"]
