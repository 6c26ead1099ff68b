"""De-duplication of (lender, event_id) that survives crashes.

The mark stored for an event is the position of the message that first carried it
(``partition:offset`` in the lender's topic). ``SET key position NX GET`` returns the earlier
mark if there is one, in the same round trip:

* no earlier mark          -> first time: proceed;
* earlier mark == position -> this is the *same message* delivered again (the worker died after
  marking but before its output was committed): proceed, it is not a duplicate;
* anything else            -> a re-sent event: reject as DUPLICATE.

A whole batch is ONE server-side script call (:data:`_CHECK_AND_MARK`): per event, a pipelined
command cost ~30 µs of client-side packing and parsing in Python (``make bench``, per-stage
costs), the script's single command with N keys costs a fraction of that. The script only
touches the keys it is given, so it is as atomic per key as the commands it replaces (on a
Redis Cluster the keys of one call would have to share a hash slot). Marks expire after
``DEDUP_TTL_DAYS``; a lender that re-sends an event after that is caught by the ClickHouse
ledger's replacing key instead.
Event ids are hashed into keys, so a lender that puts personal data in an id leaks nothing here.

Cancels (README, Corrections): for an item that names the event it cancels, the same script
call also says whether that event's mark exists at that point of the batch (after the items
before it were marked), i.e. whether the registry ever received the event. Asked in order,
so an event later in the same batch is not yet "received" for a cancel before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from hashlib import blake2b

import redis.asyncio as aioredis

#: Per item: ``SET key position NX GET EX ttl``; 0 = first, 1 = same position, 2 = duplicate;
#: plus 4 when the item is a cancel (its flag in ARGV[2] is "1", its target's key follows its
#: own in KEYS) and the target's mark exists.
_CHECK_AND_MARK = """
local ttl = ARGV[1]
local flags = ARGV[2]
local out = {}
local k = 1
for i = 1, #flags do
  local position = ARGV[i + 2]
  local earlier = redis.call('SET', KEYS[k], position, 'NX', 'GET', 'EX', ttl)
  local code = 2
  if not earlier then
    code = 0
  elseif earlier == position then
    code = 1
  end
  k = k + 1
  if string.byte(flags, i) == 49 then
    if redis.call('EXISTS', KEYS[k]) == 1 then
      code = code + 4
    end
    k = k + 1
  end
  out[i] = code
end
return out
"""


class Seen(Enum):
    FIRST = "first"
    REDELIVERY = "redelivery"
    DUPLICATE = "duplicate"


_SEEN = (Seen.FIRST, Seen.REDELIVERY, Seen.DUPLICATE)


class DedupStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, ttl_days: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_s = ttl_days * 86400
        self._script = redis.register_script(_CHECK_AND_MARK)

    def _key(self, lender_id: str, event_id: str) -> str:
        digest = blake2b(f"{lender_id}\x1f{event_id}".encode(), digest_size=12).hexdigest()
        return f"{self._prefix}d:{lender_id}:{digest}"

    async def check_and_mark(
        self, items: Sequence[tuple[str, str, int, int]]
    ) -> list[Seen]:
        """For each ``(lender, event_id, partition, offset)``: first, redelivery or duplicate."""
        seen, _ = await self.check_and_mark_cancels(items, [None] * len(items))
        return seen

    async def check_and_mark_cancels(
        self, items: Sequence[tuple[str, str, int, int]], targets: Sequence[str | None]
    ) -> tuple[list[Seen], list[bool]]:
        """:meth:`check_and_mark`, plus for each item whose ``targets`` entry names an event id
        (a cancel's ``cancels_event_id``): whether that event of the same lender had been
        received when the item's turn came (False for items without a target)."""
        if not items:
            return [], []
        keys: list[str] = []
        flags = []
        for (lender_id, event_id, _, _), target in zip(items, targets, strict=True):
            keys.append(self._key(lender_id, event_id))
            if target is None:
                flags.append("0")
            else:
                keys.append(self._key(lender_id, target))
                flags.append("1")
        args: list[int | str] = [
            self._ttl_s, "".join(flags),
            *(f"{partition}:{offset}" for _, _, partition, offset in items),
        ]
        codes = [int(code) for code in await self._script(keys=keys, args=args)]
        return [_SEEN[code & 3] for code in codes], [code >= 4 for code in codes]
