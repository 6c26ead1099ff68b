"""Lag after retention (issue 13, input 10), against the real broker.

A group committed at offset K; then ``DeleteRecords`` (what retention does) removes every record
before offset D > K. Only ``N - D`` records still exist to be read, and that is the lag the
monitor, ``GET /api/v1/lag``, ``/metrics`` and ``registry lag`` must all report, not ``N - K``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from consumers.api.ops_routes import add_ops_routes
from consumers.lag.monitor import LagMonitor
from streams.runtime.metrics import Metrics
from streams.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
N, K, D = 40, 10, 30


async def _prepare(settings: Settings, topic: str, group: str) -> None:
    tp = TopicPartition(topic, 0)
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
        deadline = time.monotonic() + 30
        while topic not in await admin.list_topics():
            assert time.monotonic() < deadline, f"topic {topic} never appeared"
            await asyncio.sleep(0.1)
        producer = AIOKafkaProducer(**settings.kafka_client_options(), acks="all")
        await producer.start()
        try:
            for i in range(N):
                await producer.send(topic, f"r{i}".encode(), partition=0)
            await producer.flush()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=group,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.commit({tp: K})
        finally:
            await consumer.stop()
        low = await admin.delete_records({tp: RecordsToDelete(before_offset=D)})
        assert low[tp] == D
    finally:
        await admin.close()


async def test_lag_is_end_minus_log_start_when_retention_passed_the_commit(
    settings: Settings,
) -> None:
    topic = settings.topics.loans("retention")
    group = f"{settings.registry_app_id}-retention"
    await _prepare(settings, topic, group)
    metrics = Metrics()
    monitor = LagMonitor(settings, groups=[group], metrics=metrics)
    try:
        snapshot = await monitor.sample_once()
        row = snapshot.partition(group, topic, 0)
        assert row is not None
        assert (row.committed, row.end, row.lag) == (K, N, N - D)
        assert row.lag_seconds is not None  # the record at D exists and was read

        app = web.Application()
        add_ops_routes(app, monitor=monitor, metrics=metrics)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            api = await (await client.get("/api/v1/lag")).json()
            (api_row,) = api["groups"][group]["partitions"]
            assert (api_row["committed"], api_row["end"], api_row["lag"]) == (K, N, N - D)

            text = await (await client.get("/metrics")).text()
            labels = rf'\{{[^}}]*group="{re.escape(group)}"[^}}]*\}}'
            pattern = rf"^registry_consumer_lag_messages{labels} ([0-9.e+]+)$"
            values = [float(v) for v in re.findall(pattern, text, re.MULTILINE)]
            assert values == [N - D], text[:2000]

            url = f"http://127.0.0.1:{client.port}"
            env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
            done = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "streams.cli", "lag", "--json",
                                 "--url", url],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            cli = json.loads(done.stdout)
            (cli_row,) = cli["groups"][group]["partitions"]
            assert cli_row["lag"] == N - D
            table = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "streams.cli", "lag", "--url", url],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
            assert f"lag {N - D})" in table.stdout, table.stdout
    finally:
        await monitor.stop()
