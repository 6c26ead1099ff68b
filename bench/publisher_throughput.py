"""Publisher throughput: N pre-built loan events from one process through LenderPublisher.

Usage: ``python bench/publisher_throughput.py [N] [--batch-kb K]`` with ``KAFKA_BOOTSTRAP``
set. Events are built before the clock starts. Two timings, each into a fresh namespace, each
ending only when every record is acknowledged (acks=all, idempotent):

* ``send_raw``: records encoded before the clock starts - the publisher and broker alone;
* ``publish_event``: encoding included (Avro single-object) - what the simulator and
  ``registry publish`` pay per event.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid

from schemas.codec import LOAN_EVENT, codec_for
from schemas.national_id import generate
from schemas.records import EventType, LoanEvent
from streams.lender.publisher import MAX_BATCH_BYTES, LenderPublisher
from streams.settings import Settings
from streams.topics_admin import ensure_lender_topics

LENDER = "bench-lender"


def build_events(n: int, seed: int = 1) -> list[LoanEvent]:
    rng = random.Random(seed)
    borrowers = [generate(rng) for _ in range(min(n, 50_000))]
    now = int(time.time() * 1000)
    return [
        LoanEvent(
            str(uuid.UUID(int=rng.getrandbits(128))),
            LENDER,
            rng.choice(borrowers),
            f"loan-{i % 997}",
            EventType.DRAW,
            rng.randint(100, 10_000_000),
            "CNY",
            now - rng.randrange(30 * 86_400_000),
            "bench",
        )
        for i in range(n)
    ]


async def timed(events: list[LoanEvent], *, pre_encode: bool, batch_bytes: int) -> float:
    settings = Settings(kafka_namespace=f"bench-{uuid.uuid4().hex[:8]}.")
    await ensure_lender_topics(settings, LENDER)
    codec = codec_for(LOAN_EVENT)
    encoded = [(ev.borrower_id.encode(), codec.encode(ev.to_avro())) for ev in events]
    options = {"max_batch_size": batch_bytes}
    async with LenderPublisher(settings, LENDER, producer_options=options) as publisher:
        await publisher.publish_event(events[0])  # connect and fetch metadata, untimed
        await publisher.flush()
        topic = publisher.loans_topic
        started = time.perf_counter()
        if pre_encode:
            for key, value in encoded[1:]:
                await publisher.send_raw(topic, key, value)
        else:
            for ev in events[1:]:
                await publisher.publish_event(ev)
        await publisher.flush()
        elapsed = time.perf_counter() - started
        assert publisher.acked == len(events)
    return (len(events) - 1) / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=200_000)
    parser.add_argument("--batch-kb", type=int, default=MAX_BATCH_BYTES // 1024)
    args = parser.parse_args()
    events = build_events(args.n)
    settings = Settings()
    print(
        f"{args.n:,} events, acks=all + idempotence, compression "
        f"{settings.publisher_compression}, linger {settings.publisher_linger_ms} ms, "
        f"batch {args.batch_kb} KB, in-flight bound {settings.publisher_max_in_flight:,}"
    )
    for pre_encode, label in ((True, "send_raw (pre-encoded)"), (False, "publish_event")):
        rate = await timed(events, pre_encode=pre_encode, batch_bytes=args.batch_kb * 1024)
        print(f"  {label:24s} {rate:>10,.0f} events/s")


if __name__ == "__main__":
    asyncio.run(main())
