"""The consent agent: lender consent topics -> Redis intervals, audit trail, rejections.

It runs on a consumer of its own (group ``<app id>-consent``), not inside the Faust app's
consumer, on purpose. The admission agent waits at the consent barrier until consent records
are applied; Faust delivers every subscribed topic through one consumer, and once the waiting
admission stream's buffer is full that delivery blocks — consent records would then never
arrive and the barrier would never open. A separate consumer keeps the gate independent of
the traffic it gates.

Per batch (the order is the guarantee): decide every record (:class:`ConsentIngest`), store the
intervals and the per-partition applied marks in one Redis transaction, send the audit and
rejection records and wait for the broker's acknowledgement, then commit the offsets. A crash
anywhere before the commit replays the batch: ZADD is idempotent and the audit and rejection
rows collapse on their source coordinates in ClickHouse.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.codec import REJECTION, codec_for
from streams.consent.ingest import ConsentIngest
from streams.kafka.read_commit import SendOrReadAgain, commit_read, incoming
from streams.runtime.metrics import METRICS
from streams.settings import Settings

log = logging.getLogger(__name__)

CONSENT_CHANGE = "registry.internal.ConsentChange"
MAX_BATCH = 1000


class ConsentConsumer:
    def __init__(self, settings: Settings, ingest: ConsentIngest) -> None:
        self.settings = settings
        self.ingest = ingest
        self.group_id = f"{settings.registry_app_id}-consent"
        self._audit = codec_for(CONSENT_CHANGE)
        self._rejection = codec_for(REJECTION)
        self._stopping = asyncio.Event()

    async def _send(self, producer: AIOKafkaProducer, result: Any) -> None:
        """Send the audit and rejection records of one read; returns once all are acked."""
        sends = []
        for partition, changes in result.audit.items():
            for change in changes:
                sends.append(await producer.send(
                    self.settings.topics.consent_audit, self._audit.encode(change),
                    key=change["borrower"].encode(), partition=partition))
        for rej in result.rejections:
            sends.append(await producer.send(
                self.settings.topics.rejected(rej.lender_id),
                self._rejection.encode(rej.to_avro()), partition=rej.source_partition))
        await asyncio.gather(*sends)

    async def run(self) -> None:
        options = self.settings.kafka_client_options()
        consumer = AIOKafkaConsumer(**options, group_id=self.group_id, enable_auto_commit=False,
                                    auto_offset_reset="earliest", metadata_max_age_ms=3000)
        send_or_read_again = SendOrReadAgain("consent", lambda: AIOKafkaProducer(
            **options, acks="all", enable_idempotence=True, linger_ms=5))
        await consumer.start()
        await send_or_read_again.start()
        consumer.subscribe(pattern=self.settings.topics.consent_pattern)
        try:
            while not self._stopping.is_set():
                records = await consumer.getmany(timeout_ms=200, max_records=MAX_BATCH)
                batch = incoming(records)
                if not batch:
                    continue
                result = await self.ingest.ingest(batch)
                if not await send_or_read_again(
                        consumer, records, functools.partial(self._send, result=result)):
                    continue
                for rej in result.rejections:
                    METRICS.events_rejected.inc(rej.lender_id, str(rej.reason))
                for (lender, action), n in result.recorded.items():
                    METRICS.consent_records.inc(lender, action, amount=n)
                await commit_read(consumer, records, "consent")
        finally:
            await send_or_read_again.stop()
            await consumer.stop()

    def stop(self) -> None:
        self._stopping.set()
