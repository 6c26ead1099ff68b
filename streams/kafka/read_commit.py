"""Commit or re-read one bulk read of an aiokafka group consumer, whatever the rebalances did.

Bulk intake and the consent agent both read with ``getmany``, send their outputs, and only then
commit. Between the read and the commit the group may rebalance: committing a partition this
member no longer owns raises ``IllegalStateError`` (not assigned) or ``CommitFailedError``
(generation changed). Neither is a failure of the work, since the outputs are acknowledged and
the partition's next owner replays the records, which every downstream step recognises (same
source positions). So the commit is attempted for the partitions still owned and a refused
commit is logged, never raised.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from schemas.records import Incoming

log = logging.getLogger(__name__)


async def commit_read(consumer: AIOKafkaConsumer,
                      records: Mapping[TopicPartition, Sequence[Any]], what: str) -> bool:
    """Commit one past the last record of each partition of ``records`` that is still
    assigned. Returns False if the broker refused (the records will be replayed)."""
    owned = consumer.assignment()
    offsets = {tp: msgs[-1].offset + 1 for tp, msgs in records.items() if tp in owned}
    if not offsets:
        return False
    try:
        await consumer.commit(offsets)
    except (CommitFailedError, IllegalStateError, KafkaError) as exc:
        log.warning("%s: offset commit refused after the outputs were sent (%r); the "
                    "partitions' next owner replays the records", what, exc)
        return False
    return True


def read_again(consumer: AIOKafkaConsumer,
               records: Mapping[TopicPartition, Sequence[Any]]) -> None:
    """Seek every still-assigned partition of ``records`` back to the read's first record."""
    owned = consumer.assignment()
    for tp, msgs in records.items():
        if tp in owned:
            consumer.seek(tp, msgs[0].offset)


def incoming(records: Mapping[TopicPartition, Sequence[Any]]) -> list[Incoming]:
    """The records of one ``getmany`` as :class:`Incoming`, partition by partition."""
    return [Incoming(r.topic, r.partition, r.offset, r.timestamp, r.value)
            for tp in sorted(records) for r in records[tp]]


class SendOrReadAgain:
    """Sends the outputs of one bulk read; if the broker refuses them, the read is done again.

    A failed send must never be committed over: the still-assigned partitions are sought back
    to the read's first record (:func:`read_again`) and the loop waits, 0.5 s doubling up to
    10 s, before it reads again; the first send that succeeds resets the wait.

    It owns the idempotent producer (``new_producer()`` builds one): after a failed send the
    producer is replaced. An idempotent producer whose batch failed (e.g. on a leader change)
    can be left out of sequence with the broker, and then every later send fails with
    ``OutOfOrderSequenceNumber`` (the Kafka producer documentation calls the error fatal: the
    producer must be closed). Seen in the rebalance test on 2026-11-29: intake retried one read
    for two minutes on a producer in that state. A new producer gets a new producer id.
    """

    def __init__(self, what: str, new_producer: Callable[[], AIOKafkaProducer]) -> None:
        self.what = what
        self.delay = 0.5
        self._new_producer = new_producer
        self.producer: AIOKafkaProducer | None = None
        self.renewals = 0

    async def start(self) -> None:
        self.producer = self._new_producer()
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def __call__(self, consumer: AIOKafkaConsumer,
                       records: Mapping[TopicPartition, Sequence[Any]],
                       send: Callable[[AIOKafkaProducer], Awaitable[None]]) -> bool:
        """True once ``send(producer)`` (the read's sends, acknowledged) succeeded; False after
        a refused send (read again, with a new producer)."""
        assert self.producer is not None, "start() first"
        try:
            await send(self.producer)
        except KafkaError as exc:
            log.warning("%s: send failed (%r); reading the batch again in %.1fs with a new "
                        "producer", self.what, exc, self.delay)
            read_again(consumer, records)
            await self._renew()
            await asyncio.sleep(self.delay)
            self.delay = min(self.delay * 2, 10.0)
            return False
        self.delay = 0.5
        return True

    async def _renew(self) -> None:
        old, self.producer = self.producer, None
        try:
            if old is not None:
                await old.stop()
        except KafkaError as exc:  # its pending batches fail; their records are read again
            log.warning("%s: stopping the old producer failed (%r)", self.what, exc)
        await self.start()
        self.renewals += 1
