"""Publisher throughput: N pre-built loan events from one process through LenderPublisher.

Usage: ``python bench/publisher_throughput.py [N]`` with ``KAFKA_BOOTSTRAP`` set. Events are
built (and their borrower ids generated) before the clock starts; the timed part is encoding,
sending and waiting for every acknowledgement (acks=all, idempotent), exactly as the simulator
and ``registry publish`` do it. Each run writes to a fresh namespace.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid

from schemas.national_id import generate
from schemas.records import EventType, LoanEvent
from streams.lender.publisher import LenderPublisher
from streams.settings import Settings
from streams.topics_admin import ensure_lender_topics

LENDER = "bench-lender"


def build_events(n: int, seed: int = 1) -> list[LoanEvent]:
    rng = random.Random(seed)
    borrowers = [generate(rng) for _ in range(min(n, 50_000))]
    now = int(time.time() * 1000)
    return [
        LoanEvent(str(uuid.UUID(int=rng.getrandbits(128))), LENDER, rng.choice(borrowers),
                  f"loan-{i % 997}", EventType.DRAW, rng.randint(100, 10_000_000), "CNY",
                  now - rng.randrange(30 * 86_400_000), "bench")  # fmt: skip
        for i in range(n)
    ]


async def main(n: int) -> None:
    settings = Settings(kafka_namespace=f"bench-{uuid.uuid4().hex[:8]}.")
    await ensure_lender_topics(settings, LENDER)
    events = build_events(n)
    async with LenderPublisher(settings, LENDER) as publisher:
        await publisher.publish_event(events[0])  # connect and fetch metadata untimed
        await publisher.flush()
        started = time.perf_counter()
        for ev in events[1:]:
            await publisher.publish_event(ev)
        await publisher.flush()
        elapsed = time.perf_counter() - started
    print(
        f"published {n - 1:,} events in {elapsed:.2f}s: {(n - 1) / elapsed:,.0f} events/s "
        f"(acked {publisher.acked:,}, compression {settings.publisher_compression}, "
        f"linger {settings.publisher_linger_ms} ms, in-flight bound "
        f"{settings.publisher_max_in_flight:,})"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000))
