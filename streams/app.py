"""The Faust application: the stream agent on batch records, plus its services.

::

    lenders.<L>.loans   --[bulk intake, aiokafka getmany]--> registry.validated (by pseudonym)
                                                       \\-> lenders.<L>.rejected
    lenders.<L>.consent --[consent agent, own consumer]--> Redis intervals + consent audit
    registry.validated  --[borrowers agent + borrower-state table]--> registry.activity
                                                               \\-> registry.alerts
                                                               \\-> lenders.<L>.rejected

The ``borrowers`` agent handles up to ``TAKE_RECORDS`` batch records per iteration (each
hundreds to thousands of events of one partition): de-duplication, the consent barrier and
check (:mod:`streams.admission`), then the per-borrower event-time windows and velocity alerts
(:mod:`streams.aggregation`), each touched borrower's state written once per record, and the
outputs of the iteration awaited once. Faust's per-message cost (~80-170 µs of CPU, see the
README's Performance section) is thus paid per batch record, not per lender event; the lender
topics are read by bulk intake (:mod:`streams.intake`), which also picks up new lenders by
pattern without a restart.

Guarantees (at-least-once delivery made exact by idempotent steps): the agent awaits the
broker's acknowledgement of every output of an iteration (activity, alerts, rejections, state
changelog records) before Faust acknowledges its records, and Faust commits only offsets whose
records were acknowledged, none it skipped (:mod:`streams.kafka.faust_commits`), so every
output of a committed input exists. A crash between
output and commit replays the input; each step recognises its replays (dedup marks carry the
source position, day buckets remember event keys, rows are versioned), so replays never count
twice. Faust's windowed tables are not used: event-time state lives in one plain table whose
values this code owns (see :mod:`streams.buckets`).

Cancels (README, Corrections): the agent keeps, per partition, the index of borrowers holding
pending cancels in the same table (key ``~pending-cancels:<partition>``, written on that
partition like the states), so it survives restarts and moves with the partition; an expired
cancel that never met its event becomes a CANCEL_UNMATCHED notice on the lender's dead-letter
topic.

Erasure: a data subject's erasure arrives as a command on the borrower's partition of
``registry.validated`` (:mod:`consumers.api.erasure_routes` sends it). The agent that owns the
partition deletes the borrower's state (a tombstone in the changelog, so a restore finds
nothing) and forwards the command, in order, to the sink, which deletes the borrower's rows.
A replayed command finds nothing left to delete.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any

import faust

from schemas.calendar import HOUR_MS, Calendar
from schemas.codec import REJECTION, codec_for
from schemas.pseudonym import Pseudonymiser
from schemas.reasons import RejectReason
from schemas.records import Rejection, rejection
from schemas.validation import ValidationLimits
from streams.admission import Admission
from streams.aggregation import Aggregator, StateCodec, activity_record
from streams.alerts import ALERT_SCHEMA, AlertRules
from streams.buckets import BucketPolicy
from streams.consent.barrier import ConsentBarrier
from streams.consent.ingest import ConsentIngest
from streams.consent.store import ConsentStore
from streams.dedup import DedupStore
from streams.intake.service import VALIDATED_BATCH, count_rejections
from streams.intake.validate import Validator
from streams.kafka.faust_commits import commit_only_processed
from streams.kafka.faust_internals import (
    consumer_state,
    set_producer_buffer_limit,
    table_store_set,
)
from streams.kafka.topics import (
    STATE_TABLE,
    ReplicationPlan,
    faust_app_kwargs,
    faust_table_kwargs,
)
from streams.runtime.metrics import METRICS
from streams.runtime.redis_client import connect_redis
from streams.settings import Settings
from streams.state_cache import StateCache

log = logging.getLogger(__name__)

LIVENESS_INTERVAL_S = 5.0
#: records of ``registry.validated`` per agent iteration, and how long to wait for them
TAKE_RECORDS = 50
TAKE_WITHIN_S = 0.01
STALL_RESTART_S = 20.0
ACTIVITY_BATCH = "registry.internal.ActivityBatch"
PENDING_INDEX = "registry.internal.PendingCancelIndex"


def pending_index_key(partition: int) -> bytes:
    """The table key of a partition's pending-cancel index (never a pseudonym: hex only)."""
    return b"~pending-cancels:%d" % partition


