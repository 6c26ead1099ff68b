"""De-duplication of (lender, event_id) that survives crashes.

The mark stored for an event is the position of the message that first carried it
(``partition:offset`` in the lender's topic). ``SET key position NX GET`` returns the earlier
mark if there is one, in the same round trip:

* no earlier mark          -> first time: proceed;
* earlier mark == position -> this is the *same message* delivered again (the worker died after
  marking but before its output was committed): proceed, it is not a duplicate;
* anything else            -> a re-sent event: reject as DUPLICATE.

A whole batch is one pipelined round trip. Marks expire after ``DEDUP_TTL_DAYS``; a lender that
re-sends an event after that is caught by the ClickHouse ledger's replacing key instead.
Event ids are hashed into keys, so a lender that puts personal data in an id leaks nothing here.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from hashlib import blake2b

import redis.asyncio as aioredis


class Seen(Enum):
    FIRST = "first"
    REDELIVERY = "redelivery"
    DUPLICATE = "duplicate"


class DedupStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, ttl_days: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_s = ttl_days * 86400

    def _key(self, lender_id: str, event_id: str) -> str:
        digest = blake2b(f"{lender_id}\x1f{event_id}".encode(), digest_size=12).hexdigest()
        return f"{self._prefix}d:{lender_id}:{digest}"

    async def check_and_mark(
        self, items: Sequence[tuple[str, str, int, int]]
    ) -> list[Seen]:
        """For each ``(lender, event_id, partition, offset)``: first, redelivery or duplicate."""
        if not items:
            return []
        pipe = self._redis.pipeline(transaction=False)
        positions = []
        for lender_id, event_id, partition, offset in items:
            position = f"{partition}:{offset}".encode()
            positions.append(position)
            pipe.set(self._key(lender_id, event_id), position, nx=True, get=True, ex=self._ttl_s)
        replies = await pipe.execute()
        out = []
        for earlier, position in zip(replies, positions, strict=True):
            if earlier is None:
                out.append(Seen.FIRST)
            elif earlier == position:
                out.append(Seen.REDELIVERY)
            else:
                out.append(Seen.DUPLICATE)
        return out

    async def forget(self, lender_id: str, event_id: str) -> None:
        """Test-only and erasure helper: drop one mark."""
        await self._redis.delete(self._key(lender_id, event_id))
