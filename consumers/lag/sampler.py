"""Reading consumer lag from Kafka: what one sample of the lag monitor is made of.

For each consumer group of the registry (ids starting with ``REGISTRY_APP_ID``, or an explicit
list), :meth:`LagSampler.sample` reads:

* the committed offset per topic partition (``OffsetFetch``) and the group's members and state
  (``DescribeGroups``), through an :class:`~aiokafka.admin.AIOKafkaAdminClient`;
* the log-end offsets of those partitions, through a group-less ``AIOKafkaConsumer``;
* the log-start offsets of those partitions: retention may have deleted records the group
  never read, so lag in messages is ``end - max(committed, log start)``
  (:func:`~consumers.lag.status.partition_lag`), and lag in SECONDS is the age of the oldest
  unconsumed record that still exists, i.e. now minus the timestamp of the record at
  ``max(committed, log start)`` (0 when lag is 0).
  The record is read by assigning the partition and seeking to the offset; timestamps are
  cached per (topic, partition, offset), so a stalled partition costs one read in total, not
  one per sample;
* per lender, freshness: now minus the timestamp of the newest record on its loans topic.

Each sample is added to its partition's :class:`~consumers.lag.series.PartitionSeries` and
judged there and then with ``status.py``'s rules. A failing broker makes the sample fail
(:class:`LagMonitorError`); :mod:`~consumers.lag.monitor` decides what to do about it.

Limits: a partition appears once the group has committed on it (Kafka stores nothing before
that); lag seconds rely on record timestamps (CreateTime set by the producer, so a producer
with a wrong clock skews them) and are None when the record could not be read in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from consumers.lag.errors import LagMonitorError
from consumers.lag.series import PartitionSeries
from consumers.lag.status import (
    GroupLag,
    LagSample,
    LagSnapshot,
    PartitionLag,
    evaluate_partition,
    first_unconsumed,
    partition_lag,
    worst,
)
from streams.settings import Settings

log = logging.getLogger(__name__)


class LagSampler:
    """The lag monitor's Kafka side: its clients, timestamp cache and per-partition series."""

    def __init__(
        self,
        settings: Settings,
        *,
        groups: list[str] | None,
        history_s: float,
        window: int,
        stopped_after_s: float,
        fetch_timeout_s: float,
        request_timeout_s: float,
        clock: Callable[[], float],
    ) -> None:
        """Arguments as :class:`~consumers.lag.monitor.LagMonitor`'s, which holds the defaults."""
        self._settings = settings
        self._groups = list(groups) if groups is not None else None
        self._history_ms = int(history_s * 1000)
        self._window = window
        self._stopped_after_s = stopped_after_s
        self._fetch_timeout_s = fetch_timeout_s
        self._request_timeout_s = request_timeout_s
        self._clock = clock
        self._loans = re.compile(settings.topics.loans_pattern)
        self.series: dict[tuple[str, str, int], PartitionSeries] = {}
        self._ts_cache: dict[tuple[str, int, int], int] = {}
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def close(self) -> None:
        """Close the Kafka clients; the next sample opens new ones."""
        consumer, admin, self._consumer, self._admin = self._consumer, self._admin, None, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            options = self._settings.kafka_client_options()
            client_id = f"{self._settings.registry_app_id}-lag-monitor"
            admin = AIOKafkaAdminClient(
                **options, client_id=client_id,
                request_timeout_ms=int(self._request_timeout_s * 1000),
            )
            consumer = AIOKafkaConsumer(
                **options, client_id=client_id, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", fetch_max_wait_ms=100,
                max_partition_fetch_bytes=256 * 1024,
                request_timeout_ms=int(self._request_timeout_s * 1000),
            )
            try:
                await admin.start()
                await consumer.start()
            except KafkaError as exc:
                with contextlib.suppress(Exception):
                    await admin.close()
                with contextlib.suppress(Exception):
                    await consumer.stop()
                raise LagMonitorError(f"cannot connect to Kafka: {exc!r}") from exc
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def sample(self) -> LagSnapshot:
        """One sample of every watched group. Kafka errors propagate as raised: the
        monitor bounds the time a sample may take and reports its failures."""
        admin, consumer = await self._clients()
        now_ms = int(self._clock() * 1000)

        topics = await admin.describe_topics(None)
        partitions_of: dict[str, list[int]] = {
            t["topic"]: sorted(p["partition"] for p in t["partitions"])
            for t in topics
            if not t["error_code"] and not t.get("is_internal")
        }
        group_ids = await self._group_ids(admin)
        members, states = await self._describe(admin, group_ids)
        offsets = await asyncio.gather(
            *(admin.list_consumer_group_offsets(g) for g in group_ids)
        )
        committed: dict[str, dict[TopicPartition, int | None]] = {}
        stream_group = self._settings.registry_app_id
        for group, found in zip(group_ids, offsets, strict=True):
            committed[group] = {
                tp: (meta.offset if meta.offset >= 0 else None)
                for tp, meta in found.items()
                if tp.partition in partitions_of.get(tp.topic, ())
                # the Faust group read lender topics before bulk intake existed; its old
                # commits there are history (the intake group owns them now), not lag
                and not (group == stream_group and self._loans.match(tp.topic))
            }

        lender_tps = [
            TopicPartition(topic, p)
            for topic, parts in partitions_of.items()
            if self._loans.match(topic)
            for p in parts
        ]
        wanted_tps = {tp for by_tp in committed.values() for tp in by_tp} | set(lender_tps)
        ends: dict[TopicPartition, int] = {}
        starts: dict[TopicPartition, int] = {}
        if wanted_tps:
            ends = await consumer.end_offsets(sorted(wanted_tps))
            starts = await consumer.beginning_offsets(sorted(wanted_tps))

        wanted: set[tuple[str, int, int]] = set()
        for by_tp in committed.values():
            for tp, off in by_tp.items():
                first = first_unconsumed(off, starts.get(tp, 0))
                if first < ends.get(tp, 0):
                    wanted.add((tp.topic, tp.partition, first))
        for tp in lender_tps:
            if ends.get(tp, 0) > 0:
                wanted.add((tp.topic, tp.partition, ends[tp] - 1))
        await self._fill_timestamps(consumer, wanted)
        self._ts_cache = {k: v for k, v in self._ts_cache.items() if k in wanted}

        groups = {
            group: self._group_lag(group, committed[group], starts, ends, members.get(group),
                                   states.get(group, "Unknown"), now_ms)
            for group in group_ids
        }
        self.series = {k: v for k, v in self.series.items() if k[0] in groups}
        return LagSnapshot(now_ms, groups, self._freshness(lender_tps, ends, now_ms))

    async def _group_ids(self, admin: AIOKafkaAdminClient) -> list[str]:
        if self._groups is not None:
            return list(self._groups)
        listed = await admin.list_consumer_groups()
        prefix = self._settings.registry_app_id
        return sorted({g[0] for g in listed if g[0].startswith(prefix)})

    async def _describe(
        self, admin: AIOKafkaAdminClient, group_ids: list[str]
    ) -> tuple[dict[str, int], dict[str, str]]:
        """Members and state per group; a group missing here reads as "members unknown".

        One request per group on purpose: aiokafka 0.14 decodes a DescribeGroups v3 answer
        with the v2 schema (no ``authorized_operations``), which misaligns every group after
        the first in a multi-group answer; with one group the extra bytes are only trailing.
        """
        members: dict[str, int] = {}
        states: dict[str, str] = {}
        answers = await asyncio.gather(
            *(admin.describe_consumer_groups([g]) for g in group_ids), return_exceptions=True
        )
        for group, answer in zip(group_ids, answers, strict=True):
            if isinstance(answer, BaseException):
                log.warning("describe consumer group %s failed: %r", group, answer)
                continue
            for response in answer:
                for g in response.to_object()["groups"]:
                    if g["error_code"] == 0 and g["group"] == group:
                        members[group] = len(g["members"])
                        states[group] = g["state"]
        return members, states

    def _group_lag(
        self,
        group: str,
        committed: dict[TopicPartition, int | None],
        starts: dict[TopicPartition, int],
        ends: dict[TopicPartition, int],
        members: int | None,
        state: str,
        now_ms: int,
    ) -> GroupLag:
        rows = []
        for tp in sorted(committed):
            off, end = committed[tp], ends.get(tp, 0)
            first = first_unconsumed(off, starts.get(tp, 0))
            lag = partition_lag(off, starts.get(tp, 0), end)
            if lag == 0:
                lag_s: float | None = 0.0
            else:
                ts = self._ts_cache.get((tp.topic, tp.partition, first))
                lag_s = max(0.0, (now_ms - ts) / 1000.0) if ts is not None else None
            series = self.series.setdefault((group, tp.topic, tp.partition), PartitionSeries())
            series.add(LagSample(now_ms, off, end, lag), lag_s, now_ms - self._history_ms)
            status = evaluate_partition(
                series.samples, members=members, now_ms=now_ms,
                stopped_after_s=self._stopped_after_s, window=self._window,
            )
            rows.append(PartitionLag(group, tp.topic, tp.partition, off, end, lag, lag_s,
                                     status, now_ms))
        return GroupLag(group, state, members, worst(p.status for p in rows), tuple(rows))

    def _freshness(
        self, lender_tps: list[TopicPartition], ends: dict[TopicPartition, int], now_ms: int
    ) -> dict[str, float | None]:
        newest: dict[str, int | None] = {}
        for tp in lender_tps:
            lender = self._settings.topics.lender_of(tp.topic)
            if lender is None:
                continue
            newest.setdefault(lender, None)
            end = ends.get(tp, 0)
            ts = self._ts_cache.get((tp.topic, tp.partition, end - 1)) if end > 0 else None
            if ts is not None:
                newest[lender] = max(ts, newest[lender] or ts)
        return {
            lender: (None if ts is None else max(0.0, (now_ms - ts) / 1000.0))
            for lender, ts in sorted(newest.items())
        }

    async def _fill_timestamps(
        self, consumer: AIOKafkaConsumer, wanted: set[tuple[str, int, int]]
    ) -> None:
        """Read the timestamp of each wanted (topic, partition, offset) not cached yet.

        One seek per partition per round, so a partition wanted at two offsets (a lagging
        group on a loans topic, plus that topic's freshness) takes two rounds.
        """
        missing: dict[TopicPartition, list[int]] = {}
        for topic, partition, offset in sorted(wanted):
            if (topic, partition, offset) not in self._ts_cache:
                missing.setdefault(TopicPartition(topic, partition), []).append(offset)
        while missing:
            round_ = {tp: offsets.pop(0) for tp, offsets in missing.items()}
            missing = {tp: offsets for tp, offsets in missing.items() if offsets}
            for tp, ts in (await self._read_one_each(consumer, round_)).items():
                self._ts_cache[(tp.topic, tp.partition, round_[tp])] = ts

    async def _read_one_each(
        self, consumer: AIOKafkaConsumer, at: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Timestamp (ms) of the first record at or after ``at[tp]``, for each partition."""
        consumer.assign(list(at))
        for tp, offset in at.items():
            consumer.seek(tp, offset)
        found: dict[TopicPartition, int] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._fetch_timeout_s
        try:
            while len(found) < len(at):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    log.info("lag seconds: %d record(s) not read in time", len(at) - len(found))
                    break
                pending = [tp for tp in at if tp not in found]
                batch = await consumer.getmany(*pending, timeout_ms=int(remaining * 1000))
                for tp, records in batch.items():
                    for record in records:
                        if record.offset >= at[tp] and record.timestamp > 0:
                            found[tp] = record.timestamp
                            consumer.pause(tp)
                            break
        finally:
            consumer.pause(*at)  # no background prefetch between samples
        return found

    def owns(self, group: str) -> bool:
        """Whether ``group`` is one this sampler watches."""
        if self._groups is not None:
            return group in self._groups
        return group.startswith(self._settings.registry_app_id)
