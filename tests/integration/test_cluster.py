"""A broker crash on a three-node cluster: nothing lost, nothing twice, replicas whole again.

The test gets a three-node KRaft cluster of its own (``infra/kafka/cluster.sh`` through
``tests.support.services.local_cluster``: three combined broker+controller JVMs, static quorum
of three voters). A seeded simulator history with duplicates, late and malformed events and refused
consent is published in two halves:

1. the first half goes in before the worker starts (every topic created with three replicas);
2. once the worker's intake has committed some of it (lag still > 0), the node that
   leads the busiest lender ``loans`` partition is SIGKILLed; the test waits for the
   controller to move that partition's leadership to a surviving node;
3. the second half is published while the node is down (new publishers, as a lender
   reconnecting would), so the worker consumes and the sink writes through the outage;
4. the node is started again, the pipeline drains, and every partition of every topic gets its
   full ISR back (isr == replicas).

Then ClickHouse equals the oracle exactly (ledger, daily and hourly buckets, rejection counts):
0 events lost, 0 counted twice. The timeline (kill, leader change, restart, drain, ISR whole) is
printed. The worker process is never restarted: it rides out the crash in-process.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streams.kafka.internals import topic_partitions
from streams.kafka.topics import ensure_lender_topics
from streams.lender.ground_truth import TruthBuilder
from streams.lender.scenario import build_scenario
from streams.lender.sim_types import ItemKind, SimItem, SimulationParams
from streams.settings import Settings
from tests.support.faults import assert_matches_oracle
from tests.support.pipeline import PUBLISH_CHUNK as CHUNK
from tests.support.pipeline import dump_clickhouse, group_lag, publish_items, wait_drained
from tests.support.services import docker_available, local_cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOAN_RECORDS = 18_000  # about half before the crash, half during the outage


async def _topics(settings: Settings) -> dict[str, dict[int, dict]]:
    """Every topic's partitions as the cluster reports them: leader, replicas, isr."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=5000)
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    return {t["topic"]: {p["partition"]: {"leader": p["leader"], "replicas": p["replicas"],
                                          "isr": p["isr"]} for p in t["partitions"]}
            for t in described if not t["error_code"]}


