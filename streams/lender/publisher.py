"""The lender publisher: loan events and consent records onto the lender's own topics.

Guarantees (``acks=all`` + idempotence, both enforced here):

* A send counts as acknowledged only once every in-sync replica of the partition has it, so an
  acknowledged event survives the loss of any single broker (given ``min.insync.replicas`` of 2
  on a replicated cluster; on a single local broker, the broker's disk).
* Producer retries never duplicate or reorder a record within a partition: the broker discards
  re-sent batches by producer id and sequence number. Records are keyed by the raw borrower id,
  so all events of one borrower keep their order in one partition.
* Nothing is dropped silently: a failed delivery makes :meth:`flush` (and every later send)
  raise :class:`PublishError`. Re-sending after a failure is the caller's choice; the registry
  de-duplicates by ``(lender_id, event_id)``, so re-sending is always safe.

Not guaranteed: exactly-once across publisher restarts (a restarted process gets a new producer
id; resends are caught by the registry's de-duplication instead), nor order across borrowers.

Costs: every acknowledgement waits for replication (a few ms per batch), and at most five
batches per broker are in flight. Throughput comes from batching (``linger_ms``, large
batches, compression) and from not awaiting each send; back-pressure: once
``publisher_max_in_flight`` records are unacknowledged, a send waits until half of them are.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.partitioner import murmur2

from schemas.codec import CONSENT_RECORD, codec_for
from schemas.fast_encode import encode_loan_event
from schemas.records import ConsentRecord, LoanEvent
from schemas.topics import check_lender_id
from streams.settings import Settings

#: Bytes per partition batch. aiokafka keeps one batch per partition in flight, so moderate
#: batches pipeline better than huge ones: measured 32-64 KB > 128 KB > 512 KB on a local broker
#: (bench/publisher_throughput.py).
MAX_BATCH_BYTES = 64 * 1024
MAX_REQUEST_BYTES = 4 * 1024 * 1024
#: Remembered key hashes (one per active borrower) before the memo starts over.
_HASH_MEMO_SIZE = 1_000_000


class PublisherError(RuntimeError):
    """Base of the publisher's errors."""


class UnsafePublisherSettings(PublisherError):
    """The publisher was asked to run without acks=all or without idempotence."""


class WrongLender(PublisherError):
    """A record names another lender than the one this publisher publishes as."""


class PublisherUnavailable(PublisherError):
    """The producer could not connect to any broker."""


class PublishError(PublisherError):
    """A record was not acknowledged by the broker."""

    def __init__(self, message: str, *, topic: str | None = None) -> None:
        super().__init__(message)
        self.topic = topic


