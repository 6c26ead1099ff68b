"""The Faust application: admission and aggregation agents (+ the consent agent beside it).

::

    lenders.<L>.consent --[consent agent, own consumer]--> Redis intervals + consent audit
    lenders.<L>.loans  --[admission agent]--> registry.admitted  (keyed by pseudonym)
                                         \\-> lenders.<L>.rejected (reason + coordinates)
    registry.admitted  --[aggregation agent + borrower-state table]--> registry.activity
                                                                   \\-> registry.alerts

Guarantees (at-least-once delivery made exact by idempotent steps): Faust flushes the producer
before it commits source offsets, so every output of a committed input exists. A crash between
output and commit replays the input; each step recognises its replays (dedup marks carry the
source position, day buckets remember event keys, rows are versioned), so replays never count
twice. Faust's windowed tables are not used: event-time state lives in one plain table whose
values this code owns (see :mod:`streams.buckets`).

faust-streaming's pattern subscriptions do not work, and changing a live subscription crashes its
fetcher, so lender topics are discovered by listing the broker's topics at start and every
``DISCOVERY_INTERVAL_S``; when a new lender's topic appears the worker stops cleanly and starts
again in the same process (``os.execv``): a new lender needs no code change and no operator.
The consent agent is not in this consumer (see :mod:`streams.consent_consumer`, which
subscribes by pattern with aiokafka).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import time
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from consumers.metrics import METRICS
from schemas.codec import REJECTION, codec_for
from schemas.records import Rejection
from schemas.validation import ValidationLimits
from streams.admission import Admission, Incoming
from streams.aggregation import Aggregator, StateCodec
from streams.alerts import ALERT_SCHEMA, AlertRules
from streams.buckets import BucketPolicy
from streams.calendar import HOUR_MS, Calendar
from streams.consent import ConsentIngest
from streams.consent_barrier import ConsentBarrier
from streams.consent_store import ConsentStore
from streams.dedup import DedupStore
from streams.pseudonym import Pseudonymiser
from streams.redis_client import connect_redis
from streams.settings import Settings

log = logging.getLogger(__name__)

DISCOVERY_INTERVAL_S = 3.0
LIVENESS_INTERVAL_S = 5.0
STALL_RESTART_S = 60.0
ADMITTED_BATCH = "registry.internal.AdmittedBatch"
ACTIVITY_BATCH = "registry.internal.ActivityBatch"


def _consumer_state(consumer: Any) -> str:
    """Faust's per-partition offset bookkeeping, for the log line of a stall (diagnosis)."""
    parts = []
    for tp in sorted(consumer.assignment()):
        acked = consumer._acked.get(tp) or []
        gap = consumer._gap.get(tp)
        parts.append(
            f"{tp.topic}[{tp.partition}] hw={consumer.highwater(tp)} "
            f"committed={consumer._committed_offset.get(tp)} "
            f"read={consumer._read_offset.get(tp)} acked={len(acked)}"
            f"{f' min={min(acked)} max={max(acked)}' if acked else ''} "
            f"gap={sorted((i.begin, i.end) for i in gap) if gap else []} "
            f"paused={tp in consumer._paused_partitions}")
    unacked = len(consumer._unacked_messages)
    return f"unacked={unacked}; " + "; ".join(parts)


def _raw_topic(app: faust.App, *names: str, partitions: int | None = None) -> Any:
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=partitions)


def _incoming(event: Any) -> Incoming:
    m = event.message
    return Incoming(m.topic, m.partition, m.offset, int(m.timestamp * 1000), m.value)


