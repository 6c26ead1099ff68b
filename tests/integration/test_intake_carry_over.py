"""A deployment that ran before bulk intake keeps its position.

Before bulk intake, the Faust group (named ``REGISTRY_APP_ID``) read the lender topics and
committed its offsets there. The intake group starts each lender partition it never committed
at that legacy offset, once: the records before it were decided by the old worker and must not
be admitted again; the ones after it must be.
"""

from __future__ import annotations

import random
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas import national_id
from schemas.codec import LOAN_EVENT, codec_for
from schemas.records import ConsentAction, ConsentRecord, EventType, LoanEvent
from streams.kafka.topics import ensure_lender_topics
from streams.lender.publisher import LenderPublisher
from streams.settings import Settings
from tests.support.pipeline import dump_clickhouse, wait_drained

pytestmark = pytest.mark.integration

LENDER = "legacy-bank"
EVENTS, LEGACY_OFFSET = 10, 6


async def test_intake_starts_where_the_legacy_faust_group_stopped(settings: Settings,
                                                                  worker_factory) -> None:
    borrower = national_id.generate(random.Random(11))
    now = int(time.time() * 1000)
    await ensure_lender_topics(settings, LENDER)
    topic = settings.topics.loans(LENDER)
    codec = codec_for(LOAN_EVENT)
    async with LenderPublisher(settings, LENDER) as publisher:
        await publisher.publish_consent(
            ConsentRecord(LENDER, borrower, ConsentAction.GRANT, now - 86_400_000))
        await publisher.flush()
    producer = AIOKafkaProducer(**settings.kafka_client_options(), acks="all",
                                enable_idempotence=True)
    await producer.start()
    try:
        for i in range(EVENTS):  # all on partition 0, in order
            event = LoanEvent(f"legacy-{i}", LENDER, borrower, "loan-1", EventType.DRAW,
                              1000 + i, "CNY", now - 60_000 + i)
            await producer.send_and_wait(topic, codec.encode(event.to_avro()), partition=0)
    finally:
        await producer.stop()
    legacy = AIOKafkaConsumer(**settings.kafka_client_options(),
                              group_id=settings.registry_app_id, enable_auto_commit=False)
    await legacy.start()
    try:
        tp = TopicPartition(topic, 0)
        legacy.assign([tp])
        await legacy.commit({tp: LEGACY_OFFSET})
    finally:
        await legacy.stop()

    worker = worker_factory()
    await wait_drained(settings, timeout=180, worker=worker)
    assert worker.stop() == 0, worker.log_tail()
    log_text = worker.log_path.read_text(errors="replace")
    assert f"starts at the legacy group's offset {LEGACY_OFFSET}" in log_text
    found = dump_clickhouse(settings, *(f"legacy-{i}" for i in range(EVENTS)))
    admitted = sorted(int(k.split("-")[1]) for k, tables in found.items() if tables)
    assert admitted == list(range(LEGACY_OFFSET, EVENTS))
