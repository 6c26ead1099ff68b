"""End-to-end throughput: a backlog of N loan events, then ``registry worker`` drains it.

The events are published BEFORE the worker starts, so the worker runs flat out. Every 0.5 s
the consumer-group lag of bulk intake (lender topics), the stream agent (``registry.validated``),
consent and sink
groups is sampled (``tests.support.pipeline.group_lag``). The sustained rate is the number of lender
records divided by the time from the first sample showing progress to the first sample where
every group is at lag 0: at that moment every admitted event is in ClickHouse (the sink
commits offsets only after ClickHouse acknowledged the insert).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bench import REPO, profile
from streams.kafka.internals import topic_partitions
from streams.lender.simulator import SimulationParams, run_simulation
from streams.settings import Settings
from tests.support.pipeline import group_lag
from tests.support.services import settings_env

LEDGER_COUNT = """
import json
from consumers.clickhouse.client import connect
from streams.settings import Settings
ch = connect(Settings())
q = lambda sql: ch.query(sql)[0][0]
print(json.dumps({"ledger": q("SELECT count() FROM admitted_events FINAL"),
                  "daily": q("SELECT count() FROM borrower_daily FINAL"),
                  "hourly": q("SELECT count() FROM borrower_hourly FINAL")}))
"""


class Worker:
    """One ``registry worker`` subprocess."""

    def __init__(self, settings: Settings, log: Path, *args: str) -> None:
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", *args], env=settings_env(settings),
            cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)
        self.peak_rss = 0

    def sample_rss(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.peak_rss = max(self.peak_rss, self.ps.memory_info().rss)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


async def publish_backlog(settings: Settings, events: int, now_ms: int) -> dict[str, Any]:
    # no cancels: the Quix Streams peer (bench.quix_peer) reads the same backlog and does not
    # implement them
    params = SimulationParams(seed=11, lenders=5, borrowers=max(2000, events // 10),
                              events=events, days=30, consent_rate=0.9, cancel_rate=0.0,
                              now_ms=now_ms)
    started = time.monotonic()
    result = await run_simulation(settings, params)
    return {"loan_records": result.truth.published["loans"] + result.truth.published["raw"],
            "consent_records": result.truth.published["consent"],
            "expected_admitted": len(result.truth.admitted),
            "publish_s": time.monotonic() - started}


async def loans_topic_names(settings: Settings) -> list[str]:
    import re

    consumer = AIOKafkaConsumer(**settings.kafka_client_options())
    await consumer.start()
    try:
        return sorted(n for n in await consumer.topics()
                      if re.match(settings.topics.loans_pattern, n))
    finally:
        await consumer.stop()


async def end_offsets_total(settings: Settings, topics: list[str]) -> int:
    consumer = AIOKafkaConsumer(**settings.kafka_client_options())
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics
               for p in consumer.partitions_for_topic(t) or ()]
        if not tps:
            tps = await topic_partitions(consumer, topics)
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


@dataclass
class Drain:
    records: int
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # t, stream, sink
    first_progress_s: float | None = None
    drained_s: float | None = None


async def measure_drain(settings: Settings, workers: list[Worker], records: int, *,
                        timeout: float, on_progress: Any = None) -> Drain:
    drain = Drain(records)
    started = time.monotonic()
    initial: int | None = None
    while time.monotonic() - started < timeout:
        for w in workers:
            if w.proc.poll() is not None:
                raise RuntimeError(f"worker exited early with {w.proc.returncode}")
            w.sample_rss()
        try:
            lag = await group_lag(settings)
        except KafkaError:
            await asyncio.sleep(0.5)
            continue
        t = time.monotonic() - started
        stream, sink = lag["intake"] + max(lag["stream"], 0), lag["sink"]
        drain.samples.append((t, max(stream, 0), max(sink, 0)))
        if initial is None and stream >= 0:
            initial = stream
        if (drain.first_progress_s is None and initial is not None
                and 0 <= stream < initial):
            drain.first_progress_s = t
            if on_progress is not None:
                on_progress()
        if drain.first_progress_s is not None and all(v == 0 for v in lag.values()):
            drain.drained_s = t
            return drain
        await asyncio.sleep(0.5)
    raise RuntimeError(f"not drained after {timeout:.0f}s: last {drain.samples[-1:]}")


def ledger_counts(settings: Settings) -> dict[str, int]:
    done = subprocess.run([sys.executable, "-c", LEDGER_COUNT], env=settings_env(settings),
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    import json

    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(drain: Drain, counts: dict[str, int], workers: list[Worker]) -> dict[str, Any]:
    assert drain.first_progress_s is not None and drain.drained_s is not None
    busy = drain.drained_s - drain.first_progress_s
    return {
        "lender_records": drain.records,
        "admitted": counts["ledger"],
        "bucket_rows": counts["daily"] + counts["hourly"],
        "first_progress_s": round(drain.first_progress_s, 2),
        "drained_s": round(drain.drained_s, 2),
        "events_per_s": drain.records / busy,
        "admitted_per_s": counts["ledger"] / busy,
        "rows_queryable_per_s": counts["ledger"] / busy,
        "events_per_s_incl_startup": drain.records / drain.drained_s,
        "peak_rss_mib": [round(w.peak_rss / 2**20, 1) for w in workers],
        "samples": [[round(t, 2), a, b] for t, a, b in drain.samples],
    }


async def run_workers(settings: Settings, count: int, records: int, logdir: Path, *,
                      timeout: float, profile_out: Path | None = None,
                      profile_s: int = 15, keep_running: bool = False
                      ) -> tuple[dict[str, Any], list[Worker]]:
    workers = [Worker(settings, logdir / f"{settings.registry_app_id}-worker{i}.log")
               for i in range(count)]
    spy: list[subprocess.Popen[bytes]] = []

    def start_profile() -> None:
        if profile_out is not None:
            spy.append(profile.record(workers[0].proc.pid, profile_out, profile_s))

    try:
        drain = await measure_drain(settings, workers, records, timeout=timeout,
                                    on_progress=start_profile)
        for p in spy:
            await asyncio.to_thread(p.wait, profile_s + 30)
    except BaseException:
        for w in workers:
            w.stop()
        raise
    if not keep_running:
        for w in workers:
            w.stop()
    counts = ledger_counts(settings) if not keep_running else {}
    return {"drain": drain, "counts": counts}, workers


def finish(settings: Settings, run: dict[str, Any], workers: list[Worker]) -> dict[str, Any]:
    """Stop the workers (if still running), count the ledger and summarise."""
    for w in workers:
        w.stop()
    counts = run["counts"] or ledger_counts(settings)
    return summarise(run["drain"], counts, workers)