class RegistryStreams:
    """Builds the Faust app with its agents; :meth:`prepare` must run before the worker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        topics = settings.topics
        self.topics = topics
        broker_credentials = None
        if settings.kafka_security_protocol.startswith("SASL"):
            broker_credentials = faust.SASLCredentials(
                username=settings.kafka_sasl_username,
                password=settings.kafka_sasl_password.get_secret_value(),
                mechanism="SCRAM-SHA-512",
            )
        faust_dir = settings.registry_data_dir / "faust"
        faust_dir.mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            settings.registry_app_id,
            broker=[f"kafka://{h}" for h in settings.kafka_bootstrap.split(",")],
            broker_credentials=broker_credentials,
            store="memory://",
            datadir=str(faust_dir),
            topic_partitions=settings.registry_partitions,
            topic_replication_factor=1,
            web_enabled=False,
            autodiscover=False,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            producer_linger_ms=5,
            producer_max_request_size=4 * 1024 * 1024,
            broker_commit_interval=0.5,
            broker_max_poll_records=5000,
            stream_buffer_maxsize=20000,
            table_cleanup_interval=3600.0,
            consumer_metadata_max_age_ms=5000,
            # uncommitted work is replayed after a restart (and recognised), so shutdown and
            # rebalances need not wait for buffers to drain
            stream_wait_empty=False,
        )
        # One admitted batch updates up to a few hundred borrowers, i.e. as many changelog
        # writes. Faust's producer buffer throttles the consumer above 100 pending writes, and
        # under load that path was seen to stall a worker for good after a restart (no error);
        # a buffer sized to a few batches keeps the stream off it.
        self.app.producer.buffer.max_messages = 20_000
        self.loans = _raw_topic(self.app)
        self.admitted = _raw_topic(self.app, topics.admitted)
        self.activity = _raw_topic(self.app, topics.activity)
        self.alerts = _raw_topic(self.app, topics.alerts)
        self._rejected: dict[str, Any] = {}
        self._subscribed = False
        #: monotonic time of the agents' last finished batch (or Redis wait); see liveness
        self.last_progress = time.monotonic()
        #: set when lender topics appeared after start; run_worker then starts afresh
        self.restart_requested = False
        # key_type/value_type, not only the schema, pick the serializers that changelog
        # recovery decodes with (faust falls back to JSON, so a restart would never recover)
        self.table = self.app.Table(
            "borrower-state", partitions=settings.registry_partitions,
            key_type=bytes, value_type=bytes,
            schema=faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw",
                                value_serializer="raw"),
        )
        self._redis = connect_redis(settings)
        self._meta: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        #: the group's committed offsets on lender partitions at the previous liveness check
        self._last_committed: dict[TopicPartition, int] = {}
        #: when the liveness check re-delivered stuck partitions (None: not in this stall)
        self._reseeked_at: float | None = None
        self._admitted_codec = codec_for(ADMITTED_BATCH)
        self._activity_codec = codec_for(ACTIVITY_BATCH)
        self._rejection_codec = codec_for(REJECTION)
        self._alert_codec = codec_for(ALERT_SCHEMA)
        self._state_codec = StateCodec()
        pseudonymise = Pseudonymiser(settings.pseudonym_key_bytes)
        limits = ValidationLimits.from_settings(settings)
        consent_store = ConsentStore(self._redis, settings.redis_prefix)
        self.barrier = ConsentBarrier(consent_store, topics)
        self.dedup = DedupStore(self._redis, settings.redis_prefix, settings.dedup_ttl_days)
        self.admission = Admission(
            topics=topics, limits=limits, max_record_bytes=settings.max_record_bytes,
            partitions=settings.registry_partitions, pseudonymise=pseudonymise,
            dedup=self.dedup, consent=consent_store,
            barrier=self.barrier, dedup_enabled=not settings.test_disable_dedup,
        )
        self.consent_ingest = ConsentIngest(
            topics=topics, limits=limits, partitions=settings.registry_partitions,
            pseudonymise=pseudonymise, store=consent_store,
        )
        self.aggregator = Aggregator(
            BucketPolicy(Calendar(settings.tz), settings.grace_hours * HOUR_MS,
                         settings.hourly_state_hours * HOUR_MS,
                         dedup=not settings.test_disable_dedup),
            AlertRules.standard(settings.alert_draws_24h, settings.alert_lenders_7d,
                                settings.grace_hours * HOUR_MS),
        )
        # fail-closed waits (Redis down, consent agent behind) are not stalls
        self.admission.on_wait = self.barrier.on_wait = self._mark_progress
        self._define_agents()

    def _mark_progress(self) -> None:
        self.last_progress = time.monotonic()

    async def _stuck_lender_partitions(self) -> int:
        """Messages waiting on subscribed lender partitions whose committed offsets (the whole
        group's) have not moved since the previous call.

        Covers what this worker's own assignment cannot show: after a restart the group was
        seen to leave a new lender's partitions assigned to nobody. A partition another live
        member is working on moves between calls and is not counted.
        """
        if self._meta is None:
            return 0
        try:
            if self._admin is None:
                self._admin = AIOKafkaAdminClient(**self.settings.kafka_client_options())
                await self._admin.start()
            cluster = self._meta._client.cluster
            tps = [TopicPartition(t, p) for t in self.loans.topics
                   for p in sorted(cluster.partitions_for_topic(t) or ())]
            ends = await self._meta.end_offsets(tps)
            found = await self._admin.list_consumer_group_offsets(
                self.settings.registry_app_id, partitions=tps)
        except KafkaError as exc:
            log.warning("liveness: group offsets unavailable (%s)", exc)
            return 0
        committed = {tp: max(found[tp].offset, 0) if tp in found else 0 for tp in tps}
        stuck = sum(ends[tp] - c for tp, c in committed.items()
                    if ends.get(tp, 0) > c and self._last_committed.get(tp) == c)
        self._last_committed = committed
        return stuck

    # --- lender topic discovery ---------------------------------------------------------
    async def prepare(self) -> None:
        """Connect helpers and subscribe to the lender topics that exist now."""
        self._meta = AIOKafkaConsumer(**self.settings.kafka_client_options(),
                                      enable_auto_commit=False)
        await self._meta.start()
        self.barrier.bind(self._meta)
        await self.discover()

    async def close(self) -> None:
        if self._meta is not None:
            await self._meta.stop()
        if self._admin is not None:
            await self._admin.close()
        await self._redis.aclose()

    async def discover(self) -> bool:
        """Subscribe to the lender topics; a later change restarts the worker (see below)."""
        if self._meta is None:
            return False
        await self._meta._client.force_metadata_update()
        cluster = self._meta._client.cluster
        # a topic counts once every partition has a leader: subscribing to one created a
        # moment ago could let the group's assignment run without its partitions
        loans = sorted(
            n for n in cluster.topics()
            if re.match(self.topics.loans_pattern, n)
            and (parts := cluster.partitions_for_topic(n))
            and parts == cluster.available_partitions_for_topic(n)
        )
        if list(self.loans.topics) == loans:
            return False
        if self._subscribed:
            # faust-streaming's fetcher asserts ("Partition is not assigned") when a live
            # subscription changes, so a worker subscribes only at start: stop cleanly and let
            # run_worker start this process again. Uncommitted work is replayed and recognised.
            log.warning("new lender topics %s: restarting this worker to subscribe",
                        ", ".join(sorted(set(loans) - set(self.loans.topics))))
            self.restart_requested = True
            os.kill(os.getpid(), signal.SIGTERM)
            return True
        log.info("lender loan topics: %s", ", ".join(loans) or "(none yet)")
        self.loans.topics = loans
        self._subscribed = True
        return True

    def rejected_topic(self, lender_id: str) -> Any:
        topic = self._rejected.get(lender_id)
        if topic is None:
            topic = self._rejected[lender_id] = _raw_topic(
                self.app, self.topics.rejected(lender_id))
        return topic

    async def send_rejections(self, rejections: list[Rejection]) -> None:
        for rej in rejections:
            METRICS.events_rejected.inc(rej.lender_id, str(rej.reason))
            if rej.reason == "LENDER_MISMATCH":
                METRICS.security_lender_mismatch.inc(rej.lender_id)
            await self.rejected_topic(rej.lender_id).send(
                value=self._rejection_codec.encode(rej.to_avro()), partition=rej.source_partition)

    # --- agents -------------------------------------------------------------------------
    def _define_agents(self) -> None:
        app, settings = self.app, self.settings

        @app.agent(self.loans, name="admission")
        async def admission_agent(stream: Any) -> None:
            async for events in stream.take_events(settings.admission_batch, within=0.02):
                result = await self.admission.decide([_incoming(e) for e in events])
                self.last_progress = time.monotonic()
                for partition, admitted in result.admitted.items():
                    await self.admitted.send(
                        partition=partition,
                        value=self._admitted_codec.encode({"events": admitted}))
                for lender, n in result.events_in.items():
                    METRICS.events_in.inc(lender, amount=n)
                for lender, n in result.admitted_by_lender.items():
                    METRICS.events_admitted.inc(lender, amount=n)
                await self.send_rejections(result.rejections)

        @app.agent(self.admitted, name="aggregation")
        async def aggregation_agent(stream: Any) -> None:
            table, codec = self.table, self._state_codec
            async for event in stream.events():
                msg = event.message
                self.last_progress = time.monotonic()
                batch = self._admitted_codec.decode(msg.value)["events"]
                items, states, _, alerts = self.aggregator.process(
                    msg.partition, msg.offset, batch,
                    lambda b: codec.load(table.get(b.encode())),
                )
                await self.activity.send(
                    partition=msg.partition, value=self._activity_codec.encode({"items": items}))
                # sent before the state: a crash in between replays the batch, and the
                # duplicates then re-emit these alerts (same alert_id) if the state did land
                now_ms = int(time.time() * 1000)
                for alert in alerts:
                    await self.alerts.send(
                        key=alert.borrower.encode(), partition=msg.partition,
                        value=self._alert_codec.encode(alert.to_avro(now_ms)))
                    if not alert.reemitted:
                        METRICS.alerts.inc(alert.rule)
                for borrower, state in states.items():
                    table[borrower.encode()] = codec.dump(state)

        @app.timer(DISCOVERY_INTERVAL_S)
        async def discovery() -> None:
            await self.discover()

        @app.timer(LIVENESS_INTERVAL_S)
        async def liveness() -> None:
            """Recover when the agents stopped progressing with input waiting.

            A faust-streaming worker was seen to freeze for good after a restart (alive,
            partitions assigned, lag never moving): its per-partition bookkeeping (logged at
            the stall) showed the first records after the committed offset never acked. First
            remedy after 60 s: seek those partitions back to their committed offsets, so the
            records are delivered again. If that does not help within another 60 s, or lender
            partitions wait with the group's offsets standing still, re-exec this process (as
            abrupt as a crash, which the kill tests prove exact). Every step is replay-safe.
            Waiting on Redis counts as progress, so a Redis outage does not loop.
            """
            if app.rebalancing or app.in_recovery:  # restoring state is not a stall
                self._mark_progress()
                return
            now = time.monotonic()
            if self._reseeked_at is not None and self.last_progress > self._reseeked_at:
                self._reseeked_at = None  # the re-delivery got the stream going again
            if now - self.last_progress < STALL_RESTART_S:
                return
            consumer = app.consumer
            stuck: dict[Any, int] = {}
            for tp in consumer.assignment():
                highwater = consumer.highwater(tp)
                committed = consumer._committed_offset.get(tp)
                if highwater is not None and committed is not None and highwater > committed:
                    stuck[tp] = committed
            waiting = sum(consumer.highwater(tp) - c for tp, c in stuck.items())
            if stuck and self._reseeked_at is None:
                # First remedy: deliver again from the committed offsets. Seen on restarts:
                # the first records fetched were dropped from Faust's buffers when recovery
                # re-seeked, and their second delivery was skipped as already read, so they
                # were never acked and the commit stood still. A replay is recognised
                # downstream (dedup positions, seen-sets, replacing keys).
                log.error("stream made no progress for %.0fs with %d messages waiting: "
                          "delivering %d partitions again from their committed offsets; "
                          "consumer state: %s", time.monotonic() - self.last_progress, waiting,
                          len(stuck), _consumer_state(consumer))
                for tp, committed in stuck.items():
                    await consumer.seek(tp, committed)
                self._reseeked_at = now
                return
            if self._reseeked_at is not None and now - self._reseeked_at < STALL_RESTART_S:
                return  # give the re-delivery its time
            orphaned = await self._stuck_lender_partitions()
            if waiting or orphaned:
                log.error("stream made no progress for %.0fs with %d messages waiting on its "
                          "partitions and %d on lender partitions whose group offsets stand "
                          "still: restarting this worker",
                          time.monotonic() - self.last_progress, waiting, orphaned)
                log.error("consumer state at the stall: %s", _consumer_state(consumer))
                os.execv(sys.executable, [sys.executable, "-m", "streams.cli", *sys.argv[1:]])

        self._agents = (admission_agent, aggregation_agent, discovery, liveness)
