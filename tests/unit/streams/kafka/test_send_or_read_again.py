"""SendOrReadAgain: a refused send is read again, never committed over, and the idempotent
producer is replaced (one left out of sequence fails every later send)."""

from __future__ import annotations

from typing import Any, ClassVar

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, OutOfOrderSequenceNumber

from streams.kafka.read_commit import SendOrReadAgain

TP = TopicPartition("lenders.a.loans", 0)


class Record:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class Consumer:
    """The two calls read_again makes on an aiokafka consumer."""

    def __init__(self) -> None:
        self.sought: list[tuple[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought.append((tp, offset))


class Producer:
    made: ClassVar[list[Producer]] = []

    def __init__(self) -> None:
        self.started = self.stopped = False
        Producer.made.append(self)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True


async def test_a_refused_send_reads_again_with_a_new_producer() -> None:
    Producer.made = []
    sender = SendOrReadAgain("intake", Producer)  # type: ignore[arg-type]
    await sender.start()
    consumer = Consumer()
    records: Any = {TP: [Record(40), Record(41)]}
    used: list[Producer] = []

    async def refused(producer: Any) -> None:
        used.append(producer)
        raise OutOfOrderSequenceNumber()

    async def accepted(producer: Any) -> None:
        used.append(producer)

    sender.delay = 0.01
    assert await sender(consumer, records, refused) is False  # type: ignore[arg-type]
    assert consumer.sought == [(TP, 40)]
    first, second = Producer.made
    assert first.stopped and second.started and not second.stopped
    assert sender.producer is second and sender.renewals == 1 and sender.delay == 0.02
    assert await sender(consumer, records, accepted) is True  # type: ignore[arg-type]
    assert used == [first, second] and sender.delay == 0.5
    await sender.stop()
    assert second.stopped and sender.producer is None
    assert issubclass(OutOfOrderSequenceNumber, KafkaError)
