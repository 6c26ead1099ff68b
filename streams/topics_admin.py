"""Creating the registry's topics.

``ensure_*`` are idempotent: a topic that already exists is left as it is (its partition count
and configuration are NOT changed). They return only once the broker's metadata lists every
requested topic with a leader on each partition, or raise :class:`TopicsNotReady` at the
deadline, so a caller may produce to the topics immediately afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError

from schemas.topics import check_lender_id
from streams.settings import Settings

#: Kafka error code for "topic already exists" (harmless for us).
_TOPIC_ALREADY_EXISTS = 36
#: The replication factor used when the cluster has enough brokers.
_PREFERRED_REPLICATION = 3


class TopicAdminError(RuntimeError):
    """Topics could not be created or confirmed."""


class BrokerUnavailable(TopicAdminError):
    """No broker answered at the configured bootstrap address."""


class TopicsNotReady(TopicAdminError):
    """Topics were requested but did not appear in the metadata before the deadline."""


async def ensure_topics(
    settings: Settings,
    names: Iterable[str],
    *,
    partitions: int | None = None,
    config: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Create the missing topics among ``names`` and wait until all of them are usable.

    ``partitions`` defaults to ``settings.registry_partitions``; the replication factor is
    ``min(3, brokers in the cluster)``. ``config`` applies only to topics created here.
    """
    wanted = sorted(set(names))
    if not wanted:
        return
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())  # type: ignore[arg-type]
    try:
        await admin.start()
    except KafkaConnectionError as exc:
        raise BrokerUnavailable(
            f"no Kafka broker reachable at {settings.kafka_bootstrap} (KAFKA_BOOTSTRAP)"
        ) from exc
    try:
        deadline = time.monotonic() + timeout_s
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            brokers = (await admin.describe_cluster())["brokers"]
            replication = max(1, min(_PREFERRED_REPLICATION, len(brokers)))
            count = partitions or settings.registry_partitions
            new = [
                NewTopic(name, count, replication, topic_configs=dict(config or {}))
                for name in missing
            ]
            response = await admin.create_topics(new, timeout_ms=int(timeout_s * 1000))
            for topic, code, *rest in response.topic_errors:
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    detail = rest[0] if rest else ""
                    raise TopicAdminError(f"cannot create topic {topic}: error {code} {detail}")
        await _wait_until_ready(admin, wanted, deadline)
    except KafkaError as exc:
        raise TopicAdminError(f"topic administration failed: {exc!r}") from exc
    finally:
        await admin.close()


async def _wait_until_ready(admin: AIOKafkaAdminClient, names: list[str], deadline: float) -> None:
    """Poll metadata until every topic has partitions that all have a leader."""
    pending = list(names)
    while True:
        described = await admin.describe_topics(pending)
        ready = {
            item["topic"]
            for item in described
            if item["error_code"] == 0
            and item["partitions"]
            and all(part["leader"] >= 0 for part in item["partitions"])
        }
        pending = [name for name in pending if name not in ready]
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise TopicsNotReady(f"topics not ready before the deadline: {', '.join(pending)}")
        await asyncio.sleep(0.1)


async def ensure_lender_topics(settings: Settings, lender_id: str) -> None:
    """The three topics a lender owns: loans and consent (broker-stamped append time), rejected."""
    topics = settings.topics
    check_lender_id(lender_id)
    await ensure_topics(
        settings,
        [topics.loans(lender_id), topics.consent(lender_id)],
        partitions=settings.registry_partitions,
        config={"message.timestamp.type": "LogAppendTime"},
    )
    await ensure_topics(
        settings, [topics.rejected(lender_id)], partitions=settings.registry_partitions
    )


async def ensure_registry_topics(settings: Settings) -> None:
    """The registry-internal topics (validated, activity, consent audit, alerts)."""
    topics = settings.topics
    await ensure_topics(
        settings,
        [topics.validated, topics.activity, topics.consent_audit, topics.alerts],
        partitions=settings.registry_partitions,
    )
