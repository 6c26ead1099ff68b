"""Redis access for the stream: one client, failures as types, fail-closed retries.

Redis holds consent intervals and de-duplication marks, keyed only by pseudonyms and hashed
event ids. When Redis is unreachable the stream does not guess: :func:`until_redis_answers`
retries with capped back-off while the agent (and with it the Kafka consumer) waits. Events
are neither admitted nor dropped meanwhile; their offsets are not committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def connect_redis(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=3, decode_responses=False
    )


async def until_redis_answers(
    op: Callable[[], Awaitable[T]], *, what: str, on_wait: Callable[[], None] | None = None
) -> T:
    """Run ``op`` until Redis answers, backing off 0.1 s -> 5 s. Never gives up: fail closed."""
    delay = 0.1
    while True:
        try:
            return await op()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("redis unavailable during %s (%s); waiting %.1fs", what, exc, delay)
            if on_wait:
                on_wait()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