class LenderPublisher:
    """Publishes as exactly one lender; use as ``async with LenderPublisher(s, "jd-baitiao")``.

    ``producer_options`` override the producer configuration (tests, benchmarks); the safety
    check runs on the final options, so an override cannot weaken durability.
    """

    def __init__(
        self,
        settings: Settings,
        lender_id: str,
        *,
        producer_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.lender_id = check_lender_id(lender_id)
        self.loans_topic = settings.topics.loans(lender_id)
        self.consent_topic = settings.topics.consent(lender_id)
        self._options = self._producer_options(settings, producer_options or {})
        self._consent_codec = codec_for(CONSENT_RECORD)
        self._max_in_flight = settings.publisher_max_in_flight
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._error: PublishError | None = None
        self._producer: AIOKafkaProducer | None = None
        self._partition_counts: dict[str, int] = {}
        self._key_hashes: dict[bytes, int] = {}
        #: Records handed to the producer.
        self.sent = 0
        self._acked = 0

    @staticmethod
    def _producer_options(settings: Settings, overrides: Mapping[str, Any]) -> dict[str, Any]:
        compression = settings.publisher_compression
        options: dict[str, Any] = {
            **settings.kafka_client_options(),
            "acks": settings.publisher_acks,
            "enable_idempotence": settings.publisher_idempotence,
            "compression_type": None if compression == "none" else compression,
            "linger_ms": settings.publisher_linger_ms,
            "max_batch_size": MAX_BATCH_BYTES,
            "max_request_size": MAX_REQUEST_BYTES,
            "client_id": f"registry-publisher-{settings.kafka_namespace}",
        }
        options.update(overrides)
        if options["acks"] not in ("all", -1):
            raise UnsafePublisherSettings(
                f"acks={options['acks']!r}: a lender publisher must use acks=all, otherwise an "
                "acknowledged loan event can be lost with its leader"
            )
        if not options["enable_idempotence"]:
            raise UnsafePublisherSettings(
                "idempotence off: producer retries could duplicate or reorder loan events"
            )
        return options

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        try:
            producer = AIOKafkaProducer(**self._options)
        except RuntimeError as exc:  # aiokafka: "Compression library for lz4 not found"
            raise PublisherError(
                f"{exc}: aiokafka compresses with the cramjam package (pip install cramjam), "
                "or set PUBLISHER_COMPRESSION=none"
            ) from exc
        try:
            await producer.start()
        except KafkaConnectionError as exc:
            await producer.stop()
            raise PublisherUnavailable(
                f"no Kafka broker reachable at {self.settings.kafka_bootstrap} (KAFKA_BOOTSTRAP)"
            ) from exc
        self._producer = producer

    async def stop(self) -> None:
        """Flush, then close. Raises PublishError if something was not acknowledged."""
        if self._producer is None:
            return
        try:
            await self.flush()
        finally:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.stop()
            return
        # Already failing: close without masking the original error.
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    # --- sending -------------------------------------------------------------------------
    async def publish_event(self, ev: LoanEvent) -> None:
        """Queue one loan event for ``lenders.<me>.loans``; returns once buffered, not acked."""
        if ev.lender_id != self.lender_id:
            raise WrongLender(
                f"event {ev.event_id!r} names lender {ev.lender_id!r}; this publisher is "
                f"{self.lender_id!r}"
            )
        # Hand-written v1 encoder (~4x faster than the codec); it falls back to
        # codec_for(LOAN_EVENT) by itself once the current schema is not v1.
        value = encode_loan_event(ev)
        await self.send_raw(self.loans_topic, ev.borrower_id.encode(), value)

    async def publish_consent(self, rec: ConsentRecord) -> None:
        """Queue one consent record for ``lenders.<me>.consent``."""
        if rec.lender_id != self.lender_id:
            raise WrongLender(
                f"consent record names lender {rec.lender_id!r}; this publisher is "
                f"{self.lender_id!r}"
            )
        value = self._consent_codec.encode(rec.to_avro())
        await self.send_raw(self.consent_topic, rec.borrower_id.encode(), value)

    async def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue pre-encoded bytes, unchecked. Waits while the in-flight bound is reached."""
        producer = self._producer
        if producer is None:
            raise PublisherError("publisher is not started")
        if self._error is not None:
            raise self._error
        pending = self._pending
        if len(pending) >= self._max_in_flight:
            await self._drain(self._max_in_flight // 2)  # back-pressure
            if self._error is not None:
                raise self._error
        if key is None:
            partition = None
        else:
            count = self._partition_counts.get(topic) or await self._partition_count(topic)
            hashed = self._key_hashes.get(key)
            if hashed is None:
                hashed = self._hash_key(key)
            partition = hashed % count
        try:
            future = await producer.send(topic, value=value, key=key, partition=partition)
        except KafkaError as exc:
            raise PublishError(f"cannot send to {topic}: {exc!r}", topic=topic) from exc
        self.sent += 1
        pending.append(future)
        if not self.sent & 0x3FF:
            self._harvest()

    # Partitioning is Kafka's default (murmur2 of the key modulo the partition count), computed
    # here with the hash memoised per key and the count per topic: aiokafka's pure-Python
    # murmur2 and per-send partition lookups otherwise cost a third of the send path. The count
    # is read once per publisher; partitions added later are used after a restart.
    async def _partition_count(self, topic: str) -> int:
        assert self._producer is not None
        try:
            count = len(await self._producer.partitions_for(topic))
        except KafkaError as exc:
            raise PublishError(f"no metadata for {topic}: {exc!r}", topic=topic) from exc
        self._partition_counts[topic] = count
        return count

    def _hash_key(self, key: bytes) -> int:
        if len(self._key_hashes) >= _HASH_MEMO_SIZE:
            self._key_hashes.clear()
        hashed = self._key_hashes[key] = murmur2(key) & 0x7FFFFFFF
        return hashed

    # In-flight window: a FIFO of delivery futures without per-record callbacks (a callback per
    # record would schedule one event-loop handle per acknowledgement). Completed futures are
    # harvested from the front; a full window waits for the oldest ones.
    def _harvest(self) -> None:
        pending = self._pending
        while pending and pending[0].done():
            self._settle(pending.popleft())

    def _settle(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            exc: BaseException | None = asyncio.CancelledError("send cancelled")
        else:
            exc = future.exception()
        if exc is None:
            self._acked += 1
        elif self._error is None:
            error = PublishError(f"delivery failed: {exc!r}")
            error.__cause__ = exc
            self._error = error

    async def _drain(self, target: int) -> None:
        """Wait until at most ``target`` sends are unacknowledged."""
        pending = self._pending
        self._harvest()
        while len(pending) > target:
            await asyncio.wait((pending[0],))
            self._harvest()

    async def flush(self) -> None:
        """Wait for every outstanding acknowledgement; raise the first delivery error."""
        await self._drain(0)
        if self._error is not None:
            raise self._error

    @property
    def acked(self) -> int:
        """Records acknowledged by the broker (counted in send order)."""
        self._harvest()
        return self._acked

    @property
    def in_flight(self) -> int:
        """Records sent and not yet known to be acknowledged."""
        self._harvest()
        return len(self._pending)
