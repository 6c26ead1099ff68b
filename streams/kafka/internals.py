"""The only module that reaches into aiokafka's private attributes.

Everything else uses aiokafka's public API. Each function here names the private attribute it
relies on, why the public API does not do the job, and the aiokafka version it was checked
against (``aiokafka==0.14.0``). ``tests/unit/project/test_third_party_internals.py`` pins those
assumptions against the installed version, so an upgrade that breaks one fails the unit suite
rather than a worker in production.

Helpers built on top of them (:func:`topic_partitions`, :func:`cluster_topics`) use public
calls only and live here because every caller needs the refresh first.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.protocol.api import Request

CHECKED_VERSION = "0.14.0"


async def refresh_metadata(consumer: AIOKafkaConsumer) -> None:
    """Fetch the cluster metadata now, into the cache ``consumer.partitions_for_topic`` reads.

    Why private: ``AIOKafkaConsumer.partitions_for_topic`` answers from the client's cached
    metadata and returns None for a topic the cache does not know yet (a group-less consumer
    refreshes it only every ``metadata_max_age_ms``), and ``AIOKafkaConsumer.topics()`` fetches
    a separate copy that does not update that cache. Only the client's
    ``force_metadata_update()`` (``consumer._client``) refreshes the cache itself and waits for
    it. Checked against aiokafka 0.14.0.
    """
    await consumer._client.force_metadata_update()


async def cluster_topics(consumer: AIOKafkaConsumer) -> set[str]:
    """Names of every topic the consumer may see, from freshly fetched metadata (public API),
    with the consumer's metadata cache refreshed too, so that ``partitions_for_topic`` knows
    each of them."""
    names: set[str] = await consumer.topics()
    await refresh_metadata(consumer)
    return names


async def topic_partitions(consumer: AIOKafkaConsumer, topics: list[str] | set[str]
                           ) -> list[TopicPartition]:
    """Every partition of ``topics`` (sorted by topic, then partition) from freshly fetched
    metadata; a topic the broker does not know contributes none."""
    await refresh_metadata(consumer)
    return [TopicPartition(t, p) for t in sorted(topics)
            for p in sorted(consumer.partitions_for_topic(t) or ())]


async def send_admin_request(admin: AIOKafkaAdminClient, request: Request[Any]) -> Any:
    """Send one protocol request through the admin client's connection; the response object.

    Why private: ``AIOKafkaAdminClient`` has public methods for topics, configs, records and
    consumer groups, but none for SCRAM credentials (AlterUserScramCredentials) or ACLs
    (CreateAcls), which :mod:`streams.kafka.security` needs; its
    ``_send_request(request, node_id=None)`` sends any request to a random broker with the
    client's connection, authentication and TLS. Checked against aiokafka 0.14.0.
    """
    return await admin._send_request(request)


def batch_bytes(builder: BatchBuilder) -> bytes:
    """The encoded record batch of a ``producer.create_batch()`` builder (closes it).

    Why private: ``BatchBuilder`` (what the public ``AIOKafkaProducer.create_batch()``
    returns) exposes only ``append``, ``close``, ``size`` and ``record_count``; the producer
    encodes the batch with ``_build()`` when it sends it. Tests use this to read back what a
    publisher handed to a fake producer. Checked against aiokafka 0.14.0.
    """
    return bytes(builder._build())
