"""Topics created through the registry's own code carry the configs it promises, read back
from the broker (``DescribeConfigs``): lender loans/consent topics (raw national ids) expire
after ``LENDER_TOPIC_RETENTION_HOURS`` with broker append time; rejected topics the same
retention; ``registry.*`` topics are deleted (never compacted) after
``REGISTRY_TOPIC_RETENTION_HOURS``; every topic has the planned replication and
``min.insync.replicas`` (one broker in the test cluster: factor 1, min in-sync 1)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.kafka.topics import (
    ReplicationPlan,
    ensure_lender_topics,
    ensure_registry_topics,
    replication_plan,
    replication_plan_sync,
)
from streams.settings import Settings

pytestmark = pytest.mark.integration

KEYS = ("cleanup.policy", "retention.ms", "segment.ms", "message.timestamp.type",
        "min.insync.replicas")


async def _configs(settings: Settings, names: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    out: dict[str, dict[str, str]] = {}
    for response in responses:
        for error_code, _, _, name, entries in response.resources:
            assert error_code == 0, (name, error_code)
            values = {entry[0]: entry[1] for entry in entries}
            out[name] = {key: values[key] for key in KEYS}
    for item in described:
        replicas = {len(part["replicas"]) for part in item["partitions"]}
        out[item["topic"]]["replicas"] = ",".join(str(r) for r in sorted(replicas))
    return out


async def test_lender_and_registry_topics_have_their_retention_and_replication(
        settings: Settings) -> None:
    settings = settings.model_copy(update={"lender_topic_retention_hours": 36,
                                           "registry_topic_retention_hours": 100})
    plan = ReplicationPlan(factor=1, min_insync=1, brokers=1)
    assert await replication_plan(settings) == plan
    assert await asyncio.to_thread(replication_plan_sync, settings) == plan
    await ensure_lender_topics(settings, "ret-bank")
    await ensure_registry_topics(settings)
    topics = settings.topics
    lender = [topics.loans("ret-bank"), topics.consent("ret-bank"), topics.rejected("ret-bank")]
    internal = [topics.validated, topics.activity, topics.consent_audit, topics.alerts]
    got = await _configs(settings, lender + internal)

    raw_ids = {"cleanup.policy": "delete", "retention.ms": str(36 * 3_600_000),
               "segment.ms": str(24 * 3_600_000), "message.timestamp.type": "LogAppendTime",
               "min.insync.replicas": "1", "replicas": "1"}
    assert got[topics.loans("ret-bank")] == raw_ids
    assert got[topics.consent("ret-bank")] == raw_ids
    assert got[topics.rejected("ret-bank")] == raw_ids | {"message.timestamp.type": "CreateTime"}
    for name in internal:
        assert got[name] == {"cleanup.policy": "delete", "retention.ms": str(100 * 3_600_000),
                             "segment.ms": str(24 * 3_600_000),
                             "message.timestamp.type": "CreateTime",
                             "min.insync.replicas": "1", "replicas": "1"}, name
