"""The bulk intake loop: lender loan topics -> ``registry.validated`` + dead letters.

One aiokafka consumer per worker in the group ``<app id>-intake`` reads every
``lenders.<L>.loans`` topic by pattern (``getmany``), so a new lender is picked up by a
metadata refresh (``metadata_max_age_ms``), with no restart, and several workers share the
lender partitions through the group. Per bulk read, the order is the guarantee:

1. validate and pseudonymise every message (:class:`streams.intake.validate.Validator`), and
   check consent after the consent barrier (:class:`streams.intake.consent_gate.ConsentGate`):
   an event without consent in force goes on REDACTED (lender, event id and source only), so
   nothing of a borrower without consent is ever written to an internal topic;
2. send the valid events as batch records to ``registry.validated`` (one record per registry
   partition per read, the partition of the borrower pseudonym) and every rejection to its
   lender's dead-letter topic, with an idempotent producer and ``acks=all``;
3. wait until the broker acknowledged EVERY record sent for the read;
4. only then commit the lender offsets.

A failed send stops the read: nothing is committed, the consumer seeks back to the read's
first offsets and the read is done again after a back-off (never skipped). A crash anywhere
before step 4 replays the read; the copies carry the same source positions, which the stream
agent's de-duplication recognises as redeliveries (:mod:`streams.dedup`), so they never count
twice. Cost per read: one produce round trip (acks=all) and one offset commit.

Existing deployments keep their position: before it subscribes, a lender partition the
intake group has never committed is given the committed offset of the Faust group that read
lender topics before bulk intake existed (the group named ``REGISTRY_APP_ID``), once;
afterwards the intake group's own commits rule.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from schemas.codec import REJECTION, codec_for
from schemas.reasons import RejectReason
from schemas.records import Rejection
from streams.intake.consent_gate import ConsentGate
from streams.intake.validate import Validator
from streams.kafka.read_commit import SendOrReadAgain, commit_read, incoming
from streams.runtime.metrics import METRICS
from streams.settings import Settings

log = logging.getLogger(__name__)

VALIDATED_BATCH = "registry.internal.ValidatedBatch"
#: events per ``registry.validated`` record (bounds the record size: ~200 B per event)
MAX_EVENTS_PER_RECORD = 5000


def count_rejections(rejections: list[Rejection]) -> None:
    """Count rejections in ``/metrics`` (and lender mismatches as security events)."""
    for rej in rejections:
        METRICS.events_rejected.inc(rej.lender_id, rej.reason.value)
        if rej.reason is RejectReason.LENDER_MISMATCH:
            METRICS.security_lender_mismatch.inc(rej.lender_id)


class BulkIntake:
    """The intake loop; :meth:`run` until :meth:`stop`."""

    def __init__(self, settings: Settings, validator: Validator, gate: ConsentGate,
                 on_progress: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.validator = validator
        self.gate = gate
        self.group_id = f"{settings.registry_app_id}-intake"
        self.legacy_group_id = settings.registry_app_id
        self._codec = codec_for(VALIDATED_BATCH)
        self._rejection = codec_for(REJECTION)
        self._stopping = asyncio.Event()
        self._on_progress = on_progress

    async def carry_over(self) -> None:
        """Once, before subscribing: give the intake group the legacy Faust group's committed
        offset on every lender partition the intake group never committed.

        Committed as a simple (member-less) commit, which the broker accepts while the intake
        group has no active member, i.e. at a deployment's first start with bulk intake; if it
        is refused (another worker already runs the group), that worker did it."""
        loans = re.compile(self.settings.topics.loans_pattern)
        options = self.settings.kafka_client_options()
        admin = AIOKafkaAdminClient(**options)
        try:
            await admin.start()
            legacy = await admin.list_consumer_group_offsets(self.legacy_group_id)
            mine = await admin.list_consumer_group_offsets(self.group_id)
        except KafkaError as exc:
            log.warning("intake: legacy offsets unavailable (%r); not carried over", exc)
            return
        finally:
            await admin.close()
        todo = {tp: meta.offset for tp, meta in legacy.items()
                if loans.match(tp.topic) and meta.offset >= 0
                and (tp not in mine or mine[tp].offset < 0)}
        if not todo:
            return
        committer = AIOKafkaConsumer(**options, group_id=self.group_id,
                                     enable_auto_commit=False)
        try:
            await committer.start()
            committer.assign(list(todo))
            await committer.commit(todo)
        except KafkaError as exc:
            log.warning("intake: legacy offsets not carried over (%r)", exc)
            return
        finally:
            await committer.stop()
        for tp, offset in sorted(todo.items()):
            log.info("intake: %s[%d] starts at the legacy group's offset %d", tp.topic,
                     tp.partition, offset)

    async def _send_all(self, producer: AIOKafkaProducer, result: Any) -> None:
        topic = self.settings.topics.validated
        futures = []
        for partition, events in result.validated.items():
            for i in range(0, len(events), MAX_EVENTS_PER_RECORD):
                value = self._codec.encode(
                    {"events": events[i:i + MAX_EVENTS_PER_RECORD], "erase": None})
                futures.append(await producer.send(topic, value, partition=partition))
        for rej in result.rejections:
            futures.append(await producer.send(
                self.settings.topics.rejected(rej.lender_id),
                self._rejection.encode(rej.to_avro()), partition=rej.source_partition))
        await asyncio.gather(*futures)

    async def run(self) -> None:
        settings = self.settings
        options = settings.kafka_client_options()
        consumer = AIOKafkaConsumer(
            **options, group_id=self.group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", metadata_max_age_ms=3000,
            max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024)
        send_or_read_again = SendOrReadAgain("intake", lambda: AIOKafkaProducer(
            **options, acks="all", enable_idempotence=True, linger_ms=2,
            max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024))
        await self.carry_over()
        await consumer.start()
        await send_or_read_again.start()
        consumer.subscribe(pattern=settings.topics.loans_pattern)
        try:
            while not self._stopping.is_set():
                records = await consumer.getmany(timeout_ms=200,
                                                 max_records=settings.admission_batch)
                if not records:
                    continue
                result = self.validator.validate(incoming(records))
                await self.gate.redact_unconsented(result)
                if not await send_or_read_again(
                        consumer, records, functools.partial(self._send_all, result=result)):
                    continue
                await commit_read(consumer, records, "intake")
                for lender, n in result.events_in.items():
                    METRICS.events_in.inc(lender, amount=n)
                count_rejections(result.rejections)
                if self._on_progress is not None:
                    self._on_progress()
        finally:
            await send_or_read_again.stop()
            await consumer.stop()

    def stop(self) -> None:
        self._stopping.set()

