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

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

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
