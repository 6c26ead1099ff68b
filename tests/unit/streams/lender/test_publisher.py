"""LenderPublisher's own batching, against a stand-in producer (no broker): keys land on Kafka's
default partition, per-key order and counts survive batching, and every failure is reported."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, NotEnoughReplicasError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import LOAN_EVENT, codec_for
from schemas.fast_encode import encode_loan_event
from schemas.national_id import generate
from schemas.records import EventType, LoanEvent
from streams.kafka.internals import batch_bytes
from streams.lender.errors import PublishError
from streams.lender.publisher import LenderPublisher, murmur2, partition_for_key
from streams.settings import Settings

LENDER = "bank-a"


# --- partitioning ------------------------------------------------------------------------------
def test_murmur2_matches_the_java_clients_test_vectors() -> None:
    # org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed 32-bit results)
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for data, expected in cases.items():
        assert murmur2(data) == expected & 0xFFFFFFFF, data


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_murmur2_equals_aiokafkas(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=40), st.integers(min_value=1, max_value=64))
def test_partition_for_key_is_the_default_partitioners_choice(key: bytes, count: int) -> None:
    partitions = list(range(count))
    assert partition_for_key(key, count) == DefaultPartitioner()(key, partitions, partitions)


def test_borrower_ids_keep_their_partitions() -> None:
    # Pinned: a change of partitioner would move every borrower (and break per-key order).
    pinned = {
        b"11010519491231002X": 5,
        b"110101199003074514": 5,
        b"440308198507129631": 1,
    }
    for key, partition in pinned.items():
        assert partition_for_key(key, 6) == partition, key
        assert DefaultPartitioner()(key, list(range(6)), list(range(6))) == partition


# --- encoding ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "occurred_at_ms",
    [0, 1, -1, (1 << 27) - 1, 1 << 27, 1_790_000_000_000, (1 << 41) - 1, 1 << 41, -(1 << 27),
     (1 << 63) - 1, -(1 << 63)],
)  # fmt: skip
def test_encoded_timestamps_equal_the_codecs_around_the_inline_range(occurred_at_ms: int) -> None:
    ev = LoanEvent("e", LENDER, "110101199003074514", "l", EventType.REPAYMENT, 1, "CNY",
                   occurred_at_ms, "p")  # fmt: skip
    assert encode_loan_event(ev) == codec_for(LOAN_EVENT).encode(ev.to_avro())


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=(1 << 27) - 5, max_value=(1 << 41) + 5))
def test_encoded_timestamps_equal_the_codecs_inside_the_inline_range(at: int) -> None:
    ev = LoanEvent("e", LENDER, "b", "l", EventType.DRAW, 5, "CNY", at, None)
    assert encode_loan_event(ev) == codec_for(LOAN_EVENT).encode(ev.to_avro())


# --- a stand-in producer -----------------------------------------------------------------------
class FakeProducer:
    """create_batch / send_batch / partitions_for / stop, as AIOKafkaProducer; batches are
    acknowledged (or failed) by the test."""

    def __init__(self, partitions: int = 6, batch_size: int = 4096) -> None:
        self.partitions = partitions
        self.batch_size = batch_size
        self.batches: list[tuple[str, int, BatchBuilder, asyncio.Future[Any]]] = []
        self.refuse: Exception | None = None
        self.gate: asyncio.Event | None = None  # send_batch waits for it when set

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    async def send_batch(
        self, batch: BatchBuilder, topic: str, *, partition: int
    ) -> asyncio.Future[Any]:
        if self.gate is not None:
            await self.gate.wait()
        if self.refuse is not None:
            raise self.refuse
        assert batch.closed()
        future = asyncio.get_running_loop().create_future()
        self.batches.append((topic, partition, batch, future))
        return future

    async def stop(self) -> None:
        pass

    def ack_all(self) -> None:
        for *_, future in self.batches:
            if not future.done():
                future.set_result(None)

    def records(self) -> list[tuple[int, bytes, bytes]]:
        """(partition, key, value) of every handed-over record, in hand-over order."""
        out = []
        for _, partition, builder, _ in self.batches:
            for record in DefaultRecordBatch(batch_bytes(builder)):
                out.append((partition, record.key, record.value))
        return out


def publisher(producer: FakeProducer, **settings_: Any) -> LenderPublisher:
    settings_.setdefault("publisher_linger_ms", 1000)
    pub = LenderPublisher(Settings(kafka_namespace="t.", **settings_), LENDER)
    pub._producer = producer  # type: ignore[assignment]
    return pub


def events(n: int, borrowers: int, seed: int = 1) -> list[LoanEvent]:
    rng = random.Random(seed)
    ids = [generate(rng) for _ in range(borrowers)]
    return [
        LoanEvent(f"e-{i}", LENDER, rng.choice(ids), "loan-1", EventType.DRAW, 100 + i, "CNY",
                  1_790_000_000_000 + i, None)
        for i in range(n)
    ]  # fmt: skip


async def until(condition: Any, timeout: float = 5.0) -> None:
    """Let the event loop run until ``condition()`` holds (a deadline, never a fixed sleep)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


async def acknowledge_until_flushed(producer: FakeProducer, pub: LenderPublisher) -> None:
    async def acker() -> None:
        while True:
            producer.ack_all()
            await asyncio.sleep(0)

    task = asyncio.create_task(acker())
    try:
        await pub.flush()
    finally:
        task.cancel()


