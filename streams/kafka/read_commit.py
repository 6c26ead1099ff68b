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
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
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
    10 s, before it reads again; the first send that succeeds resets the wait."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.delay = 0.5

    async def __call__(self, consumer: AIOKafkaConsumer,
                       records: Mapping[TopicPartition, Sequence[Any]],
                       sending: Awaitable[None]) -> bool:
        """True once ``sending`` (the read's sends, acknowledged) succeeded; False after a
        refused send (read again)."""
        try:
            await sending
        except KafkaError as exc:
            log.warning("%s: send failed (%r); reading the batch again in %.1fs", self.what,
                        exc, self.delay)
            read_again(consumer, records)
            await asyncio.sleep(self.delay)
            self.delay = min(self.delay * 2, 10.0)
            return False
        self.delay = 0.5
        return True
