"""Freshness: publish time -> queryable time, with the simulator live at a fixed rate.

Against a running (drained) worker, the simulator publishes live loan events at ``rate``. A
poller reads the sink group's committed offsets on ``registry.activity`` every 50 ms. The sink
commits only after ClickHouse acknowledged the insert, so an event is queryable by the poll
that first sees the commit pass the activity record carrying its ledger row. Afterwards the
activity records (ledger items -> activity offset) and the lender records (broker
LogAppendTime = publish time) are read back and joined on (lender, event_id).

Resolution: the poll interval (50 ms) bounds the error from above; the numbers are upper
bounds by at most that much. No query load is put on the worker while it is measured.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench import percentiles, use_test_helpers
from bench.e2e import loans_topic_names, topic_partitions
from schemas.codec import LOAN_EVENT, codec_for
from streams.lender.simulator import SimulationParams, run_simulation
from streams.settings import Settings

use_test_helpers()
from pipeline import wait_drained  # noqa: E402

ACTIVITY_BATCH = "registry.internal.ActivityBatch"


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

        poller = asyncio.ensure_future(poll())
        params = SimulationParams(seed=97, lenders=5, borrowers=2000, days=1, rate=rate,
                                  duration_s=duration_s, consent_rate=1.0,
                                  duplicate_rate=0.0, late_rate=0.0, malformed_rate=0.0)
        sim = await run_simulation(settings, params)
        await wait_drained(settings, timeout=180, stable_for=1.0)
        await asyncio.sleep(0.2)
        stop.set()
        await poller

        where: dict[tuple[str, str], tuple[int, int]] = {}
        act_codec = codec_for(ACTIVITY_BATCH)
        for rec in await _read(consumer, act_start):
            for item in act_codec.decode(rec.value)["items"]:
                if item["kind"] == "ledger":
                    where[(item["lender_id"], item["event_id"])] = (rec.partition, rec.offset)
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
        "published": sim.sent,
        "measured_events": len(latencies),
        "poll_interval_s": 0.05,
        "polls": len(samples),
        **{k: round(v, 3) for k, v in percentiles(latencies).items()},
        "max": round(max(latencies), 3) if latencies else None,
        "p50_first_third": round(first["p50"], 3) if first else None,
        "p50_last_third": round(last["p50"], 3) if last else None,
        "latencies": [round(x, 4) for x in latencies],
    }