async def _poll(what: str, timeout: float, check) -> object:
    """Await ``check()`` until it returns something truthy (KafkaErrors count as not yet)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = await check()
        except KafkaError as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {last!r}")
        await asyncio.sleep(0.2)


async def _busiest_loans_partition(settings: Settings) -> tuple[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**settings.kafka_client_options())
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, [
            t for t in await consumer.topics()
            if t.startswith(settings.kafka_namespace) and t.endswith(".loans")])
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    tp = max(ends, key=lambda k: (ends[k], k.topic, k.partition))
    return tp, ends[tp]


@pytest.mark.skipif(docker_available(), reason="runs the local three-node cluster script")
async def test_broker_crash_on_a_three_node_cluster(settings: Settings, worker_factory,
                                                    tmp_path) -> None:
    began = time.monotonic()
    with local_cluster(tmp_path / "cluster") as cluster:
        settings.kafka_bootstrap = cluster.bootstrap  # the factory's workers use this
        cluster_ready = time.monotonic() - began

        params = SimulationParams(seed=31337, lenders=3, borrowers=5000, days=20,
                                  consent_rate=0.5, duplicate_rate=0.02, late_rate=0.03,
                                  malformed_rate=0.003).resolved()
        scenario = build_scenario(params)
        lenders = [lender.lender_id for lender in scenario.lenders]
        truth = TruthBuilder(params.to_json(), params.now_ms or 0, lenders,
                             {b.borrower_id: b.profile.value for b in scenario.borrowers})
        items: list[SimItem] = []
        loans = 0
        for item in scenario.items:
            if loans >= LOAN_RECORDS and len(items) % CHUNK == 0:
                break
            items.append(item)
            loans += item.kind is not ItemKind.CONSENT
        first = CHUNK * (len(items) // 2 // CHUNK)  # chunk boundary: consent before events
        for lid in lenders:
            await ensure_lender_topics(settings, lid)
        await publish_items(settings, items[:first], truth)

        tp, busiest_records = await _busiest_loans_partition(settings)
        before = await _topics(settings)
        victim = before[tp.topic][tp.partition]["leader"]
        assert victim in (1, 2, 3)
        for name in (t for t in before if t.startswith(settings.kafka_namespace)):
            for p, part in before[name].items():  # the registry's topics: three replicas
                assert len(part["replicas"]) == 3, (name, p, part)

        worker = worker_factory()
        pid = worker.proc.pid
        published_loans = sum(item.kind is not ItemKind.CONSENT for item in items[:first])

        async def consuming() -> dict[str, int] | None:
            """The lag once the intake stage has committed part of the lender records."""
            assert worker.proc.poll() is None, worker.log_tail()
            lag = await group_lag(settings)
            return lag if 0 <= lag["intake"] < published_loans else None

        lag_at_kill = await _poll("the intake stage to commit", 300, consuming)
        committed_at_kill = published_loans - lag_at_kill["intake"]
        assert lag_at_kill["intake"] > 0, "the crash must come mid-stream"

        kill_at, kill_utc = time.monotonic(), time.strftime("%H:%M:%S", time.gmtime())
        await asyncio.to_thread(cluster.kill_node, victim)

        async def new_leader() -> int | None:
            leader = (await _topics(settings))[tp.topic][tp.partition]["leader"]
            return leader if leader not in (victim, -1) else None

        leader = await _poll("a new leader of the busiest partition", 60, new_leader)
        leader_at = time.monotonic()

        await publish_items(settings, items[first:], truth)  # while the node is down
        published_at = time.monotonic()
        assert worker.proc.poll() is None, worker.log_tail()
        await asyncio.to_thread(cluster.start_node, victim)
        restarted_at = time.monotonic()

        expected = truth.build()
        await wait_drained(settings, timeout=600, worker=worker)  # a ceiling
        drained_at = time.monotonic()

        async def isr_whole() -> dict[str, dict[int, dict]] | None:
            topics = await _topics(settings)
            short = [(t, p) for t, parts in topics.items() for p, part in parts.items()
                     if sorted(part["isr"]) != sorted(part["replicas"])]
            return topics if not short else None

        after = await _poll("every partition's ISR to equal its replicas", 120, isr_whole)
        isr_at = time.monotonic()
        assert worker.proc.poll() is None and worker.proc.pid == pid
        assert worker.stop() == 0, worker.log_tail()
        stored = dump_clickhouse(settings)

    internal_rf = sorted({len(part["replicas"]) for name, parts in after.items()
                          if not name.startswith(settings.kafka_namespace)
                          for part in parts.values()})
    print(f"\n[cluster] {loans} loan records ({first} items before the crash, "
          f"{len(items) - first} during it), admitted {len(expected.admitted)}, ledger "
          f"{stored['ledger_rows']} rows ({stored['ledger_duplicates']} duplicates); busiest "
          f"partition {tp.topic}[{tp.partition}] ({busiest_records} records) led by node "
          f"{victim}; at the kill {committed_at_kill} of {published_loans} loan records "
          f"committed, lag {lag_at_kill}\n"
          f"[cluster] cluster up {cluster_ready:.1f}s after the test began; timeline from the "
          f"SIGKILL at {kill_utc} UTC: leader -> node {leader} at "
          f"+{leader_at - kill_at:.1f}s, second half "
          f"published at +{published_at - kill_at:.1f}s, node {victim} answering again at "
          f"+{restarted_at - kill_at:.1f}s, drained at +{drained_at - kill_at:.1f}s, ISR "
          f"whole at +{isr_at - kill_at:.1f}s; test {time.monotonic() - began:.1f}s; "
          f"replication factors of non-registry topics: {internal_rf}")
    assert_matches_oracle(stored, expected.admitted, settings)
    rejections = {(lender, reason): n for lender, reason, n in stored["rejections"]}
    assert rejections == {(lender, reason): n for lender, reasons in expected.rejections.items()
                          for reason, n in reasons.items()}
    assert sum(n for _, _, n in stored["rejections"]) == sum(
        n for reasons in expected.rejections.values() for n in reasons.values())