def _raw_topic(app: faust.App, *names: str, partitions: int | None = None) -> Any:
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=partitions)


class RegistryStreams:
    """Builds the Faust app with its agent; :meth:`prepare` must run before the worker."""

    def __init__(self, settings: Settings, replication: ReplicationPlan | None = None) -> None:
        """``replication``: the topic replication plan (:func:`replication_plan_sync`); None
        means one replica (unit tests without a broker)."""
        self.settings = settings
        topics = settings.topics
        replication = replication or ReplicationPlan(factor=1, min_insync=1, brokers=1)
        self.topics = topics
        faust_dir = settings.registry_data_dir / "faust"
        faust_dir.mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            settings.registry_app_id,
            broker=[f"kafka://{h}" for h in settings.kafka_bootstrap.split(",")],
            broker_credentials=settings.faust_broker_credentials(),
            store="memory://",
            datadir=str(faust_dir),
            topic_partitions=settings.registry_partitions,
            **faust_app_kwargs(replication),
            web_enabled=False,
            autodiscover=False,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            producer_linger_ms=5,
            producer_max_request_size=8 * 1024 * 1024,
            broker_commit_interval=0.5,
            broker_max_poll_records=50,
            stream_buffer_maxsize=64,
            table_cleanup_interval=3600.0,
            consumer_metadata_max_age_ms=5000,
            # a crashed member's partitions move after 15 s, not Faust's default 60 s
            broker_session_timeout=15.0,
            broker_heartbeat_interval=3.0,
            # uncommitted work is replayed after a restart (and recognised), so shutdown and
            # rebalances need not wait for buffers to drain
            stream_wait_empty=False,
        )
        # State writes bypass Faust's buffered changelog path (see _write_state); this buffer
        # only carries what Faust itself sends. It throttles the consumer above 100 pending
        # writes, which was seen to stall a worker for good after a restart: keep it large.
        set_producer_buffer_limit(self.app.producer, 50_000)
        self._start_of = commit_only_processed(self.app.consumer)
        self.validated = _raw_topic(self.app, topics.validated)
        # key_type/value_type, not only the schema, pick the serializers that changelog
        # recovery decodes with (faust falls back to JSON, so a restart would never recover)
        self.table = self.app.Table(
            STATE_TABLE, partitions=settings.registry_partitions,
            key_type=bytes, value_type=bytes, **faust_table_kwargs(replication),
            schema=faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw",
                                value_serializer="raw"),
        )
        self._changelog = self.table.changelog_topic.get_topic_name()
        self._redis = connect_redis(settings)
        #: liveness: per partition (committed offset, since when, when re-delivered or None)
        self._commits: dict[Any, tuple[int, float, float | None]] = {}
        #: monotonic time of the last fail-closed wait (Redis down, consent agent behind)
        self.last_wait = -1e9
        self._validated_codec = codec_for(VALIDATED_BATCH)
        self._activity_codec = codec_for(ACTIVITY_BATCH)
        self._alert_codec = codec_for(ALERT_SCHEMA)
        self._rejection_codec = codec_for(REJECTION)
        self._state_codec = StateCodec()
        self._index_codec = codec_for(PENDING_INDEX)
        #: per partition: (the table value last read or written, its decoded index)
        self._indexes: dict[int, tuple[bytes | None, dict[str, int]]] = {}
        self.state_cache = StateCache(settings.state_cache_borrowers)
        pseudonymise = Pseudonymiser(settings.pseudonym_key_bytes)
        limits = ValidationLimits.from_settings(settings)
        consent_store = ConsentStore(self._redis, settings.redis_prefix)
        self.barrier = ConsentBarrier(consent_store, topics)
        self.dedup = DedupStore(self._redis, settings.redis_prefix, settings.dedup_ttl_days)
        self.validator = Validator(
            topics=topics, limits=limits, max_record_bytes=settings.max_record_bytes,
            partitions=settings.registry_partitions, pseudonymise=pseudonymise)
        self.consent_store = consent_store
        self.admission = Admission(dedup=self.dedup,
                                   dedup_enabled=not settings.faults.disable_dedup)
        self.consent_ingest = ConsentIngest(
            topics=topics, limits=limits, partitions=settings.registry_partitions,
            pseudonymise=pseudonymise, store=consent_store,
        )
        self.aggregator = Aggregator(
            BucketPolicy(Calendar(settings.tz), settings.grace_hours * HOUR_MS,
                         settings.hourly_state_hours * HOUR_MS,
                         dedup=not settings.faults.disable_dedup),
            AlertRules.standard(settings.alert_draws_24h, settings.alert_lenders_7d,
                                settings.grace_hours * HOUR_MS),
            pending_ms=settings.dedup_ttl_days * 24 * HOUR_MS,
        )
        # fail-closed waits (Redis down, consent agent behind) are not stalls
        self.admission.on_wait = self.barrier.on_wait = self.mark_wait
        self._define_agents()

    def mark_wait(self) -> None:
        self.last_wait = time.monotonic()

    async def prepare(self, metadata_consumer: Any) -> None:
        """Bind the consent barrier to a started, group-less aiokafka consumer."""
        self.barrier.bind(metadata_consumer)

    async def close(self) -> None:
        await self._redis.aclose()

    async def _produce(self, sent: list[Any], topic: str, value: bytes | None, partition: int,
                       key: bytes | None = None) -> None:
        """Queue one record on Faust's own producer, below Faust's per-message topic path
        (which cost ~13% of the agent's CPU for rejections alone in a py-spy profile).

        Faust flushes this producer before it commits the source offsets; ``sent`` collects
        the delivery futures so the agent can also await them (a failed delivery then fails
        the iteration instead of being committed over)."""
        sent.append(await self.app.producer.send(topic, key, value, partition, None, None))

    async def _write_state(self, sent: list[Any], key: bytes, raw: bytes | None,
                           partition: int) -> None:
        """Write (``raw``) or delete (None: a tombstone) one borrower's state: the changelog
        record on the producer, the value in the table's store.

        Faust's own path (``table[key] = raw``) queues each changelog record in its producer
        buffer and sends it through its per-message topic path, one at a time when it commits:
        one write per touched borrower made the commit take 5-13 s with a 100k-record backlog
        (``Timer commit is overlapping``), the agent's offsets lagging that much. Here the
        record goes straight to the producer, to the partition Faust itself would use (the
        batch record's: key and record share the partition), and its delivery future joins
        ``sent`` (awaited before the record is acknowledged). Recovery reads the changelog as
        usual, whoever wrote it."""
        await self._produce(sent, self._changelog, raw, partition, key=key)
        table_store_set(self.table, key, raw, partition)

    async def _send_rejections(self, sent: list[Any], rejections: list[Rejection]) -> None:
        codec, topics = self._rejection_codec, self.topics
        for rej in rejections:
            await self._produce(sent, topics.rejected(rej.lender_id),
                                codec.encode(rej.to_avro()), rej.source_partition)
        count_rejections(rejections)

    def _pending_index(self, partition: int) -> dict[str, int]:
        """The partition's pending-cancel index (borrower -> earliest expiry), decoded once
        per table value (the same identity rule as :class:`StateCache`)."""
        raw = self.table.get(pending_index_key(partition))
        cached = self._indexes.get(partition)
        if cached is not None and cached[0] is raw:
            return cached[1]
        index = {} if raw is None else {e["borrower"]: e["expires_at_ms"] for e in
                                        self._index_codec.decode(raw)["entries"]}
        self._indexes[partition] = (raw, index)
        return index

    async def _store_pending_index(self, sent: list[Any], partition: int,
                                   index: dict[str, int]) -> None:
        raw = self._index_codec.encode({"entries": [
            {"borrower": b, "expires_at_ms": at} for b, at in sorted(index.items())]})
        await self._write_state(sent, pending_index_key(partition), raw, partition)
        self._indexes[partition] = (raw, index)

    async def _erase(self, sent: list[Any], partition: int, command: dict[str, Any]) -> None:
        """Delete a borrower's state (tombstone) and forward the erasure to the sink; returns
        once everything in ``sent`` (this command's sends included) is acknowledged."""
        key = command["borrower"].encode()
        self.state_cache.forget(key)
        if self.table.get(key) is not None:
            await self._write_state(sent, key, None, partition)
        index = dict(self._pending_index(partition))
        if index.pop(command["borrower"], None) is not None:
            await self._store_pending_index(sent, partition, index)
        erase = {"borrower": command["borrower"], "request_id": command["request_id"],
                 "institution": command["institution"],
                 "requested_at_ms": command["requested_at_ms"]}
        await self._produce(sent, self.topics.activity, self._activity_codec.encode(
            activity_record([], [], [], [erase])), partition)
        await asyncio.gather(*sent)
        log.info("erasure %s: stream state of partition %d deleted", command["request_id"],
                 partition)

    async def _process(self, msg: Any, sent: list[Any]) -> None:
        """One batch record of ``registry.validated``: an erasure command, or events to decide
        (de-duplication, consent), aggregate, and send on (activity, alerts, rejections), each
        touched borrower's state written once. The delivery futures of the sends join
        ``sent``; the caller awaits them before the record is acknowledged. Raises on any
        failure (see the agent)."""
        table, codec, cache = self.table, self._state_codec, self.state_cache
        activity, alerts_topic = self.topics.activity, self.topics.alerts
        record = self._validated_codec.decode(msg.value)
        if record["erase"] is not None:
            await self._erase(sent, msg.partition, record["erase"])
            return
        decided = await self.admission.decide(record["events"])
        await self._send_rejections(sent, decided.rejections)
        for lender, n in decided.admitted_by_lender.items():
            METRICS.events_admitted.inc(lender, amount=n)
        if decided.admitted:
            # a copy: the table keeps the old index until the new one is written
            index = dict(self._pending_index(msg.partition))
            activity_out, states, alerts, unmatched, index_changed = self.aggregator.process(
                msg.partition, msg.offset, [ev for _, ev in decided.admitted],
                lambda b: cache.load(b.encode(), table.get(b.encode()), codec.load),
                indices=[i for i, _ in decided.admitted], pending_index=index,
            )
            await self._produce(sent, activity, self._activity_codec.encode(
                activity_out), msg.partition)
            # sent before the state: a crash in between replays the batch, and the
            # duplicates then re-emit these alerts (same alert_id) if the state landed
            now_ms = int(time.time() * 1000)
            for alert in alerts:
                await self._produce(sent, alerts_topic, self._alert_codec.encode(
                    alert.to_avro(now_ms)), msg.partition, key=alert.borrower.encode())
                if not alert.reemitted:
                    METRICS.alerts.inc(alert.rule)
            for borrower, state in states.items():
                key, raw = borrower.encode(), codec.dump(state)
                await self._write_state(sent, key, raw, msg.partition)
                cache.store(key, raw, state)
            if index_changed:
                await self._store_pending_index(sent, msg.partition, index)
            if unmatched:
                await self._send_rejections(sent, [rejection(
                    c.source_topic, c.source_partition, c.source_offset, c.lender_id,
                    RejectReason.CANCEL_UNMATCHED,
                    "cancels_event_id: no such event of this lender and borrower arrived "
                    "within the de-duplication horizon", c.event_id, now_ms)
                    for c in unmatched])

    # --- agents -------------------------------------------------------------------------
    def _define_agents(self) -> None:
        app = self.app

        @app.agent(self.validated, name="borrowers")
        async def borrowers_agent(stream: Any) -> None:
            # Several records per iteration, their outputs awaited once: one broker round
            # trip (acks=all) per record made the agent fall behind a live 1,000 events/s
            # (records of ~30 events each). Faust acks the records after the iteration.
            async for events in stream.take_events(TAKE_RECORDS, within=TAKE_WITHIN_S):
                sent: list[Any] = []
                message = None
                try:
                    for event in events:
                        message = event.message
                        await self._process(message, sent)
                    await asyncio.gather(*sent)
                except asyncio.CancelledError:
                    raise
                except BaseException:
                    # Faust would restart the agent and go on with the NEXT records, leaving
                    # these half applied (states of some borrowers written, others not).
                    # Die instead, before the records are acked: the restart replays them,
                    # and every step recognises what already landed (as after a SIGKILL).
                    log.exception("the borrowers agent failed at %s: exiting so that the "
                                  "records are replayed", None if message is None else
                                  f"{message.topic}[{message.partition}]@{message.offset}")
                    logging.shutdown()
                    os._exit(70)

        @app.timer(LIVENESS_INTERVAL_S)
        async def liveness() -> None:
            """Recover a partition of ``registry.validated`` whose commit stands still while
            records wait on it.

            Two faust-streaming faults were seen to leave a record delivered but never acked,
            which freezes that partition's commit for good while the agent goes on with the
            others: after a rebalance, records skipped when recovery re-seeked (the stall log
            showed ``committed=19`` with acks from 27); and an agent iteration that raised
            (Faust restarts the agent and continues with the NEXT record). So each partition
            is watched on its own: after ``STALL_RESTART_S`` without a commit while its
            highwater is ahead, it is sought back to its committed offset and the records are
            delivered again (every step is replay-safe). If the same partition is still stuck
            ``STALL_RESTART_S`` after that, the process re-executes itself (as abrupt as a
            crash, which the kill tests prove exact). Waits on Redis or on the consent agent
            (fail closed) and rebalances are not stalls.
            """
            now = time.monotonic()
            watched = self._commits
            # while some partition commits, a partition that does not is stuck whatever the
            # agent waits on; when none does and the agent waits on a store, that is the
            # outage being ridden out (fail closed), not a stall
            idle = all(now - since >= STALL_RESTART_S for _, since, _ in watched.values())
            if (app.rebalancing or app.in_recovery
                    or (idle and now - self.last_wait < STALL_RESTART_S)):
                watched.clear()
                return
            consumer = app.consumer
            topic = self.topics.validated
            for tp in consumer.assignment():
                if tp.topic != topic:
                    continue
                highwater = consumer.highwater(tp)
                committed = self._start_of(tp)
                if committed is None:
                    continue  # its start is being asked of the broker
                seen = watched.get(tp)
                if highwater is None or highwater <= committed:
                    watched.pop(tp, None)
                    continue
                if seen is None or seen[0] != committed:
                    watched[tp] = (committed, now, None)
                    continue
                _, since, reseeked_at = seen
                if reseeked_at is None and now - since >= STALL_RESTART_S:
                    log.error("%s[%d]: no commit for %.0fs with %d records waiting: "
                              "delivering them again from offset %d; consumer state: %s",
                              tp.topic, tp.partition, now - since, highwater - committed,
                              committed, consumer_state(consumer))
                    await consumer.seek(tp, committed)
                    watched[tp] = (committed, since, now)
                elif reseeked_at is not None and now - reseeked_at >= STALL_RESTART_S:
                    log.error("%s[%d]: still no commit %.0fs after a re-delivery: restarting "
                              "this worker; consumer state: %s", tp.topic, tp.partition,
                              now - reseeked_at, consumer_state(consumer))
                    os.execv(sys.executable, [sys.executable, "-m", "streams.cli",
                                              *sys.argv[1:]])

        self._agents = (borrowers_agent, liveness)
