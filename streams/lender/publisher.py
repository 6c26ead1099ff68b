"""The lender publisher: loan events and consent records onto the lender's own topics.

Guarantees (``acks=all`` + idempotence, both enforced here):

* A send counts as acknowledged only once every in-sync replica of the partition has it, so an
  acknowledged event survives the loss of any single broker (given ``min.insync.replicas`` of 2
  on a replicated cluster; on a single local broker, the broker's disk).
* Producer retries never duplicate or reorder a record within a partition: the broker discards
  re-sent batches by producer id and sequence number. Records are keyed by the raw borrower id,
  so all events of one borrower keep their order in one partition.
* Nothing is dropped silently: a failed delivery makes :meth:`flush` (and every later send)
  raise :class:`PublishError`, naming how many records of which partition were not delivered.
  Re-sending after a failure is the caller's choice; the registry de-duplicates by
  ``(lender_id, event_id)``, so re-sending is always safe.

Not guaranteed: exactly-once across publisher restarts (a restarted process gets a new producer
id; resends are caught by the registry's de-duplication instead), nor order across borrowers.

How records travel: the publisher builds the record batches itself, one open batch per
partition (aiokafka's ``create_batch()``/``send_batch()``), instead of one ``send()`` and one
delivery future per record. A batch goes to the producer when it is full (``max_batch_size``),
``linger_ms`` after its first record, or on :meth:`flush`; the producer then delivers it exactly
as one of its own batches (same idempotent sequence numbers, retries and acks=all). Delivery is
confirmed per batch, i.e. for every record of it; a failed batch fails all of its records.
Batches of one partition are handed over in the order they were filled, and aiokafka sends at
most one request per broker at a time, so the order of a key's records is the order of the
sends. The partition is Kafka's default for the key (murmur2 modulo the partition count, the
same as aiokafka's ``DefaultPartitioner`` and the Java client), computed here.

Costs: every acknowledgement waits for replication (a few ms per batch), and one produce
request per broker is in flight. Throughput comes from batching (large batches, compression)
and from not awaiting each send; back-pressure: a send waits while its partition already has a
full batch queued in the producer, and once ``publisher_max_in_flight`` records are
unacknowledged, a send waits until half of them are. Own batches about halved the publisher's
CPU per event against one send() per record (bench/publisher_throughput.py, 200k events, lz4,
2-core VM shared with the broker; aiokafka's lz4 is LZ4-HC level 9 at about 3.5 µs per event,
zstd about 0.5 µs). Its events/s are not quoted here: the quoted benchmark run
(bench/results/latest.*) does not include the publisher alone.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, MessageSizeTooLargeError
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from schemas.codec import CONSENT_RECORD, codec_for
from schemas.fast_encode import encode_loan_event
from schemas.records import ConsentRecord, LoanEvent
from schemas.topics import check_lender_id
from streams.lender.errors import (
    PublisherError,
    PublishError,
    PublisherUnavailable,
    UnsafePublisherSettings,
    WrongLender,
)
from streams.settings import Settings

#: Bytes per partition batch (before compression). With the publisher's own batching, 32 KB to
#: 1 MB measured alike on a local broker (bench/publisher_throughput.py --batch-kb); batches
#: rarely fill anyway: over 6 partitions, linger_ms ends most of them first.
MAX_BATCH_BYTES = 64 * 1024
MAX_REQUEST_BYTES = 4 * 1024 * 1024
#: Remembered key hashes (one per active borrower) before the memo starts over.
_HASH_MEMO_SIZE = 1_000_000
#: Records whose key + value are shorter than this cannot exceed MAX_REQUEST_BYTES with the
#: batch and record framing, so only longer ones pay for an exact size estimate.
_FRAMING_BYTES = 1024
_NO_HEADERS: list[tuple[str, bytes]] = []  # never mutated: the batch builder only reads it


# --- partitioning ------------------------------------------------------------------------------
_MASK = 0xFFFFFFFF
_M = 0x5BD1E995
_WORDS = tuple(struct.Struct(f"<{n}I") for n in range(65))  # keys up to 259 bytes


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``) as an unsigned int.

    Same result as ``aiokafka.partitioner.murmur2`` (pinned by
    tests/unit/streams/lender/test_publisher.py), about 1.8x faster: whole 32-bit words are
    unpacked at once instead of byte by byte.
    """
    length = len(data)
    h = 0x9747B28C ^ length
    words = length >> 2
    unpack = (_WORDS[words] if words < len(_WORDS) else struct.Struct(f"<{words}I")).unpack_from
    for k in unpack(data):
        k = (k * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & ~3
    extra = length & 3
    if extra:
        if extra == 3:
            h ^= data[tail + 2] << 16
        if extra >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class _Topic:
    """Per-topic send state: partition count, the open batch of each partition, hand-over locks."""

    __slots__ = ("count", "locks", "name", "open", "opened")

    def __init__(self, name: str, count: int) -> None:
        self.name = name
        self.count = count
        self.open: list[BatchBuilder | None] = [None] * count
        self.opened = [0.0] * count  # monotonic time of each open batch's first record
        self.locks = [asyncio.Lock() for _ in range(count)]


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
        self._linger = self._options["linger_ms"] / 1000
        self._size_check_from = self._options["max_request_size"] - _FRAMING_BYTES
        #: Handed-over batches in hand-over order: (delivery future, records, topic, partition).
        self._pending: deque[tuple[asyncio.Future[Any], int, str, int]] = deque()
        self._error: PublishError | None = None
        self._producer: AIOKafkaProducer | None = None
        self._topics: dict[str, _Topic] = {}
        self._key_hashes: dict[bytes, int] = {}
        self._linger_task: asyncio.Task[None] | None = None
        self._handing_over: set[asyncio.Task[None]] = set()
        #: Records accepted by a send (buffered, handed over, or settled).
        self.sent = 0
        #: Records known not to be delivered (their batch failed or could not be handed over).
        self.failed = 0
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
            await self._close()

    async def _close(self) -> None:
        producer, self._producer = self._producer, None
        task, self._linger_task = self._linger_task, None
        if task is not None:
            task.cancel()
        for state in self._topics.values():  # only after an error: flush hands over all
            for partition, builder in enumerate(state.open):
                if builder is not None and builder.record_count():
                    self._fail(
                        builder.record_count(),
                        state.name,
                        partition,
                        PublisherError("publisher closed after an error"),
                    )
        self._topics.clear()
        for handing in list(self._handing_over):
            handing.cancel()
        if producer is not None:
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
        await self._close()

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
        """Queue pre-encoded bytes, unchecked. Waits while the in-flight bound is reached.

        Raises PublishError for a record too large to send (nothing queued) and, once any
        delivery failed, for every later send.
        """
        if self._error is not None:
            raise self._error
        state = self._topics.get(topic) or await self._topic(topic)
        if self.sent - self._acked - self.failed >= self._max_in_flight:
            await self._drain(self._max_in_flight // 2)  # back-pressure
            if self._error is not None:
                raise self._error
        if len(value) >= self._size_check_from:
            self._check_size(topic, key, value)
        if key is None:
            partition = random.randrange(state.count)
        else:
            hashed = self._key_hashes.get(key)
            if hashed is None:
                hashed = self._hash_key(key)
            partition = hashed % state.count
        builder = state.open[partition] or self._open_batch(state, partition)
        while builder.append(timestamp=None, key=key, value=value, headers=_NO_HEADERS) is None:
            # Full (the builder closed itself): hand it over, waiting while the partition
            # already has a full batch queued in the producer; then start the next one.
            task = self._hand_over(state, partition)
            if task is not None:
                await asyncio.shield(task)
            if self._error is not None:
                raise self._error
            builder = state.open[partition] or self._open_batch(state, partition)
        self.sent += 1

    def _check_size(self, topic: str, key: bytes | None, value: bytes) -> None:
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, _NO_HEADERS)
        if size > self._options["max_request_size"]:
            exc = MessageSizeTooLargeError(
                f"the record is {size} bytes with framing, more than max_request_size"
            )
            raise PublishError(f"cannot send to {topic}: {exc!r}", topic=topic) from exc

    # Partitioning is Kafka's default (murmur2 of the key modulo the partition count), computed
    # here with the hash memoised per key and the count per topic. The count is read once per
    # publisher; partitions added later are used after a restart.
    async def _topic(self, topic: str) -> _Topic:
        producer = self._producer
        if producer is None:
            raise PublisherError("publisher is not started")
        try:
            partitions = await producer.partitions_for(topic)
        except KafkaError as exc:
            raise PublishError(f"no metadata for {topic}: {exc!r}", topic=topic) from exc
        # Partition ids are 0..count-1; DefaultPartitioner indexes the sorted list of them.
        assert sorted(partitions) == list(range(len(partitions))), partitions
        return self._topics.setdefault(topic, _Topic(topic, len(partitions)))

    def _hash_key(self, key: bytes) -> int:
        if len(self._key_hashes) >= _HASH_MEMO_SIZE:
            self._key_hashes.clear()
        hashed = self._key_hashes[key] = murmur2(key) & 0x7FFFFFFF
        return hashed

    # --- batches -------------------------------------------------------------------------
    def _open_batch(self, state: _Topic, partition: int) -> BatchBuilder:
        producer = self._producer
        if producer is None:
            raise PublisherError("publisher is not started")
        builder = state.open[partition] = producer.create_batch()
        state.opened[partition] = time.monotonic()
        if self._linger_task is None:
            self._linger_task = asyncio.get_running_loop().create_task(self._linger_loop())
        return builder

    def _hand_over(
        self, state: _Topic, partition: int, builder: BatchBuilder | None = None
    ) -> asyncio.Task[None] | None:
        """Start giving the open batch of ``partition`` (if it is still ``builder``) to the
        producer; the returned task ends once the producer has queued it.

        The hand-over is a task of its own so that a caller cancelled while waiting for it
        cannot strand a batch of records that earlier sends accepted. Hand-overs of one
        partition queue on its lock, so batches reach the producer in the order they filled.
        """
        open_builder = state.open[partition]
        if open_builder is None or (builder is not None and open_builder is not builder):
            return None
        state.open[partition] = None
        if not open_builder.record_count():  # its only append raised (e.g. a str key)
            return None
        open_builder.close()  # a closed batch is sent without lingering in the producer again
        task = asyncio.get_running_loop().create_task(self._deliver(state, partition, open_builder))
        self._handing_over.add(task)
        task.add_done_callback(self._handing_over.discard)
        return task

    async def _deliver(self, state: _Topic, partition: int, builder: BatchBuilder) -> None:
        records = builder.record_count()
        try:
            async with state.locks[partition]:
                producer = self._producer
                if producer is None:
                    raise PublisherError("publisher stopped before the batch was handed over")
                future = await producer.send_batch(builder, state.name, partition=partition)
        except Exception as exc:  # never raised: the records are reported as failed instead
            self._fail(records, state.name, partition, exc)
            return
        except BaseException as exc:  # cancelled by _close: reported too
            self._fail(records, state.name, partition, exc)
            raise
        self._pending.append((future, records, state.name, partition))

    def _hand_over_all(self) -> list[asyncio.Task[None]]:
        tasks = []
        for state in self._topics.values():
            for partition in range(state.count):
                task = self._hand_over(state, partition)
                if task is not None:
                    tasks.append(task)
        return tasks

    async def _linger_loop(self) -> None:
        """Hands over each open batch ``linger_ms`` after its first record; ends when none is."""
        try:
            while True:
                now = time.monotonic()
                soonest: float | None = None
                for state in self._topics.values():
                    for partition, builder in enumerate(state.open):
                        if builder is None:
                            continue
                        at = state.opened[partition] + self._linger
                        if at <= now:
                            self._hand_over(state, partition, builder)
                        elif soonest is None or at < soonest:
                            soonest = at
                if soonest is None:
                    self._linger_task = None  # no await since the scan: _open_batch restarts us
                    return
                await asyncio.sleep(soonest - now)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug here must not leave records unreported
            if self._error is None:
                self._error = PublishError(f"publisher linger loop failed: {exc!r}")
                self._error.__cause__ = exc
            self._linger_task = None
            raise

    # --- acknowledgements ----------------------------------------------------------------
    # In-flight window: a FIFO of per-batch delivery futures without callbacks. Completed ones
    # are harvested from the front; a full window waits for the oldest.
    def _harvest(self) -> None:
        pending = self._pending
        while pending and pending[0][0].done():
            future, records, topic, partition = pending.popleft()
            if future.cancelled():
                exc: BaseException | None = asyncio.CancelledError("send cancelled")
            else:
                exc = future.exception()
            if exc is None:
                self._acked += records
            else:
                self._fail(records, topic, partition, exc)

    def _fail(self, records: int, topic: str, partition: int, exc: BaseException) -> None:
        self.failed += records
        if self._error is None:
            error = PublishError(
                f"delivery failed: {records} records for {topic} partition {partition} were "
                f"not acknowledged: {exc!r}",
                topic=topic,
            )
            error.__cause__ = exc
            self._error = error

    async def _drain(self, target: int) -> None:
        """Wait until at most ``target`` sent records are unacknowledged."""
        pending = self._pending
        while True:
            self._harvest()
            if self.sent - self._acked - self.failed <= target:
                return
            handing = self._hand_over_all() or list(self._handing_over)
            if handing:  # (asyncio.wait neither raises their errors nor cancels them)
                await asyncio.wait(handing)
            elif pending:
                await asyncio.wait((pending[0][0],))

    async def flush(self) -> None:
        """Hand over every open batch, wait for every acknowledgement; raise the first error."""
        await self._drain(0)
        if self._error is not None:
            raise self._error

    @property
    def acked(self) -> int:
        """Records acknowledged by the broker (counted per batch, in hand-over order)."""
        self._harvest()
        return self._acked

    @property
    def in_flight(self) -> int:
        """Records sent and not yet known to be acknowledged (buffered ones included)."""
        self._harvest()
        return self.sent - self._acked - self.failed
