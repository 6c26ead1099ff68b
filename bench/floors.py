"""Floors and a peer on the same broker and the same lender records.

``python -m bench.floors {faust,aiokafka,quix} --bootstrap B --topics T1,T2 --n N``

* faust: a bare Faust agent on the lender topics that only takes batches of events (the
  registry's admission agent consumes the same way: ``take_events(2000, within=0.02)``).
* aiokafka: a plain ``getmany`` loop that decodes every record with ``schemas.codec``.
* quix: Quix Streams doing the registry's aggregation shape: decode with our codec, then a
  per-borrower (message key) tumbling one-day event-time window count (RocksDB state,
  changelog topics). Runs from its own venv (see :data:`bench.QUIX_PYTHON`).

Each prints ``{"events", "seconds", "events_per_s"}``; the clock runs from the first record
consumed to the N-th, so start-up and group joins are excluded. Imports of the frameworks are
local: this module must load in the Quix venv, which has neither Faust nor aiokafka.
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


async def aiokafka_floor(bootstrap: str, topics: list[str], n: int) -> None:
    from aiokafka import AIOKafkaConsumer

    from bench.e2e import topic_partitions

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
    parser.add_argument("which", choices=["faust", "aiokafka", "quix"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topics", required=True)
    parser.add_argument("--n", type=int, required=True)
    args = parser.parse_args()
    topics = args.topics.split(",")
    if args.which == "faust":
        sys.argv = [sys.argv[0], "worker"]
        faust_floor(args.bootstrap, topics, args.n)
    elif args.which == "aiokafka":
        import asyncio

        asyncio.run(aiokafka_floor(args.bootstrap, topics, args.n))
    else:
        quix_peer(args.bootstrap, topics, args.n)


if __name__ == "__main__":
    main()
