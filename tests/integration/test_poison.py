"""Poison input: every bad record lands in its lender's dead-letter topic, none in ClickHouse.

Two lenders publish a seeded history of good events (valid national ids, consent per the
simulator's plan). Mixed into their loans topics, sent by a plain producer so that each
record's coordinates are known from its ``RecordMetadata``: ~1 % garbage bytes, ~0.5 % records
with a valid header but an unknown schema fingerprint, ~0.5 % records larger than
``MAX_RECORD_BYTES``. Asserted: the dead-letter topics hold exactly these coordinates with the
right reason codes; the ledger and buckets equal the oracle of the good events exactly; the
worker keeps its PID and logs no traceback.
"""

from __future__ import annotations

import random
import re

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.codec import HEADER_SIZE, LOAN_EVENT, MAGIC, REJECTION, codec_for
from schemas.reasons import RejectReason
from streams.kafka.internals import topic_partitions
from streams.kafka.topics import ensure_lender_topics
from streams.lender.ground_truth import TruthBuilder
from streams.lender.publisher import LenderPublisher
from streams.lender.scenario import build_scenario
from streams.lender.sim_types import ItemKind, SimulationParams
from streams.settings import Settings
from tests.support.faults import assert_matches_oracle
from tests.support.pipeline import dump_clickhouse, publish_consents_first, wait_drained

pytestmark = pytest.mark.integration

GOOD_LOAN_RECORDS = 8000
CHUNK = 500
POISON = (("garbage", 0.01, RejectReason.MALFORMED),
          ("unknown_fingerprint", 0.005, RejectReason.UNKNOWN_SCHEMA),
          ("oversized", 0.005, RejectReason.OVERSIZED))


def _poison(kind: str, rng: random.Random, good: bytes, max_bytes: int) -> bytes:
    if kind == "garbage":  # never the codec's magic byte
        return bytes([rng.randrange(0xC3)]) + rng.randbytes(rng.randint(4, 200))
    if kind == "unknown_fingerprint":
        return MAGIC + rng.randbytes(8) + good[HEADER_SIZE:]
    return good + rng.randbytes(max_bytes + 1 - len(good) + rng.randint(0, 4000))


async def _read_rejections(settings: Settings, topics: list[str]) -> list[dict]:
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False)
    await consumer.start()
    codec = codec_for(REJECTION)
    out = []
    try:
        tps = await topic_partitions(consumer, topics)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for tp, records in batch.items():
                out += [codec.decode(r.value) | {"_topic": tp.topic} for r in records]
                if records and records[-1].offset >= ends[tp] - 1:
                    remaining.discard(tp)
        return out
    finally:
        await consumer.stop()


async def test_poison_records_go_to_dead_letters_and_nowhere_else(
        settings: Settings, worker_factory) -> None:
    params = SimulationParams(seed=1313, lenders=2, borrowers=3000, days=15, consent_rate=0.6,
                              duplicate_rate=0.0, late_rate=0.02,
                              malformed_rate=0.0).resolved()
    scenario = build_scenario(params)
    lenders = [lender.lender_id for lender in scenario.lenders]
    for lid in lenders:
        await ensure_lender_topics(settings, lid)
    truth = TruthBuilder(params.to_json(), params.now_ms or 0, lenders,
                         {b.borrower_id: b.profile.value for b in scenario.borrowers})
    items = []
    for item in scenario.items:  # a prefix of the history keeps consent before its events
        items.append(item)
        if sum(i.kind is ItemKind.LOAN for i in items) >= GOOD_LOAN_RECORDS:
            break
    assert all(item.kind is not ItemKind.RAW for item in items)

    rng = random.Random(params.seed)
    codec = codec_for(LOAN_EVENT)
    poison: dict[tuple[str, int, int], tuple[str, RejectReason]] = {}
    raw = AIOKafkaProducer(**settings.kafka_client_options(), acks="all",
                           enable_idempotence=True, max_request_size=1024 * 1024)
    publishers = {lid: LenderPublisher(settings, lid) for lid in lenders}
    await raw.start()
    for publisher in publishers.values():
        await publisher.start()
    try:
        for start in range(0, len(items), CHUNK):
            chunk = items[start:start + CHUNK]
            await publish_consents_first(publishers, chunk, truth)
            for item in chunk:
                if item.kind is not ItemKind.LOAN:
                    continue
                publisher = publishers[item.lender_id]
                await publisher.publish_event(item.loan)
                truth.observe_loan(item.lender_id, item.loan)
                for kind, rate, reason in POISON:
                    if rng.random() < rate:
                        value = _poison(kind, rng, codec.encode(item.loan.to_avro()),
                                        settings.max_record_bytes)
                        meta = await raw.send_and_wait(publisher.loans_topic, value,
                                                       key=rng.randbytes(8))
                        poison[(meta.topic, meta.partition, meta.offset)] = (item.lender_id,
                                                                             reason)
                        truth.observe_raw(item.lender_id, reason)
        for publisher in publishers.values():
            await publisher.flush()
    finally:
        for publisher in publishers.values():
            await publisher.stop()
        await raw.stop()
    expected = truth.build()
    kinds = {reason: sum(r is reason for _, r in poison.values()) for _, _, reason in POISON}
    assert all(kinds.values()), kinds

    worker = worker_factory()
    pid = worker.proc.pid
    await wait_drained(settings, timeout=300, worker=worker)
    assert worker.proc.poll() is None and worker.proc.pid == pid
    assert worker.stop() == 0, worker.log_tail()
    assert "Traceback" not in worker.log_path.read_text(errors="replace")

    dead = await _read_rejections(settings, [settings.topics.rejected(lid) for lid in lenders])
    poison_reasons = {str(reason) for _, _, reason in POISON}
    landed = {(r["source_topic"], r["source_partition"], r["source_offset"]):
              (r["_topic"], r["reason"]) for r in dead if r["reason"] in poison_reasons}
    wanted = {coords: (settings.topics.rejected(lid), str(reason))
              for coords, (lid, reason) in poison.items()}
    stored = dump_clickhouse(settings)
    good = sum(item.kind is ItemKind.LOAN for item in items)
    print(f"[poison] good loan records {good} for {len(lenders)} lenders, poison "
          f"{len(poison)} ({ {str(k): v for k, v in kinds.items()} }); dead letters "
          f"{len(dead)} ({len(landed)} poison); admitted {len(expected.admitted)}, ledger "
          f"{stored['ledger_rows']}")
    assert landed == wanted
    assert all(re.fullmatch(r".*\.loans", topic) for topic, _, _ in landed)
    assert_matches_oracle(stored, expected.admitted, settings)
    rejections = {(lender, reason): n for lender, reason, n in stored["rejections"]}
    assert rejections == {(lender, reason): n for lender, reasons in expected.rejections.items()
                          for reason, n in reasons.items()}
