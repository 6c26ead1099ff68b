"""Publisher throughput: N pre-built loan events from one process through LenderPublisher.

Usage: ``python bench/publisher_throughput.py [N] [--runs R] [--batch-kb K] [--linger-ms L]
[--compression none|gzip|lz4|zstd]`` with ``KAFKA_BOOTSTRAP`` set (e.g. a broker from
``KAFKA_PORT=39092 KAFKA_DATA_DIR=/tmp/bench-kafka infra/kafka/kafka.sh start``). Events are
built before the clock starts. Two timings per run, each into a fresh namespace, each ending
only when every record is acknowledged (acks=all, idempotent):

* ``send_raw``: records encoded before the clock starts - the publisher and broker alone;
* ``publish_event``: encoding included (Avro single-object) - what the simulator and
  ``registry publish`` pay per event.

Each line shows events/s and the CPU this process spent per event (user + system, the producer's
batching, compression and networking included: all of it runs on the event loop). The broker
shares the machine, so the wall rate is noisy on a busy host; CPU per event is steadier. With
``--runs`` above 1 the best and median rate of each timing are printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid

from schemas.codec import LOAN_EVENT, codec_for
from schemas.national_id import generate
from schemas.records import EventType, LoanEvent
from streams.kafka.topics import ensure_lender_topics
from streams.lender.publisher import MAX_BATCH_BYTES, LenderPublisher
from streams.settings import Settings

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


async def timed(
    events: list[LoanEvent], *, pre_encode: bool, options: dict[str, object]
) -> tuple[float, float]:
    """(events per second, CPU seconds of this process per event) of one timing."""
    settings = Settings(kafka_namespace=f"bench-{uuid.uuid4().hex[:8]}.")
    await ensure_lender_topics(settings, LENDER)
    codec = codec_for(LOAN_EVENT)
    encoded = [(ev.borrower_id.encode(), codec.encode(ev.to_avro())) for ev in events]
    async with LenderPublisher(settings, LENDER, producer_options=options) as publisher:
        await publisher.publish_event(events[0])  # connect and fetch metadata, untimed
        await publisher.flush()
        topic = publisher.loans_topic
        started, cpu = time.perf_counter(), time.process_time()
        if pre_encode:
            for key, value in encoded[1:]:
                await publisher.send_raw(topic, key, value)
        else:
            for ev in events[1:]:
                await publisher.publish_event(ev)
        await publisher.flush()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert publisher.acked == len(events)
    return (len(events) - 1) / elapsed, cpu / (len(events) - 1)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=200_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--batch-kb", type=int, default=MAX_BATCH_BYTES // 1024)
    parser.add_argument("--linger-ms", type=int, default=None, help="default: settings")
    parser.add_argument("--compression", choices=["none", "gzip", "lz4", "zstd"], default=None)
    args = parser.parse_args()
    events = build_events(args.n)
    settings = Settings()
    options: dict[str, object] = {"max_batch_size": args.batch_kb * 1024}
    linger = settings.publisher_linger_ms if args.linger_ms is None else args.linger_ms
    options["linger_ms"] = linger
    compression = args.compression or settings.publisher_compression
    options["compression_type"] = None if compression == "none" else compression
    print(
        f"{args.n:,} events, acks=all + idempotence, compression {compression}, linger "
        f"{linger} ms, batch {args.batch_kb} KB, in-flight bound "
        f"{settings.publisher_max_in_flight:,}"
    )
    labels = {True: "send_raw (pre-encoded)", False: "publish_event"}
    rates: dict[bool, list[float]] = {True: [], False: []}
    for run in range(1, args.runs + 1):
        for pre_encode, label in labels.items():
            rate, cpu = await timed(events, pre_encode=pre_encode, options=options)
            rates[pre_encode].append(rate)
            tag = f"run {run}: " if args.runs > 1 else ""
            print(f"  {tag}{label:24s} {rate:>10,.0f} events/s  {cpu * 1e6:5.1f} µs CPU/event")
    if args.runs > 1:
        for pre_encode, label in labels.items():
            got = rates[pre_encode]
            print(
                f"  {label:24s} best {max(got):>10,.0f}  median "
                f"{statistics.median(got):>10,.0f} events/s over {len(got)} runs"
            )


if __name__ == "__main__":
    asyncio.run(main())
