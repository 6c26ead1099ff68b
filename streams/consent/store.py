"""Consent as event-time intervals in Redis, per (borrower pseudonym, lender).

Each (borrower, lender) has a sorted set: score = ``effective_at`` (epoch ms), member =
``"<ms>:g"`` or ``"<ms>:r"``. Consent is in force at ``t`` when the latest member with score
``<= t`` is a grant; at equal times revoke wins (``r`` sorts after ``g`` and ZREVRANGE returns
it first). ZADD of the same member is idempotent, so a replayed consent record changes nothing.

Look-ups for a whole batch are one server-side script call (:data:`_IN_FORCE`), which costs a
fraction of one pipelined command per event in client-side Python (see :mod:`streams.dedup`).

The consent agent also records, per consent partition, the last offset it applied. The
admission agent uses these marks as a barrier: it decides a loan event only once every consent
record that reached the broker before that event has been applied, so a grant sent before a
draw is always honoured, however the two topics are scheduled.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

CONSENT_TTL_S = 10 * 365 * 86400  # consent evidence outlives the events it governs


#: Per key (ARGV[i] = instant in ms): 1 when the latest change at or before it is a grant.
_IN_FORCE = """
local out = {}
for i, key in ipairs(KEYS) do
  local latest = redis.call('ZREVRANGEBYSCORE', key, ARGV[i], '-inf', 'LIMIT', 0, 1)[1]
  if latest and string.sub(latest, -2) == ':g' then out[i] = 1 else out[i] = 0 end
end
return out
"""


class ConsentStore:
    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._in_force = redis.register_script(_IN_FORCE)

    def _key(self, pseudonym: str, lender_id: str) -> str:
        return f"{self._prefix}c:{pseudonym}:{lender_id}"

    def _progress_key(self, topic: str, partition: int) -> str:
        return f"{self._prefix}ca:{topic}:{partition}"

    async def record(
        self,
        changes: Sequence[tuple[str, str, bool, int]],
        progress: dict[tuple[str, int], int],
    ) -> None:
        """Apply ``(pseudonym, lender, granted, effective_ms)`` changes, then progress marks.

        The marks are written after the changes in one MULTI/EXEC transaction, so a mark never
        covers a change that is not stored.
        """
        pipe = self._redis.pipeline(transaction=True)
        for pseudonym, lender_id, granted, effective_ms in changes:
            key = self._key(pseudonym, lender_id)
            pipe.zadd(key, {f"{effective_ms}:{'g' if granted else 'r'}": effective_ms})
            pipe.expire(key, CONSENT_TTL_S)
        for (topic, partition), offset in progress.items():
            pipe.set(self._progress_key(topic, partition), offset)
        await pipe.execute()

    async def in_force(self, queries: Sequence[tuple[str, str, int]]) -> list[bool]:
        """For each ``(pseudonym, lender, at_ms)``: was consent in force at that instant?"""
        if not queries:
            return []
        keys = [self._key(pseudonym, lender_id) for pseudonym, lender_id, _ in queries]
        flags = await self._in_force(keys=keys, args=[at_ms for _, _, at_ms in queries])
        return [flag == 1 for flag in flags]

    async def applied_offsets(self, tps: Sequence[tuple[str, int]]) -> list[int]:
        """Last applied offset per consent partition (-1 when none)."""
        if not tps:
            return []
        values = await self._redis.mget([self._progress_key(t, p) for t, p in tps])
        return [int(v) if v is not None else -1 for v in values]

    async def erase(self, pseudonym: str) -> int:
        """Remove every consent interval of a borrower (data-subject erasure)."""
        keys = [k async for k in self._redis.scan_iter(match=f"{self._prefix}c:{pseudonym}:*")]
        return await self._redis.delete(*keys) if keys else 0
