"""Freshness: broker append time -> queryable in ClickHouse, at a fixed replay rate.

Against a running (drained) worker: before any clock starts, consent grants are published for
a population of borrowers at every lender (and drained), then ``rate * duration`` loan events
(draws of those borrowers, ``occurred_at`` = their planned send time) are ENCODED in full
(:func:`schemas.fast_encode.encode_loan_event`). The replay then only hands the bytes to one
:class:`streams.lender.publisher.LenderPublisher` per lender (``send_raw``, ~10 µs/record),
paced every 5 ms to the schedule, so the load generator takes a small, constant share of the
cores instead of starving the worker (the simulator it replaces built and encoded every
event while the worker was being measured).

"Queryable" (unchanged): a poller reads the sink group's committed offsets on
``registry.activity`` every 50 ms. The sink commits only after ClickHouse acknowledged the
insert, so an event is queryable by the poll that first sees the commit pass the activity
record carrying its ledger row. Afterwards the activity records (ledger items -> activity
offset) and the lender records (broker LogAppendTime = append time) are read back and joined
on (lender, event_id); latency = that poll's time - the append time.

Resolution: the poll interval (50 ms) bounds the error from above; the numbers are upper
bounds by at most that much. No query load is put on the worker while it is measured. The
result also gives the rate the replay really achieved and the median latency of the first
and last thirds of the window (growing latency = the worker was saturated at that rate).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import random
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench import percentiles
from bench.e2e import loans_topic_names
from schemas.codec import LOAN_EVENT, codec_for
from schemas.fast_encode import encode_loan_event
from schemas.records import ConsentAction, ConsentRecord, EventType, LoanEvent
from streams.kafka.internals import topic_partitions
from streams.kafka.topics import ensure_lender_topics
from streams.lender import population
from streams.lender.publisher import LenderPublisher
from streams.settings import Settings
from tests.support.pipeline import wait_drained

ACTIVITY_BATCH = "registry.internal.ActivityBatch"
LENDERS, BORROWERS = 5, 2000
#: the replay's pacing step: every step sends what is due by then
STEP_S = 0.005


async def grant_consent(settings: Settings, seed: int) -> tuple[list[str], list[str]]:
    """Consent grants for a population at every lender, published and applied (setup)."""
    rng = random.Random(seed)
    lender_ids = [lender.lender_id for lender in population.lenders(LENDERS)]
    borrowers = [b.borrower_id for b in population.borrowers(rng, BORROWERS, lender_ids)]
    since = int(time.time() * 1000) - 86_400_000
    for lid in lender_ids:
        await ensure_lender_topics(settings, lid)
        async with LenderPublisher(settings, lid) as pub:
            for bid in borrowers:
                await pub.publish_consent(ConsentRecord(lid, bid, ConsentAction.GRANT, since,
                                                        f"bench-{seed}"))
    await wait_drained(settings, timeout=180, stable_for=1.0)
    return lender_ids, borrowers


def encode_schedule(lender_ids: list[str], borrowers: list[str], rate: float,
                    duration_s: float, start_ms: int, run: str
                    ) -> list[tuple[float, str, bytes, bytes]]:
    """``(send at, s after start; lender; key; value)`` for every event, already encoded."""
    rng = random.Random(run)
    out = []
    for i in range(int(rate * duration_s)):
        at = i / rate
        lid, bid = lender_ids[i % len(lender_ids)], rng.choice(borrowers)
        ev = LoanEvent(f"fr-{run}-{i}", lid, bid, f"fr-{run}-loan-{i}", EventType.DRAW,
                       rng.randrange(10_000, 500_000), "CNY", start_ms + int(at * 1000))
        out.append((at, lid, bid.encode(), encode_loan_event(ev)))
    return out


async def replay(settings: Settings, schedule: list[tuple[float, str, bytes, bytes]]
                 ) -> dict[str, Any]:
    """Send the pre-encoded records on schedule; returns the achieved rate."""
    lender_ids = sorted({lid for _, lid, _, _ in schedule})
    async with contextlib.AsyncExitStack() as stack:
        pubs = {lid: await stack.enter_async_context(LenderPublisher(settings, lid))
                for lid in lender_ids}
        topics = {lid: settings.topics.loans(lid) for lid in lender_ids}
        started = time.perf_counter()
        i, n = 0, len(schedule)
        while i < n:
            due = time.perf_counter() - started
            while i < n and schedule[i][0] <= due:
                _, lid, key, value = schedule[i]
                await pubs[lid].send_raw(topics[lid], key, value)
                i += 1
            await asyncio.sleep(STEP_S)
        sent_s = time.perf_counter() - started
    return {"sent": n, "send_s": round(sent_s, 3), "achieved_rate": round(n / sent_s, 1)}


async def _read(consumer: AIOKafkaConsumer, start: dict[TopicPartition, int]
                ) -> list[Any]:
    """Every record from ``start`` to the current end of those partitions."""
    ends = await consumer.end_offsets(list(start))
    consumer.assign(list(start))
    for tp, offset in start.items():
        consumer.seek(tp, offset)
    out = []
    todo = {tp for tp in start if ends[tp] > start[tp]}
    while todo:
        batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
        for tp, records in batch.items():
            out.extend(records)
            if records and records[-1].offset + 1 >= ends[tp]:
                todo.discard(tp)
    return out


async def measure_freshness(settings: Settings, rate: float, duration_s: float
                            ) -> dict[str, Any]:
    """Replay ``rate`` events/s for ``duration_s`` and measure append -> queryable."""
    lender_ids, borrowers = await grant_consent(settings, seed=97)
    opts = settings.kafka_client_options()
    consumer = AIOKafkaConsumer(**opts, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(**opts)
    await consumer.start()
    await admin.start()
    try:
        activity = settings.topics.activity
        loans = await loans_topic_names(settings)
        act_tps = await topic_partitions(consumer, [activity])
        loan_tps = await topic_partitions(consumer, loans)
        if not act_tps or not loan_tps:
            raise RuntimeError(f"no partitions known for {activity} or the lender topics")
        act_start = await consumer.end_offsets(act_tps)
        loans_start = await consumer.end_offsets(loan_tps)
        group = f"{settings.registry_app_id}-sink"
        samples: list[tuple[float, dict[int, int]]] = []
        stop = asyncio.Event()

        async def poll() -> None:
            while not stop.is_set():
                offsets = await admin.list_consumer_group_offsets(group, partitions=act_tps)
                samples.append((time.time(),
                                {tp.partition: m.offset for tp, m in offsets.items()}))
                await asyncio.sleep(0.05)

        run = f"{int(time.time())}-{rate:.0f}"
        encode_started = time.perf_counter()
        schedule = encode_schedule(lender_ids, borrowers, rate, duration_s,
                                   int(time.time() * 1000), run)
        encode_s = time.perf_counter() - encode_started
        poller = asyncio.ensure_future(poll())
        sent = await replay(settings, schedule)
        sent["encode_s_before_clock"] = round(encode_s, 3)
        del schedule
        await wait_drained(settings, timeout=180, stable_for=1.0)
        await asyncio.sleep(0.2)
        stop.set()
        await poller

        where: dict[tuple[str, str], tuple[int, int]] = {}
        act_codec = codec_for(ACTIVITY_BATCH)
        for rec in await _read(consumer, act_start):
            batch = act_codec.decode(rec.value)
            # typed ledger rows (activity v3); legacy ``items`` of kind "ledger" for old records
            rows = list(batch.get("ledger") or []) + [
                item for item in batch.get("items") or [] if item.get("kind") == "ledger"]
            for row in rows:
                where[(row["lender_id"], row["event_id"])] = (rec.partition, rec.offset)
        loan_codec = codec_for(LOAN_EVENT)
        published: dict[tuple[str, str], int] = {}
        for rec in await _read(consumer, loans_start):
            ev = loan_codec.decode(rec.value)
            published[(ev["lender_id"], ev["event_id"])] = rec.timestamp
    finally:
        await consumer.stop()
        await admin.close()

    times = [t for t, _ in samples]
    latencies = []
    by_append: list[tuple[int, float]] = []
    for key, (partition, offset) in where.items():
        append_ms = published.get(key)
        if append_ms is None:
            continue
        # first poll at or after the append whose committed offset passed the record
        i = bisect.bisect_left(times, append_ms / 1000)
        while i < len(samples) and samples[i][1].get(partition, -1) <= offset:
            i += 1
        if i < len(samples):
            latencies.append(samples[i][0] - append_ms / 1000)
            by_append.append((append_ms, latencies[-1]))
    # latency that grows from the first third of the window to the last means the worker was
    # saturated at this rate (it shares 2 cores with the simulator and the broker)
    by_append.sort()
    third = len(by_append) // 3
    first = percentiles([x for _, x in by_append[:third]], (50,))
    last = percentiles([x for _, x in by_append[-third:]], (50,)) if third else {}
    return {
        "rate": rate,
        "duration_s": duration_s,
        **sent,
        "measured_events": len(latencies),
        "poll_interval_s": 0.05,
        "polls": len(samples),
        **{k: round(v, 3) for k, v in percentiles(latencies).items()},
        "max": round(max(latencies), 3) if latencies else None,
        "p50_first_third": round(first["p50"], 3) if first else None,
        "p50_last_third": round(last["p50"], 3) if last else None,
        "latencies": [round(x, 4) for x in latencies],
    }
