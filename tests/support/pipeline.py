"""Helpers for end-to-end tests: wait until the pipeline drained, read ClickHouse back."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streams.kafka.internals import cluster_topics, topic_partitions
from streams.lender.ground_truth import TruthBuilder
from streams.lender.publisher import LenderPublisher
from streams.lender.sim_types import ItemKind, SimItem
from streams.settings import Settings
from tests.support.services import REPO, settings_env


async def group_lag(settings: Settings) -> dict[str, int]:
    """Unconsumed messages per stage: 'intake' (lender loans), 'stream' (the Faust agent on
    registry.validated), 'consent' and 'sink' groups."""
    topics = settings.topics
    opts = settings.kafka_client_options()
    admin = AIOKafkaAdminClient(**opts)
    consumer = AIOKafkaConsumer(**opts)
    await admin.start()
    await consumer.start()
    try:
        names = await cluster_topics(consumer)
        loans_topics = [n for n in names if re.match(topics.loans_pattern, n)]
        stream_topics = [n for n in names if n == topics.validated]
        consent_topics = [n for n in names if re.match(topics.consent_pattern, n)]
        sink_topics = [n for n in names if re.match(topics.rejected_pattern, n)
                       or n in (topics.activity, topics.consent_audit)]
        out = {}
        for stage, group, wanted in (("intake", f"{settings.registry_app_id}-intake",
                                      loans_topics),
                                     ("stream", settings.registry_app_id, stream_topics),
                                     ("consent", f"{settings.registry_app_id}-consent",
                                      consent_topics),
                                     ("sink", f"{settings.registry_app_id}-sink", sink_topics)):
            tps = [TopicPartition(t, p) for t in wanted
                   for p in sorted(consumer.partitions_for_topic(t) or ())]
            if not tps:  # nothing to judge yet: not drained
                out[stage] = -1
                continue
            ends = await consumer.end_offsets(tps) if tps else {}
            committed = await admin.list_consumer_group_offsets(group)
            out[stage] = sum(
                max(0, end - (committed[tp].offset if tp in committed else 0))
                for tp, end in ends.items()
            )
        return out
    finally:
        await consumer.stop()
        await admin.close()


async def wait_drained(settings: Settings, *, timeout: float, stable_for: float = 3.0,
                       worker: Any = None) -> float:
    """Wait until every stage of :func:`group_lag` (intake, stream, consent, sink) has nothing
    left to consume, for ``stable_for`` seconds."""
    started = time.monotonic()
    deadline = started + timeout
    clear_since: float | None = None
    last: dict[str, int] = {}
    while True:
        if worker is not None and worker.proc.poll() is not None:
            raise AssertionError(f"worker exited early:\n{worker.log_tail()}")
        try:
            last = await group_lag(settings)
        except KafkaError as exc:  # e.g. the group coordinator is not elected yet
            last = {"error": 1}
            note = repr(exc)
        else:
            note = ""
        now = time.monotonic()
        if last and all(v == 0 for v in last.values()):
            clear_since = clear_since or now
            if now - clear_since >= stable_for:
                return clear_since - started
        else:
            clear_since = None
        if now > deadline:
            tail = worker.log_tail() if worker is not None else ""
            raise AssertionError(
                f"pipeline not drained after {timeout:.0f}s: {last} {note}\n{tail}")
        await asyncio.sleep(0.5)


def dump_clickhouse(settings: Settings, *find: str) -> dict[str, Any]:
    """The registry's tables as JSON; with ``find``: which tables contain each string."""
    args = ["--find", *find] if find else []
    script = REPO / "tests" / "support" / "chdb_dump.py"
    done = subprocess.run([sys.executable, str(script), *args],
                          env=settings_env(settings), cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


async def read_to_end(settings: Settings, topic_filter: Callable[[str], bool],
                      on_record: Callable[[Any], None], timeout: float = 120) -> None:
    """Read every partition of the topics ``topic_filter`` accepts, from the beginning to the
    end offsets of the moment, calling ``on_record`` on each record in partition order."""
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        names = [n for n in await consumer.topics() if topic_filter(n)]
        tps = await topic_partitions(consumer, names)
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                for record in records:
                    on_record(record)
                if records and records[-1].offset >= ends[tp] - 1:
                    remaining.discard(tp)
        assert not remaining, f"could not read topics to the end: {remaining}"
    finally:
        await consumer.stop()


async def topics_containing(settings: Settings, needles: list[bytes]) -> dict[bytes, list[str]]:
    """Every topic of the deployment (internal ones included) whose records contain a needle."""
    found: dict[bytes, list[str]] = {n: [] for n in needles}
    prefixes = (settings.kafka_namespace, f"{settings.registry_app_id}-")

    def look(record: Any) -> None:
        blob = (record.key or b"") + b"\x00" + (record.value or b"")
        for needle in needles:
            if needle in blob and record.topic not in found[needle]:
                found[needle].append(record.topic)

    await read_to_end(settings, lambda name: name.startswith(prefixes), look)
    return found


async def publish_consents_first(publishers: dict[str, LenderPublisher], chunk: list[SimItem],
                                 truth: TruthBuilder) -> None:
    """The simulator's causality rule for tests that publish by hand: the consent records of
    ``chunk`` are acknowledged before any of its loan events is sent."""
    for item in chunk:
        if item.kind is ItemKind.CONSENT:
            await publishers[item.lender_id].publish_consent(item.consent)
            truth.observe_consent(item.consent)
    for publisher in publishers.values():
        await publisher.flush()


#: items per publish_items chunk (consent of a chunk is acknowledged before its events)
PUBLISH_CHUNK = 500


async def publish_items(settings: Settings, items: list[SimItem], truth: TruthBuilder,
                        chunk: int = PUBLISH_CHUNK) -> None:
    """Publish ``items`` with fresh publishers (acks=all, idempotent), each chunk's consent
    acknowledged before its events; observed by ``truth`` exactly as sent."""
    lenders = sorted({item.lender_id for item in items})
    publishers = {lid: LenderPublisher(settings, lid) for lid in lenders}
    for publisher in publishers.values():
        await publisher.start()
    try:
        for start in range(0, len(items), chunk):
            part = items[start:start + chunk]
            await publish_consents_first(publishers, part, truth)
            for item in part:
                publisher = publishers[item.lender_id]
                if item.kind is ItemKind.LOAN:
                    await publisher.publish_event(item.loan)
                    truth.observe_loan(item.lender_id, item.loan)
                elif item.kind is ItemKind.RAW:
                    await publisher.send_raw(publisher.loans_topic, item.key, item.value)
                    truth.observe_raw(item.lender_id, item.reason)
    finally:
        for publisher in publishers.values():
            await publisher.stop()
