"""The lag monitor against a real broker: exact lag in messages, positive lag in seconds, OK.

A topic (under the test's namespace) gets N records; a group commits K; one ``sample_once``
must report lag N-K with a positive age of the oldest unconsumed record. After the group
commits N, lag is 0 and the status OK. Then the ops routes serve the same numbers.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from consumers.api.ops_routes import add_ops_routes
from consumers.lag.history import LagHistoryWriter
from consumers.lag.monitor import LagMonitor
from consumers.lag.status import LagStatus
from streams.runtime.metrics import Metrics
from streams.settings import Settings

pytestmark = pytest.mark.integration

N = 40
K = 15
AGE_MS = 30_000


async def _create_topic(settings: Settings, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
        deadline = time.monotonic() + 30
        while topic not in await admin.list_topics():
            assert time.monotonic() < deadline, f"topic {topic} never appeared"
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def _produce(settings: Settings, topic: str, n: int, timestamp_ms: int) -> None:
    producer = AIOKafkaProducer(**settings.kafka_client_options(), acks="all")
    await producer.start()
    try:
        for i in range(n):
            await producer.send(topic, f"record-{i}".encode(), partition=0,
                                timestamp_ms=timestamp_ms + i)
        await producer.flush()
    finally:
        await producer.stop()


async def _commit(settings: Settings, group: str, tp: TopicPartition, offset: int) -> None:
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


class _FailingInsert:
    """A ClickHouse stand-in that is down: every insert raises."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, table: str, rows: list[tuple], columns: list[str]) -> None:
        self.calls += 1
        raise ConnectionError("clickhouse is down")


async def test_lag_in_messages_and_seconds_then_ok(settings: Settings) -> None:
    topic = settings.topics.loans("lag-test")
    group = f"{settings.registry_app_id}-lagtest"
    tp = TopicPartition(topic, 0)
    await _create_topic(settings, topic, partitions=1)
    produced_at = int(time.time() * 1000) - AGE_MS
    await _produce(settings, topic, N, produced_at)
    await _commit(settings, group, tp, K)

    failing = _FailingInsert()
    writer = LagHistoryWriter(failing, flush_interval_s=0.0, in_thread=False)
    metrics = Metrics()
    monitor = LagMonitor(settings, metrics=metrics, history_writer=writer)
    try:
        snapshot = await monitor.sample_once()
        assert group in snapshot.groups, snapshot.groups.keys()
        lagging = snapshot.partition(group, topic, 0)
        assert lagging is not None
        assert (lagging.committed, lagging.end, lagging.lag) == (K, N, N - K)
        assert lagging.lag_seconds is not None
        # The record at offset K was stamped produced_at + K; allow for clock granularity.
        assert lagging.lag_seconds >= (AGE_MS - K) / 1000 - 1
        assert lagging.lag_seconds > 0
        assert metrics.consumer_lag_messages.value(group, topic, "0") == N - K
        assert snapshot.freshness["lag-test"] is not None
        assert snapshot.freshness["lag-test"] >= AGE_MS / 1000 - 5
        # The history writer failed, the monitor did not: rows are kept for a retry.
        assert failing.calls == 1
        assert writer.buffered == 1

        await _commit(settings, group, tp, N)
        caught_up = await monitor.sample_once()
        done = caught_up.partition(group, topic, 0)
        assert done is not None
        assert (done.committed, done.lag, done.lag_seconds) == (N, 0, 0.0)
        assert done.status is LagStatus.OK
        assert caught_up.groups[group].status is LagStatus.OK
        assert metrics.consumer_status.value(group, "OK") == 1
        assert metrics.consumer_status.value(group, "STOPPED") == 0

        app = web.Application()
        add_ops_routes(app, monitor=monitor, metrics=metrics)
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/api/v1/lag")
            assert response.status == 200
            body = await response.json()
            (row,) = body["groups"][group]["partitions"]
            assert (row["lag"], row["status"]) == (0, "OK")
            assert row["history"]["lag"] == [N - K, 0]
            response = await client.get("/metrics")
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
            assert f'registry_consumer_status{{group="{group}",status="OK"}} 1' in text
            page = await client.get("/lag")
            assert page.status == 200
            assert "lag.js" in await page.text()
            script = await client.get("/static/lag.js")
            assert script.status == 200
    finally:
        await monitor.stop()


async def test_background_loop_samples_and_writes_history(settings: Settings) -> None:
    topic = settings.topics.loans("loop-test")
    group = f"{settings.registry_app_id}-looptest"
    tp = TopicPartition(topic, 0)
    await _create_topic(settings, topic, partitions=1)
    await _produce(settings, topic, 5, int(time.time() * 1000))
    await _commit(settings, group, tp, 5)

    inserted: list[tuple[str, list[tuple], list[str]]] = []
    writer = LagHistoryWriter(
        lambda table, rows, columns: inserted.append((table, rows, columns)),
        flush_interval_s=0.0,
    )
    fast = settings.model_copy(update={"lag_poll_seconds": 0.2})
    monitor = LagMonitor(fast, groups=[group], metrics=Metrics(), history_writer=writer)
    await monitor.start()
    try:
        deadline = time.monotonic() + 30
        while len(inserted) < 3:
            assert time.monotonic() < deadline, "the monitor loop did not sample 3 times"
            await asyncio.sleep(0.05)
    finally:
        await monitor.stop()
    table, rows, columns = inserted[0]
    assert table == "lag_history"
    assert columns[:4] == ["sampled_at", "group_id", "topic", "partition"]
    assert rows[0][1:] == (group, topic, 0, 5, 5, 0, 0.0, "OK")
    series = monitor.snapshot()["groups"][group]["partitions"][0]["history"]
    assert len(series["t"]) >= 3 and set(series["lag"]) == {0}


async def test_sample_once_fails_as_a_type_when_broker_is_unreachable(
    settings: Settings,
) -> None:
    from consumers.lag.monitor import LagMonitorError

    unreachable = settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"})
    monitor = LagMonitor(unreachable, request_timeout_s=2.0)
    try:
        with pytest.raises(LagMonitorError):
            await monitor.sample_once()
        assert monitor.snapshot()["ready"] is False
    finally:
        await monitor.stop()