# --- batching --------------------------------------------------------------------------------
async def test_records_land_on_the_keys_partition_in_send_order() -> None:
    producer = FakeProducer()
    pub = publisher(producer)
    evs = events(3000, borrowers=150)
    for ev in evs:
        await pub.publish_event(ev)
        producer.ack_all()  # as acknowledgements arrive meanwhile
    await acknowledge_until_flushed(producer, pub)

    records = producer.records()
    assert len(records) == len(evs) == pub.sent == pub.acked
    assert pub.in_flight == 0 and pub.failed == 0
    assert len(producer.batches) > 6  # really batched, and more than one batch per partition
    assert {topic for topic, *_ in producer.batches} == {pub.loans_topic}
    codec = codec_for(LOAN_EVENT)
    seen: dict[bytes, list[int]] = {}
    for partition, key, value in records:
        assert partition == DefaultPartitioner()(key, list(range(6)), list(range(6)))
        decoded = codec.decode(value)
        assert decoded["borrower_id"].encode() == key
        seen.setdefault(key, []).append(int(decoded["event_id"][2:]))
    assert sorted(i for order in seen.values() for i in order) == list(range(len(evs)))
    for order in seen.values():
        assert order == sorted(order)  # per key (borrower), the order of the sends
    first = next(ev for ev in evs if ev.borrower_id.encode() == records[0][1])
    assert records[0][2] == encode_loan_event(first)


async def test_a_lingering_batch_goes_out_without_flush() -> None:
    producer = FakeProducer()
    pub = publisher(producer, publisher_linger_ms=5)
    await pub.send_raw(pub.loans_topic, b"110101199003074514", b"v")
    assert producer.batches == []  # buffered
    await until(lambda: producer.batches)  # the 5 ms linger hands it over
    assert [(p, k) for p, k, _ in producer.records()] == [(5, b"110101199003074514")]
    producer.ack_all()
    await pub.flush()
    assert pub.acked == 1


async def test_flush_hands_over_partial_batches_and_waits_for_acknowledgement() -> None:
    producer = FakeProducer()
    pub = publisher(producer)
    for ev in events(20, borrowers=20):
        await pub.publish_event(ev)
    flushing = asyncio.create_task(pub.flush())
    await until(lambda: len(producer.records()) == 20)
    assert not flushing.done()
    producer.ack_all()
    await flushing
    assert pub.acked == 20 and pub.in_flight == 0


# --- failures --------------------------------------------------------------------------------
async def test_a_failed_batch_fails_flush_and_every_later_send() -> None:
    producer = FakeProducer()
    pub = publisher(producer)
    for ev in events(500, borrowers=50):
        await pub.publish_event(ev)
    flushing = asyncio.create_task(pub.flush())
    await until(lambda: len(producer.records()) == 500)
    _, partition, builder, future = producer.batches[0]
    future.set_exception(NotEnoughReplicasError())
    producer.ack_all()
    with pytest.raises(PublishError, match=rf"{builder.record_count()} records .* partition "
                       rf"{partition} were not acknowledged"):  # fmt: skip
        await flushing
    assert pub.failed == builder.record_count() and pub.acked == 500 - pub.failed
    with pytest.raises(PublishError):
        await pub.send_raw(pub.loans_topic, b"k", b"v")


async def test_a_batch_the_producer_refuses_is_reported() -> None:
    producer = FakeProducer()
    pub = publisher(producer)
    for ev in events(30, borrowers=5):
        await pub.publish_event(ev)
    producer.refuse = KafkaTimeoutError()
    with pytest.raises(PublishError, match="KafkaTimeoutError"):
        await pub.flush()
    assert pub.failed == 30 and pub.acked == 0 and pub.in_flight == 0


async def test_an_oversized_record_is_refused_at_once() -> None:
    producer = FakeProducer()
    pub = LenderPublisher(
        Settings(kafka_namespace="t."), LENDER, producer_options={"max_request_size": 4096}
    )
    pub._producer = producer  # type: ignore[assignment]
    await pub.send_raw(pub.loans_topic, b"k", b"x" * 1000)
    with pytest.raises(PublishError, match="MessageSizeTooLarge"):
        await pub.send_raw(pub.loans_topic, b"k", b"x" * 5000)
    assert pub.sent == 1
    await acknowledge_until_flushed(producer, pub)
    assert pub.acked == 1


async def test_sends_wait_at_the_in_flight_bound() -> None:
    producer = FakeProducer(batch_size=512)
    pub = publisher(producer, publisher_max_in_flight=100)

    async def send_all() -> None:
        for ev in events(300, borrowers=30):
            await pub.publish_event(ev)

    sending = asyncio.create_task(send_all())
    await until(lambda: pub.sent == 100)
    await asyncio.sleep(0)  # one more turn: the sender must be waiting, not sending
    assert not sending.done() and pub.sent == 100  # waits for half of them
    producer.ack_all()
    await until(lambda: pub.sent > 100)
    while not sending.done():
        producer.ack_all()
        await asyncio.sleep(0)
    await acknowledge_until_flushed(producer, pub)
    assert pub.acked == 300


async def test_a_cancelled_sender_does_not_strand_a_batch() -> None:
    producer = FakeProducer(batch_size=512)
    producer.gate = asyncio.Event()  # hand-overs wait, as for a queued batch of the partition
    pub = publisher(producer)

    async def send_one_key() -> None:
        while True:
            await pub.send_raw(pub.loans_topic, b"110101199003074514", b"v" * 60)

    sending = asyncio.create_task(send_one_key())
    await until(lambda: pub.sent > 0 and pub._handing_over)
    assert not sending.done() and pub.sent > 0  # stuck handing over its first full batch
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    producer.gate.set()
    await acknowledge_until_flushed(producer, pub)
    assert pub.acked == pub.sent == len(producer.records()) and pub.failed == 0
