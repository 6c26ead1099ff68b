"""The batched Redis look-ups of admission, against the real Redis: one script call per batch.

De-duplication: a first sight is FIRST, the same message again (same position) is REDELIVERY,
the same event from another position is DUPLICATE, and the mark carries the TTL. Consent: the
latest change at or before the instant decides, a revoke at the same instant as a grant wins,
no history means no consent. Both survive ``SCRIPT FLUSH`` (as after a Redis restart).
"""

from __future__ import annotations

import pytest

from streams.consent.store import ConsentStore
from streams.dedup import DedupStore, Seen
from streams.runtime.redis_client import connect_redis
from streams.settings import Settings

pytestmark = pytest.mark.integration


async def test_dedup_batch_first_redelivery_duplicate(settings: Settings) -> None:
    redis = connect_redis(settings)
    store = DedupStore(redis, settings.redis_prefix, ttl_days=2)
    try:
        first = await store.check_and_mark([("l1", "e1", 0, 10), ("l1", "e2", 0, 11),
                                            ("l2", "e1", 3, 10)])
        assert first == [Seen.FIRST, Seen.FIRST, Seen.FIRST]  # same id, other lender: new
        again = await store.check_and_mark([("l1", "e1", 0, 10), ("l1", "e2", 4, 99),
                                            ("l1", "e3", 0, 12), ("l1", "e3", 0, 13)])
        assert again == [Seen.REDELIVERY, Seen.DUPLICATE, Seen.FIRST, Seen.DUPLICATE]
        await redis.script_flush()
        assert await store.check_and_mark([("l2", "e1", 3, 10)]) == [Seen.REDELIVERY]
        keys = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}d:*")]
        assert len(keys) == 4
        ttl = await redis.ttl(keys[0])
        assert 2 * 86400 - 60 < ttl <= 2 * 86400
        assert await store.check_and_mark([]) == []
    finally:
        await redis.aclose()


async def test_dedup_tells_a_cancel_whether_its_event_was_received(settings: Settings) -> None:
    """In batch order: an event marked before the cancel (this call or an earlier one) is
    received; one later in the same batch, another lender's, or never sent is not."""
    redis = connect_redis(settings)
    store = DedupStore(redis, settings.redis_prefix + "cancels:", ttl_days=2)
    try:
        await store.check_and_mark([("l1", "old", 0, 1)])
        seen, received = await store.check_and_mark_cancels(
            [("l1", "e1", 0, 2), ("l1", "c1", 0, 3), ("l1", "c2", 0, 4), ("l1", "c3", 0, 5),
             ("l1", "e5", 0, 6), ("l1", "c4", 0, 7), ("l2", "c5", 1, 1)],
            [None, "e1", "old", "e5", None, "nope", "e1"])
        assert seen == [Seen.FIRST] * 7
        assert received == [False, True, True, False, False, False, False]
        seen, received = await store.check_and_mark_cancels(  # the same batch again
            [("l1", "c3", 0, 5), ("l1", "c1", 0, 99)], ["e5", "e1"])
        assert seen == [Seen.REDELIVERY, Seen.DUPLICATE] and received == [True, True]
    finally:
        await redis.aclose()


async def test_consent_in_force_batch(settings: Settings) -> None:
    redis = connect_redis(settings)
    store = ConsentStore(redis, settings.redis_prefix)
    try:
        await store.record([("p1", "l1", True, 1000), ("p1", "l1", False, 5000),
                            ("p1", "l1", True, 9000), ("p2", "l1", True, 7000),
                            ("p2", "l1", False, 7000)], {("c", 0): 4})
        queries = [("p1", "l1", 999), ("p1", "l1", 1000), ("p1", "l1", 4999),
                   ("p1", "l1", 5000), ("p1", "l1", 9001), ("p1", "l2", 9001),
                   ("p2", "l1", 7000), ("p3", "l1", 10**13)]
        expected = [False, True, True, False, True, False, False, False]
        assert await store.in_force(queries) == expected
        await redis.script_flush()
        assert await store.in_force(queries) == expected
        assert await store.applied_offsets([("c", 0), ("c", 1)]) == [4, -1]
    finally:
        await redis.aclose()
