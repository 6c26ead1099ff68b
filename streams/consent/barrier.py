"""The consent barrier: decide a loan event only after earlier consent records are applied.

Loan events and consent records travel on different topics, so without a barrier a grant sent
just before a draw could still be in flight when the draw is decided, and the draw would be
wrongly refused (or, for a revocation, wrongly admitted). The barrier makes the outcome
independent of scheduling:

  Every consent record appended to ``lenders.<L>.consent`` before a loan event was appended to
  ``lenders.<L>.loans`` is applied before that loan event is decided.

How: lender input topics use broker time (``message.timestamp.type=LogAppendTime``). At wall
time ``t`` the barrier reads the consent partitions' end offsets and waits until the consent
agent's applied marks (in Redis) reach them; after that, every loan event appended before
``t - skew`` is safe to decide. One ListOffsets request and one MGET per batch at most; while
the consent agent is behind, admission waits (back-pressure), it never guesses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.topics import TopicNames
from streams.consent.store import ConsentStore
from streams.kafka.internals import refresh_metadata
from streams.runtime.redis_client import until_redis_answers

#: Tolerated difference between the broker's clock and ours.
CLOCK_SKEW_MS = 500


class ConsentBarrier:
    def __init__(self, store: ConsentStore, topics: TopicNames) -> None:
        self._consumer: AIOKafkaConsumer | None = None
        self._store = store
        self._topics = topics
        self._verified_at: dict[str, int] = {}
        #: called while waiting (the worker's liveness check counts it as progress)
        self.on_wait: Callable[[], None] | None = None

    def bind(self, consumer: AIOKafkaConsumer) -> None:
        """Attach the started, group-less consumer used for metadata and end offsets."""
        self._consumer = consumer

    async def _partitions(self, topic: str) -> list[TopicPartition]:
        assert self._consumer is not None, "ConsentBarrier.bind() was not called"
        parts = self._consumer.partitions_for_topic(topic)
        if parts is None:
            await refresh_metadata(self._consumer)
            parts = self._consumer.partitions_for_topic(topic)
        return [TopicPartition(topic, p) for p in sorted(parts or ())]

    async def wait(self, lenders: set[str], newest_append_ms: int) -> None:
        """Return once consent appended before ``newest_append_ms`` is applied for ``lenders``."""
        pending = [
            self._topics.consent(lender)
            for lender in lenders
            if self._verified_at.get(self._topics.consent(lender), -1)
            <= newest_append_ms + CLOCK_SKEW_MS
        ]
        if not pending:
            return
        started = int(time.time() * 1000)
        tps = [tp for topic in pending for tp in await self._partitions(topic)]
        if tps:
            assert self._consumer is not None
            ends = await self._consumer.end_offsets(tps)
            keys = [(tp.topic, tp.partition) for tp in tps]
            delay = 0.005
            while True:
                applied = await until_redis_answers(
                    lambda: self._store.applied_offsets(keys), what="consent barrier",
                    on_wait=self.on_wait,
                )
                if all(a >= ends[tp] - 1 for a, tp in zip(applied, tps, strict=True)):
                    break
                if self.on_wait is not None:
                    self.on_wait()
                await asyncio.sleep(delay)  # the consent agent is behind: wait for it
                delay = min(delay * 2, 0.2)
        for topic in pending:
            self._verified_at[topic] = started
