"""Creating the registry's topics, and the replication every topic of the registry gets.

``ensure_*`` are idempotent: a topic that already exists is left as it is (its partition count
and configuration are NOT changed). They return only once the broker's metadata lists every
requested topic with a leader on each partition, or raise :class:`TopicsNotReady` at the
deadline, so a caller may produce to the topics immediately afterwards.

**Replication** is decided in one place, :func:`plan_replication`, from one setting
(``KAFKA_REPLICATION_FACTOR``; unset = ``min(3, brokers)``) and the number of brokers: the
registry's own topics (created here) and Faust's internal and changelog topics (through
:func:`faust_app_kwargs` / :func:`faust_table_kwargs`, fed by :func:`replication_plan` at
start-up) get the same factor, and ``min.insync.replicas=2`` when the factor is 3 or more (so an
``acks=all`` write survives the loss of any one broker, and one broker may be down without
stopping writes). A configuration that would create a single-replica changelog on a
multi-broker cluster is refused with :class:`ReplicationRefused`.

**Retention** (set on creation, explicitly, never left to the broker default):

* ``lenders.<L>.loans`` and ``lenders.<L>.consent`` hold RAW national ids (record values and
  keys): ``cleanup.policy=delete`` and ``retention.ms`` = ``LENDER_TOPIC_RETENTION_HOURS``
  (default 7 days; segments roll daily, so records are gone within a day after that), broker
  append time (the retention clock is the arrival time, whatever
  ``occurred_at`` a lender writes). ``lenders.<L>.rejected`` carries no borrower data and gets
  the same retention, the time a lender has to read its rejections.
* ``registry.*`` (validated, activity, consent audit, alerts) carry pseudonyms only:
  ``cleanup.policy=delete`` (never compacted: compaction would keep the latest record of each
  pseudonym forever, beyond any erasure) and ``retention.ms`` = ``REGISTRY_TOPIC_RETENTION_HOURS``
  (default 7 days: room for a sink outage over a long weekend).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError

from schemas.topics import check_lender_id
from streams.kafka.errors import (
    BrokerUnavailable,
    ReplicationRefused,
    TopicAdminError,
    TopicsNotReady,
)
from streams.settings import Settings

#: Kafka error code for "topic already exists" (harmless for us).
_TOPIC_ALREADY_EXISTS = 36
#: The replication factor used when the cluster has enough brokers.
_PREFERRED_REPLICATION = 3
#: ``min.insync.replicas`` when the factor allows losing one broker without losing writes.
_MIN_INSYNC_REPLICATED = 2
_HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class ReplicationPlan:
    """Replication of every topic the registry (or its Faust app) creates."""

    factor: int
    min_insync: int
    brokers: int

    def topic_configs(self) -> dict[str, str]:
        """Topic-level configs that go with the factor."""
        return {"min.insync.replicas": str(self.min_insync)}


def plan_replication(configured: int | None, brokers: int) -> ReplicationPlan:
    """The replication for ``brokers`` brokers and ``KAFKA_REPLICATION_FACTOR`` (None = unset).

    Rules: unset means ``min(3, brokers)``. An explicit factor larger than the cluster cannot be
    created; an explicit factor of 1 on a cluster of 2 or more brokers would leave every
    changelog with a single replica (one broker loss = state loss): both are refused with
    :class:`ReplicationRefused`. ``min.insync.replicas`` is 2 from a factor of 3, else 1 (with
    2 replicas, 2 in sync would stop all writes whenever one broker is down).
    """
    if brokers < 1:
        raise ReplicationRefused("the cluster reports no broker")
    factor = min(_PREFERRED_REPLICATION, brokers) if configured is None else configured
    if factor < 1:
        raise ReplicationRefused(f"KAFKA_REPLICATION_FACTOR={configured} must be at least 1")
    if factor > brokers:
        raise ReplicationRefused(
            f"KAFKA_REPLICATION_FACTOR={factor} exceeds the {brokers} broker(s) of the cluster")
    if factor == 1 and brokers >= 2:
        raise ReplicationRefused(
            f"KAFKA_REPLICATION_FACTOR=1 on a cluster of {brokers} brokers would give the "
            "borrower-state changelog and every registry topic a single replica: one broker "
            "loss would lose state. Unset it (default min(3, brokers)) or use 2 or more.")
    min_insync = _MIN_INSYNC_REPLICATED if factor >= _PREFERRED_REPLICATION else 1
    return ReplicationPlan(factor=factor, min_insync=min_insync, brokers=brokers)


async def replication_plan(settings: Settings) -> ReplicationPlan:
    """Ask the cluster how many brokers it has and apply :func:`plan_replication`.

    Call it once at start-up, before the Faust app is built; raises
    :class:`ReplicationRefused` (start-up must stop) or :class:`BrokerUnavailable`.
    """
    admin = await _start_admin(settings)
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
    except KafkaError as exc:
        raise TopicAdminError(f"cannot describe the Kafka cluster: {exc!r}") from exc
    finally:
        await admin.close()
    return plan_replication(settings.kafka_replication_factor, brokers)


def replication_plan_sync(settings: Settings) -> ReplicationPlan:
    """:func:`replication_plan` for synchronous start-up code (before Faust's worker runs).

    Runs on a private event loop that is never made the thread's current loop: unlike
    ``asyncio.run``, it leaves the main thread's loop policy as Faust/mode expect to find it.
    Must not be called from a running event loop.
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(replication_plan(settings))
    finally:
        loop.close()


def faust_app_kwargs(plan: ReplicationPlan) -> dict[str, Any]:
    """Keyword arguments for ``faust.App(...)``: the factor of every topic Faust creates
    (changelog, repartition, leader and reply topics)."""
    return {"topic_replication_factor": plan.factor}


def faust_table_kwargs(plan: ReplicationPlan) -> dict[str, Any]:
    """Keyword arguments for ``app.Table(...)``: the changelog's topic configs
    (``min.insync.replicas``; Faust itself makes changelogs compacted)."""
    return {"extra_topic_configs": plan.topic_configs()}


async def _start_admin(settings: Settings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    try:
        await admin.start()
    except KafkaConnectionError as exc:
        raise BrokerUnavailable(
            f"no Kafka broker reachable at {settings.kafka_bootstrap} (KAFKA_BOOTSTRAP)"
        ) from exc
    return admin


async def ensure_topics(
    settings: Settings,
    names: Iterable[str],
    *,
    partitions: int | None = None,
    config: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Create the missing topics among ``names`` and wait until all of them are usable.

    ``partitions`` defaults to ``settings.registry_partitions``; the replication factor and
    ``min.insync.replicas`` come from :func:`plan_replication`. ``config`` applies only to
    topics created here.
    """
    wanted = sorted(set(names))
    if not wanted:
        return
    admin = await _start_admin(settings)
    try:
        deadline = time.monotonic() + timeout_s
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            brokers = (await admin.describe_cluster())["brokers"]
            plan = plan_replication(settings.kafka_replication_factor, len(brokers))
            count = partitions or settings.registry_partitions
            configs = plan.topic_configs() | dict(config or {})
            new = [NewTopic(name, count, plan.factor, topic_configs=configs) for name in missing]
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


def retention_config(hours: int) -> dict[str, str]:
    """Delete (never compact) records older than ``hours``.

    Kafka deletes whole closed segments only, so segments roll at least daily
    (``segment.ms`` = min(retention, 24 h)): a record is gone at most a day (plus the broker's
    retention check interval, 5 min by default) after its retention ran out, not up to the
    broker's default 7-day roll later.
    """
    retention_ms = hours * _HOUR_MS
    return {"cleanup.policy": "delete", "retention.ms": str(retention_ms),
            "segment.ms": str(min(retention_ms, 24 * _HOUR_MS))}


def lender_topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Topic configs of a lender's topics, by kind (``loans``, ``consent``, ``rejected``)."""
    kept = retention_config(settings.lender_topic_retention_hours)
    raw_ids = kept | {"message.timestamp.type": "LogAppendTime"}
    return {"loans": raw_ids, "consent": raw_ids, "rejected": kept}


async def ensure_lender_topics(settings: Settings, lender_id: str) -> None:
    """The three topics a lender owns: loans and consent (raw national ids: broker-stamped
    append time, retention ``LENDER_TOPIC_RETENTION_HOURS``), rejected (same retention)."""
    topics = settings.topics
    check_lender_id(lender_id)
    configs = lender_topic_configs(settings)
    await ensure_topics(
        settings,
        [topics.loans(lender_id), topics.consent(lender_id)],
        partitions=settings.registry_partitions,
        config=configs["loans"],
    )
    await ensure_topics(
        settings, [topics.rejected(lender_id)], partitions=settings.registry_partitions,
        config=configs["rejected"],
    )


#: the Faust table of the stream agent (:mod:`streams.app`) and its changelog topic
STATE_TABLE = "borrower-state"


def state_changelog(settings: Settings) -> str:
    """Faust's name of the borrower-state changelog topic (``<app id>-<table>-changelog``)."""
    return f"{settings.registry_app_id}-{STATE_TABLE}-changelog"


async def ensure_registry_topics(settings: Settings) -> None:
    """The registry-internal topics (validated, activity, consent audit, alerts): pseudonyms
    only; deleted after ``REGISTRY_TOPIC_RETENTION_HOURS``, never compacted. Also the
    borrower-state changelog (compacted, as Faust declares it), created here BEFORE the Faust
    app starts: Faust creating it concurrently was seen to crash the agent's first table write
    on a fresh broker (``PartitionsMismatch: ... changelog topic has 0 partitions``)."""
    topics = settings.topics
    await ensure_topics(
        settings,
        [topics.validated, topics.activity, topics.consent_audit, topics.alerts],
        partitions=settings.registry_partitions,
        config=retention_config(settings.registry_topic_retention_hours),
    )
    await ensure_topics(settings, [state_changelog(settings)],
                        partitions=settings.registry_partitions,
                        config={"cleanup.policy": "compact"})


def ensure_registry_topics_sync(settings: Settings) -> None:
    """:func:`ensure_registry_topics` for synchronous start-up code, on a private event loop
    (see :func:`replication_plan_sync`)."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(ensure_registry_topics(settings))
    finally:
        loop.close()
