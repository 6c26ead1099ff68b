"""Floors and a peer on the same broker and the same lender records.

``python -m bench.floors {faust,aiokafka,quix,faust-light} --bootstrap B --topics T1,T2 --n N``

* faust: a bare Faust agent on the lender topics that only takes batches of events (the
  registry's admission agent consumes the same way: ``take_events(2000, within=0.02)``).
* aiokafka: a plain ``getmany`` loop that decodes every record with ``schemas.codec``.
* quix (the light Quix peer): Quix Streams, per message: decode with our codec, drop what
  does not decode, then a tumbling one-day event-time window (``occurred_at_ms``, 72 h
  grace) count per message key (the lender's raw borrower id) within each lender topic
  (RocksDB state, changelog topics). No validation, no pseudonym, no cross-lender state, no
  output, no sink. Runs from its own venv (see :data:`bench.QUIX_PYTHON`).
* faust-light (the light Faust peer): exactly the light Quix job in Faust, per message
  (``stream.events()``): decode with our codec, drop what does not decode, then a tumbling
  one-day event-time window (``occurred_at_ms``, 72 h expiry) count per (lender topic,
  message key) in a Faust windowed table (in-memory store, changelog topic). Its ratio to
  the light Quix peer is the framework ratio, like with like.

The registry's job done in Quix Streams (the full peer) is :mod:`bench.quix_peer`.

Each prints ``{"events", "seconds", "events_per_s"}``; the clock runs from the first record
consumed to the N-th processed, so start-up and group joins are excluded, and so is the
final offset commit (the light peers and the floors stop at the N-th record, all alike).
Imports of the frameworks are local: this module must load in the Quix venv, which has
neither Faust nor aiokafka.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from typing import Any

from bench import emit
from schemas.codec import LOAN_EVENT, codec_for

FAUST_BATCH = 2000


class _Clock:
    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.first: float | None = None
        self.emitted = False

    def tick(self, k: int = 1) -> bool:
        """Count ``k`` records; True once ``n`` are reached (and the result was emitted)."""
        if self.first is None:
            self.first = time.perf_counter()
        self.count += k
        if self.count < self.n or self.emitted:
            return self.emitted
        self.emitted = True
        seconds = time.perf_counter() - self.first
        emit({"events": self.count, "seconds": seconds, "events_per_s": self.count / seconds})
        return True


def faust_floor(bootstrap: str, topics: list[str], n: int) -> None:
    import faust

    app = faust.App(
        f"bench-floor-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}",
        store="memory://", web_enabled=False, autodiscover=False,
        consumer_auto_offset_reset="earliest", broker_max_poll_records=5000,
        stream_buffer_maxsize=20000, broker_commit_interval=0.5, stream_wait_empty=False,
    )
    topic = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")
    clock = _Clock(n)

    @app.agent(topic)
    async def count(stream: Any) -> None:
        async for events in stream.take_events(FAUST_BATCH, within=0.02):
            if clock.tick(len(events)):
                os._exit(0)

    faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False
                 ).execute_from_commandline()


async def _partition_count(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        return len(await producer.partitions_for(topic))
    finally:
        await producer.stop()


def faust_light(bootstrap: str, topics: list[str], n: int) -> None:
    """The light Quix job (:func:`quix_peer`) in Faust: see the module docstring."""
    import asyncio
    from datetime import timedelta

    import faust

    from streams.kafka.faust_internals import set_producer_buffer_limit

    partitions = asyncio.run(_partition_count(bootstrap, topics[0]))
    app = faust.App(
        f"bench-faust-light-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}",
        store="memory://", web_enabled=False, autodiscover=False,
        consumer_auto_offset_reset="earliest", broker_max_poll_records=5000,
        stream_buffer_maxsize=20000, broker_commit_interval=0.5, stream_wait_empty=False,
        topic_partitions=partitions, topic_replication_factor=1,
    )
    set_producer_buffer_limit(app.producer, 50_000)
    topic = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")
    # a windowed key is (key, window): JSON-serialised, so the key is text
    counts = app.Table("daily-count", default=int, partitions=partitions, key_type=str,
                       value_type=int,
                       schema=faust.Schema(key_type=str, value_type=int, key_serializer="json",
                                           value_serializer="json"),
                       ).tumbling(timedelta(days=1), expires=timedelta(hours=72))
    codec = codec_for(LOAN_EVENT)
    clock = _Clock(n)
    at: list[float] = [0.0]  # the current event's time (s), for the window look-up
    by_event_time = counts.relative_to(lambda _event: at[0])

    @app.agent(topic)
    async def count(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                value = codec.decode(msg.value)
            except Exception:
                value = None
            if value is not None and value["borrower_id"] is not None:
                at[0] = value["occurred_at_ms"] / 1000
                key = f"{msg.topic}\x1f{(msg.key or b'').decode('utf-8', 'replace')}"
                by_event_time[key] += 1
            if clock.tick():
                os._exit(0)

    faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False
                 ).execute_from_commandline()


async def aiokafka_floor(bootstrap: str, topics: list[str], n: int) -> None:
    from aiokafka import AIOKafkaConsumer

    from streams.kafka.internals import topic_partitions

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topics)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        codec = codec_for(LOAN_EVENT)
        clock = _Clock(n)
        done = False
        while not done:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batch.values():
                for rec in records:
                    try:  # noqa: SIM105 (suppress() costs more per record)
                        codec.decode(rec.value)
                    except Exception:  # malformed lender bytes count as consumed too
                        pass
                    done = clock.tick() or done
    finally:
        await consumer.stop()


def quix_peer(bootstrap: str, topics: list[str], n: int) -> None:
    from datetime import timedelta

    from quixstreams import Application
    from quixstreams.models.serializers import Deserializer

    codec = codec_for(LOAN_EVENT)

    class LoanDeserializer(Deserializer):
        def __call__(self, value: bytes, ctx: Any) -> Any:
            try:
                return codec.decode(value)
            except Exception:
                return None

    def event_time(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
        return value["occurred_at_ms"] if value else timestamp

    app = Application(broker_address=bootstrap,
                      consumer_group=f"bench-quix-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", loglevel="ERROR",
                      state_dir=tempfile.mkdtemp(prefix="bench-quix-"))
    clock = _Clock(n)

    def tick(_value: Any) -> None:
        if clock.tick():
            app.stop()

    for name in topics:
        topic = app.topic(name, key_deserializer="bytes", value_deserializer=LoanDeserializer(),
                          timestamp_extractor=event_time)
        sdf = app.dataframe(topic)
        sdf = sdf.update(tick)
        sdf = sdf.filter(lambda v: v is not None and v["borrower_id"] is not None)
        sdf = (sdf.tumbling_window(timedelta(days=1), grace_ms=timedelta(hours=72))
               .count().current())
    app.run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=["faust", "aiokafka", "quix", "faust-light"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topics", required=True)
    parser.add_argument("--n", type=int, required=True)
    args = parser.parse_args()
    topics = args.topics.split(",")
    if args.which == "faust":
        sys.argv = [sys.argv[0], "worker"]
        faust_floor(args.bootstrap, topics, args.n)
    elif args.which == "faust-light":
        sys.argv = [sys.argv[0], "worker"]
        faust_light(args.bootstrap, topics, args.n)
    elif args.which == "aiokafka":
        import asyncio

        asyncio.run(aiokafka_floor(args.bootstrap, topics, args.n))
    else:
        quix_peer(args.bootstrap, topics, args.n)


if __name__ == "__main__":
    main()
