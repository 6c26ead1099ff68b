"""The private parts of aiokafka and faust-streaming the adapters rely on are still there.

``streams/kafka/internals.py`` and ``streams/kafka/faust_internals.py`` are the only modules that
use them; these tests pin each assumption against the installed versions, so an upgrade that moves
or reshapes one fails here, not in a running worker. After an upgrade: re-check each adapter
function's docstring, then bump its module's ``CHECKED_VERSION``.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from streams.kafka import faust_internals
from streams.kafka import internals as kafka_internals
from streams.kafka.faust_commits import commit_only_processed
from streams.kafka.internals import batch_bytes

# --- aiokafka ---------------------------------------------------------------------------------


def test_aiokafka_is_the_version_the_adapter_was_checked_against() -> None:
    assert version("aiokafka") == kafka_internals.CHECKED_VERSION, (
        "aiokafka changed: re-check streams/kafka/internals.py, then bump CHECKED_VERSION")


async def test_a_consumer_keeps_its_client_and_the_client_refreshes_metadata_on_demand() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
    try:
        assert isinstance(consumer._client, AIOKafkaClient)
        assert callable(consumer._client.force_metadata_update)
        # partitions_for_topic answers from that client's cache, which the refresh updates
        assert "self._client.cluster.partitions_for_topic" in inspect.getsource(
            AIOKafkaConsumer.partitions_for_topic)
        assert "self.cluster" in inspect.getsource(AIOKafkaClient._md_synchronizer)
    finally:
        await consumer.stop()


def test_the_public_consumer_calls_the_adapters_build_on_are_there() -> None:
    for name in ("topics", "partitions_for_topic", "end_offsets", "committed",
                 "beginning_offsets"):
        assert callable(getattr(AIOKafkaConsumer, name)), name
    assert inspect.iscoroutinefunction(AIOKafkaConsumer.topics)


def test_the_admin_client_sends_any_request_only_privately() -> None:
    params = list(inspect.signature(AIOKafkaAdminClient._send_request).parameters)
    assert params == ["self", "request", "node_id"]
    assert inspect.iscoroutinefunction(AIOKafkaAdminClient._send_request)
    # still no public method for what streams.kafka.security sends
    public = {n for n in dir(AIOKafkaAdminClient) if not n.startswith("_")}
    assert not {n for n in public if "acl" in n.lower() or "scram" in n.lower()}


def test_a_batch_builder_encodes_its_batch_only_privately() -> None:
    builder = BatchBuilder(16 * 1024, 0)
    assert builder.append(timestamp=None, key=b"k", value=b"v", headers=[]) is not None
    assert not hasattr(builder, "build")  # no public way
    records = list(DefaultRecordBatch(batch_bytes(builder)))
    assert [(r.key, r.value) for r in records] == [(b"k", b"v")]


def test_the_publisher_size_estimate_is_a_static_method() -> None:
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(b"k", b"v" * 100, [])
    assert isinstance(size, int) and size > 100


# --- faust-streaming --------------------------------------------------------------------------


def test_faust_is_the_version_the_adapter_was_checked_against() -> None:
    assert version("faust-streaming") == faust_internals.CHECKED_VERSION, (
        "faust-streaming changed: re-check streams/kafka/faust_internals.py, then bump "
        "CHECKED_VERSION")


@pytest.fixture
def faust_app(tmp_path: Path) -> Any:
    import faust

    return faust.App("internals-probe", broker="kafka://127.0.0.1:1", store="memory://",
                     datadir=str(tmp_path), web_enabled=False, autodiscover=False)


def test_the_faust_consumer_keeps_its_offset_bookkeeping_where_the_adapter_reads_it(
        faust_app: Any) -> None:
    from intervaltree import IntervalTree

    consumer = faust_app.consumer
    for name in ("_acked", "_acked_index", "_committed_offset", "_read_offset", "_gap"):
        assert isinstance(getattr(consumer, name), defaultdict), name
    tp = TopicPartition("t", 0)
    assert consumer._acked[tp] == [] and consumer._acked_index[tp] == set()
    assert consumer._committed_offset[tp] is None
    assert isinstance(consumer._gap[tp], IntervalTree)
    assert isinstance(consumer._paused_partitions, set)
    assert len(consumer._unacked_messages) == 0
    assert callable(consumer.highwater) and callable(consumer.assignment)


def test_the_faust_commit_rule_and_gap_recording_are_replaceable_methods(
        faust_app: Any) -> None:
    from faust.transport.consumer import Consumer

    assert list(inspect.signature(Consumer._new_offset).parameters) == ["self", "tp"]
    assert list(inspect.signature(Consumer._add_gap).parameters) == [
        "self", "tp", "offset_from", "offset_to"]
    assert inspect.iscoroutinefunction(Consumer._add_gap)
    # Faust calls them through the instance, so replacing them on the instance takes effect
    assert "self._new_offset(" in inspect.getsource(Consumer._filter_committable_offsets)
    assert "self._add_gap(" in inspect.getsource(Consumer._drain_messages)

    consumer = faust_app.consumer
    commit_only_processed(consumer)
    tp = TopicPartition("t", 0)
    acked, index = faust_internals.pending_acks(consumer, tp)
    acked += [5, 3, 4, 7]
    index |= {3, 4, 5, 7}
    consumer._committed_offset[tp] = 3
    assert consumer._new_offset(tp) == 6
    assert consumer._acked[tp] == [7] and consumer._acked_index[tp] == {7}
    assert faust_internals.committed_offset(consumer, tp) == 3


def test_the_group_start_is_asked_where_the_adapter_asks_it(faust_app: Any) -> None:
    """``group_start``: the consumer thread's aiokafka consumer and its ``committed``, run
    with ``call_thread``; the partition's earliest offset from ``earliest_offsets``."""
    from aiokafka import AIOKafkaConsumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert inspect.iscoroutinefunction(AIOKafkaConsumer.committed)
    assert list(inspect.signature(AIOKafkaConsumer.committed).parameters) == [
        "self", "partition"]
    assert callable(AIOKafkaConsumerThread._ensure_consumer)
    assert inspect.iscoroutinefunction(AIOKafkaConsumerThread.call_thread)
    consumer = faust_app.consumer
    assert isinstance(consumer._thread, AIOKafkaConsumerThread)
    assert inspect.iscoroutinefunction(consumer.earliest_offsets)


def test_the_faust_producer_buffer_limit_is_an_attribute(faust_app: Any) -> None:
    from faust.transport.producer import ProducerBuffer

    assert isinstance(ProducerBuffer.max_messages, int)
    producer = faust_app.producer
    assert isinstance(producer.buffer, ProducerBuffer)
    faust_internals.set_producer_buffer_limit(producer, 50_000)
    assert producer.buffer.max_messages == 50_000
    assert "self.max_messages" in inspect.getsource(ProducerBuffer)


def test_a_store_write_is_read_back_by_the_table_and_sends_no_changelog_record(
        faust_app: Any) -> None:
    table = faust_app.Table("probe", partitions=2, key_type=bytes, value_type=bytes)
    faust_internals.table_store_set(table, b"k", b"v1", 1)
    assert table.get(b"k") == b"v1"
    assert table.data._key_partition[b"k"] == 1
    assert faust_app.producer.buffer.size == 0  # nothing queued on Faust's changelog path
    faust_internals.table_store_set(table, b"k", None, 1)
    assert table.get(b"k") is None
    assert b"k" not in table.data._key_partition
