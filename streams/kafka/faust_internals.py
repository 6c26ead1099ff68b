"""The only module that reaches into faust-streaming's private attributes.

Faust keeps its per-partition offset bookkeeping (offsets processed, committed, read, gaps) in
private attributes of its transport ``Consumer`` and offers no public accessor for them; the
registry needs them for its commit rule (:mod:`streams.kafka.faust_commits`) and its liveness check
(:mod:`streams.app`). Each function names what it relies on, why the public API does not do
the job, and the version it was checked against (``faust-streaming==0.15.3``).
``tests/unit/project/test_third_party_internals.py`` pins those assumptions against the installed
version, so an upgrade that breaks one fails the unit suite rather than a worker in production.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

CHECKED_VERSION = "0.15.3"


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """The offset Faust last committed for ``tp`` (the next one to process), None if none yet.

    Why private: Faust's ``Consumer`` has no public accessor for it; it lives in
    ``_committed_offset`` (a ``defaultdict`` per TP, None until the first commit or when the
    committed offset is 0). Asking the broker instead (aiokafka's ``committed()``) costs a
    round trip and may lag what this consumer committed a moment ago. Checked against
    faust-streaming 0.15.3.
    """
    offset: int | None = consumer._committed_offset.get(tp)
    return offset


async def group_start(consumer: Any, tp: Any) -> int:
    """Where the group's work on ``tp`` starts when Faust does not know its committed offset:
    the broker's committed offset of the group, else (none, or 0) the partition's earliest
    offset (the consumer resets to earliest).

    Why private: Faust keeps the committed offset only after it committed or sought there
    itself, stores 0 as None, and has no accessor for the group's committed offset; the
    aiokafka consumer behind its consumer thread (``_thread._ensure_consumer()``) has one,
    called on that thread's loop with ``call_thread``. Checked against faust-streaming 0.15.3.
    """
    thread = consumer._thread
    committed = await thread.call_thread(thread._ensure_consumer().committed, tp)
    if committed:
        return int(committed)
    earliest = await consumer.earliest_offsets(tp)
    return int(earliest[tp])


def pending_acks(consumer: Any, tp: Any) -> tuple[list[int], set[int]]:
    """The offsets of ``tp`` processed (acked) since the last commit, as Faust's own list and
    index set: the commit rule edits both in place, as Faust's ``_new_offset`` does.

    Why private: Faust keeps them in ``_acked`` and ``_acked_index`` (``defaultdict`` per TP)
    and exposes no accessor. Checked against faust-streaming 0.15.3.
    """
    return consumer._acked[tp], consumer._acked_index[tp]


def replace_commit_rule(consumer: Any, new_offset: Callable[[Any], int | None],
                        on_gap: Callable[[Any, int, int], Awaitable[None]]) -> None:
    """Make the consumer compute the offset to commit with ``new_offset(tp)`` and report a
    fetcher skip (a "gap" from ``offset_from`` to ``offset_to`` exclusive) to ``on_gap`` instead
    of recording it.

    Why private: the rule is Faust's ``Consumer._new_offset(tp)``, called by
    ``_filter_committable_offsets`` on every commit, and gaps are recorded by the coroutine
    ``Consumer._add_gap(tp, offset_from, offset_to)`` from ``_drain_messages``; Faust has no
    setting or hook for either, so the instance's methods are replaced. Checked against
    faust-streaming 0.15.3.
    """
    consumer._new_offset = new_offset
    consumer._add_gap = on_gap


def set_producer_buffer_limit(producer: Any, max_messages: int) -> None:
    """Let up to ``max_messages`` pending sends wait in Faust's producer buffer before the
    sender is throttled (Faust's default is 100).

    Why not public: ``Producer.buffer`` is a ``ProducerBuffer`` whose class attribute
    ``max_messages`` Faust never exposes as a setting (no ``App`` argument reaches it).
    Checked against faust-streaming 0.15.3.
    """
    producer.buffer.max_messages = max_messages


def consumer_state(consumer: Any) -> str:
    """Faust's per-partition offset bookkeeping as one line, for the log of a stall (diagnosis).

    Why private: highwater and assignment are public, but the committed, read and acked
    offsets, the gaps, the paused partitions and the messages not yet acked are only in
    ``_committed_offset``, ``_read_offset``, ``_acked``, ``_gap`` (an ``IntervalTree`` per
    TP, intervals with ``begin``/``end``), ``_paused_partitions`` and ``_unacked_messages``.
    Checked against faust-streaming 0.15.3.
    """
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


def table_store_set(table: Any, key: bytes, raw: bytes | None, partition: int) -> None:
    """Set (or with None delete) ``key`` in a Faust table's in-memory store WITHOUT Faust
    sending a changelog record: the caller has sent it (``RegistryStreams._write_state``).

    Public ``table[key] = raw`` always queues a changelog record on Faust's buffered
    per-message path. ``table.data`` is the store (``faust.stores.memory.Store``), its
    ``data`` the dict, and ``_key_partition`` what Faust consults after a rebalance to drop
    the keys of partitions this worker no longer owns, so it is kept as changelog recovery
    keeps it.
    """
    store = table.data
    if raw is None:
        store.data.pop(key, None)
        store._key_partition.pop(key, None)
    else:
        store.data[key] = raw
        store._key_partition[key] = partition
