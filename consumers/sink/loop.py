"""The ClickHouse sink: registry.activity, consent audit and rejections -> ClickHouse tables.

Commit protocol, per cycle (the order is the guarantee):

1. Fetch up to ``SINK_BATCH_ROWS`` rows or for ``SINK_BATCH_MS``, whichever comes first.
2. Turn the records into rows, partition by partition in offset order, remembering each row's
   source coordinates (topic, partition, offset); collect the corrections (buckets to rebuild
   from the ledger) per activity partition.
3. Insert each table's rows with ``insert_deduplication_token`` = (table, the batch's
   topic/partition/offset ranges). If ClickHouse refuses the DATA of that insert (type, value,
   constraint: :class:`~consumers.clickhouse.errors.ClickHouseDataRefused`), the block is
   bisected (:mod:`consumers.clickhouse.bisect`): halves are inserted with tokens derived from
   the batch token and their row range, down to the single rows ClickHouse refuses on their
   own. Those go to ``sink_dead_letters`` (error code and name, message, source coordinates,
   the row as JSON; borrower values that are not pseudonyms redacted), inserted with a token
   derived from the batch token, and are counted by ``registry_sink_dead_letter_rows_total``;
   every other row is in. Then run the corrections: one INSERT ... SELECT per kind and
   partition, reading the ledger that now holds the whole batch (:mod:`consumers.sink.recompute`);
   the day and hour of every event a cancel in the batch withdraws are among them
   (:func:`~consumers.sink.recompute.cancelled_buckets`, one query).
4. Only after ClickHouse acknowledged everything (rows, dead letters, corrections), commit the
   Kafka offsets: a refused row no longer holds the pipeline back.

Failure cases: ClickHouse down (:class:`~consumers.clickhouse.errors.ClickHouseUnavailable`,
also in the middle of a bisection) -> the batch is kept, the sink backs off (0.5 s doubling to
10 s) and retries the whole cycle; nothing is fetched meanwhile (consumer lag grows, visible in
the lag monitor); offsets do not move. The retry re-sends the very same blocks with the very
same tokens (the bisection is deterministic), so ClickHouse drops what already landed. A refused
statement (unknown table, syntax, access: not retriable, not the rows' fault) stops the sink
without committing: splitting rows cannot fix it, an operator must. Crash after insert, before
commit -> the records are delivered again, possibly in different batches; tokens may then
differ, and the tables' replacing keys (event identity, bucket + version, source coordinates;
for dead letters table + source coordinates + row) make the repeat collapse. Readers use FINAL.
Cost: one insert per table per cycle, plus at most one INSERT ... SELECT per kind and partition
when late events arrived; a refused row adds about 2 log2(batch rows) inserts.

Test-only fault (``FAULT_SINK_POISON_EVENT_ID``, refused in production mode): the ledger row of
that event id gets a borrower value that ClickHouse's ``borrower_is_pseudonym`` constraint
refuses, so the refusal, the bisection and the dead letter are ClickHouse's own.

Erasures (``erase`` items, sent by the stream agent in partition order) run first in a cycle:
the borrower's rows are deleted from every table and an audit row is written (once per
request id); rows of that borrower that came BEFORE the erasure in the same batch are
dropped, rows after it (a new consent and new events) are kept. A crash mid-erasure replays
it; deleting again is harmless.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from consumers.clickhouse.bisect import Refusal, insert_isolating
from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.erasure import erase_borrower
from consumers.clickhouse.errors import ClickHouseError
from consumers.sink.recompute import cancelled_buckets, recompute
from consumers.sink.rows import (
    TABLE_COLUMNS,
    consent_row,
    daily_row,
    hourly_row,
    ledger_row,
    rejection_row,
    ts,
)
from schemas.calendar import Calendar
from schemas.codec import REJECTION, codec_for
from schemas.errors import CodecError
from schemas.pseudonym import PSEUDONYM_HEX_CHARS
from streams.runtime.metrics import METRICS
from streams.settings import Settings

log = logging.getLogger(__name__)

ACTIVITY_BATCH = "registry.internal.ActivityBatch"
CONSENT_CHANGE = "registry.internal.ConsentChange"
#: tables whose rows start with the borrower pseudonym (what an erasure removes from a batch)
BORROWER_TABLES = frozenset({"admitted_events", "borrower_daily", "borrower_hourly",
                             "consent_audit"})
_ROW_OF = {"ledger": ("admitted_events", ledger_row), "daily": ("borrower_daily", daily_row),
           "hourly": ("borrower_hourly", hourly_row)}
DEAD_LETTERS = "sink_dead_letters"
DEAD_LETTER_COLUMNS = ("table_name", "error_code", "error_name", "message", "source_topic",
                       "source_partition", "source_offset", "row", "dead_lettered_at")
#: What a borrower value that is not a pseudonym becomes in a dead letter (it might be a raw id).
REDACTED = "<redacted: not a pseudonym>"
#: What the test-only poison fault writes as the borrower: refused by ClickHouse's constraint.
POISON_BORROWER = "fault-injection-not-a-pseudonym"
_HEX = frozenset("0123456789abcdef")
Source = tuple[str, int, int]  # topic, partition, offset of the record a row came from


@dataclass(slots=True)
class Batch:
    rows: dict[str, list[list[Any]]] = field(default_factory=lambda: defaultdict(list))
    #: table -> source coordinates of each row of ``rows[table]`` (same order)
    sources: dict[str, list[Source]] = field(default_factory=lambda: defaultdict(list))
    #: recompute kind -> (borrower, bucket) to rebuild -> the highest version asked for it
    recomputes: dict[str, dict[tuple[str, int], int]] = field(default_factory=dict)
    offsets: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    row_count: int = 0
    newest_admitted_ms: int = 0
    #: erasures met in this batch, in order: (borrower, request id, institution)
    erasures: list[tuple[str, str, str, int]] = field(default_factory=list)
    #: cancels met: (borrower, lender, event id withdrawn) -> the cancel's version
    cancels: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def erase(self, borrower: str, request_id: str, institution: str, at_ms: int) -> None:
        """Drop the borrower's rows gathered so far (the erasure deletes what came before it)
        and remember the erasure; rows that come after it in the batch are kept."""
        for table, rows in self.rows.items():
            if table in BORROWER_TABLES:
                keep = [row[0] != borrower for row in rows]
                kept = [row for row, k in zip(rows, keep, strict=True) if k]
                self.row_count -= len(rows) - len(kept)
                self.rows[table] = kept
                # sources stay aligned with rows (dead letters name each row's source)
                self.sources[table] = [src for src, k in
                                       zip(self.sources[table], keep, strict=True) if k]
        for kind, wanted in self.recomputes.items():
            self.recomputes[kind] = {b: v for b, v in wanted.items() if b[0] != borrower}
        self.cancels = {c: v for c, v in self.cancels.items() if c[0] != borrower}
        self.erasures.append((borrower, request_id, institution, at_ms))

    def token(self, table: str) -> str:
        ranges = ",".join(f"{tp.topic}/{tp.partition}/{a}-{b}"
                          for tp, (a, b) in sorted(self.offsets.items()))
        digest = hashlib.blake2b(ranges.encode(), digest_size=16).hexdigest()
        return f"{table}:{digest}"


class ClickHouseSink:
    def __init__(self, settings: Settings, ch: ClickHouse) -> None:
        self.settings = settings
        self.ch = ch
        topics = settings.topics
        self.group_id = f"{settings.registry_app_id}-sink"
        ns = settings.kafka_namespace.replace(".", r"\.")
        self.pattern = (rf"^({ns}registry\.(activity|consent-audit)|"
                        rf"{topics.rejected_pattern.lstrip('^').rstrip('$')})$")
        self._activity = codec_for(ACTIVITY_BATCH)
        self._consent = codec_for(CONSENT_CHANGE)
        self._rejection = codec_for(REJECTION)
        self._calendar = Calendar(settings.tz)
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self._poison_event_id = settings.faults.sink_poison_event_id or None
        self.committed_cycles = 0
        #: newest admission time known to be in ClickHouse on every partition it consumed
        #: (None until the first batch landed or the first empty read)
        self.as_of_ms: int | None = None

    # --- records -> rows ----------------------------------------------------------------
    def _add(self, batch: Batch, record: ConsumerRecord) -> None:
        topic = record.topic
        source = (topic, record.partition, record.offset)
        try:
            if topic == self.settings.topics.activity:
                self._add_activity(batch, self._activity.decode(record.value), source)
            elif topic == self.settings.topics.consent_audit:
                batch.rows["consent_audit"].append(
                    consent_row(self._consent.decode(record.value)))
                batch.sources["consent_audit"].append(source)
                batch.row_count += 1
            else:
                batch.rows["rejections"].append(
                    rejection_row(self._rejection.decode(record.value), self.settings.tz))
                batch.sources["rejections"].append(source)
                batch.row_count += 1
        except CodecError:
            # internal topics are written only by the registry: a record that does not decode
            # is a bug or tampering; stop rather than skip it silently
            log.error("undecodable record at %s/%s/%s", topic, record.partition, record.offset)
            raise
        tp = TopicPartition(topic, record.partition)
        first, _ = batch.offsets.get(tp, (record.offset, record.offset))
        batch.offsets[tp] = (first, record.offset)

    def _add_activity(self, batch: Batch, record: dict[str, Any], source: Source) -> None:
        """One ``registry.activity`` record: legacy ``items`` (v1/v2) in their order, then the
        typed arrays of v3 in theirs (erasures, ledger rows, bucket rows, recomputes: a v3
        record with an erasure holds nothing else)."""
        for item in record["items"]:
            kind = item["kind"]
            if kind == "erase":
                batch.erase(item["borrower"], item["request_id"], item["institution"],
                            item["occurred_at_ms"])
            elif kind.startswith("recompute"):
                self._add_recompute(batch, kind == "recompute_daily", item)
            else:
                self._add_row(batch, kind, item, source)
        for erase in record["erasures"]:
            batch.erase(erase["borrower"], erase["request_id"], erase["institution"],
                        erase["requested_at_ms"])
        for row in record["ledger"]:
            self._add_row(batch, "ledger", row, source)
        for row in record["buckets"]:
            self._add_row(batch, "daily" if row["daily"] else "hourly", row, source)
        for fix in record["recomputes"]:
            self._add_recompute(batch, fix["daily"], fix)

    @staticmethod
    def _add_recompute(batch: Batch, daily: bool, item: dict[str, Any]) -> None:
        wanted = batch.recomputes.setdefault("recompute_daily" if daily else "recompute_hourly",
                                             {})
        bucket = (item["borrower"], item["bucket"])
        wanted[bucket] = max(wanted.get(bucket, -1), item["version"])

    def _add_row(self, batch: Batch, kind: str, item: dict[str, Any], source: Source) -> None:
        table, to_row = _ROW_OF[kind]
        row = to_row(item)
        if kind == "ledger":
            if item["event_id"] == self._poison_event_id:
                row[0] = POISON_BORROWER  # test-only fault: ClickHouse refuses it
            batch.newest_admitted_ms = max(batch.newest_admitted_ms, item["admitted_at_ms"])
            if item.get("cancels_event_id"):
                cancel = (item["borrower"], item["lender_id"], item["cancels_event_id"])
                batch.cancels[cancel] = max(batch.cancels.get(cancel, -1), item["version"])
        batch.rows[table].append(row)
        batch.sources[table].append(source)
        batch.row_count += 1

    # --- writing ------------------------------------------------------------------------
    def _write(self, batch: Batch) -> None:
        # erasures first: they delete what earlier batches stored; the batch's own rows of
        # the borrower from before the erasure were dropped when it was met (Batch.erase)
        for borrower, request_id, institution, at_ms in batch.erasures:
            erase_borrower(self.ch, borrower, request_id=request_id, institution=institution,
                           requested_at_ms=at_ms,
                           after_first_delete=self._maybe_inject_erasure_crash)
        for table, rows in batch.rows.items():
            if not rows:
                continue
            started = time.perf_counter()
            token = batch.token(table)
            columns = TABLE_COLUMNS[table]

            def insert(block: Any, block_token: str, table: str = table,
                       columns: tuple[str, ...] = columns) -> None:
                self.ch.insert(table, block, columns, dedup_token=block_token)

            refused = insert_isolating(insert, rows, token)
            if refused:
                self._dead_letter(table, columns, rows, batch.sources[table], refused, token)
            METRICS.sink_insert_seconds.observe(time.perf_counter() - started)
            METRICS.sink_batch_rows.observe(len(rows))
            METRICS.sink_rows.inc(table, amount=len(rows) - len(refused))
        # corrections read the ledger back, so they run after every ledger row is in
        if batch.cancels:
            for kind, found in zip(("recompute_daily", "recompute_hourly"), cancelled_buckets(
                    self.ch, self._calendar, batch.cancels), strict=True):
                wanted = batch.recomputes.setdefault(kind, {})
                for bucket, version in found.items():
                    wanted[bucket] = max(wanted.get(bucket, -1), version)
        for kind, wanted in sorted(batch.recomputes.items()):
            recompute(self.ch, self._calendar, self.settings.tz, kind, wanted)

    def _dead_letter(self, table: str, columns: tuple[str, ...], rows: list[list[Any]],
                     sources: list[Source], refused: list[Refusal], token: str) -> None:
        """Store the refused rows in ``sink_dead_letters`` (idempotent: token + replacing key)."""
        first = refused[0].error
        log.warning("ClickHouse refused %d of %d rows for %s (%s); they go to %s",
                    len(refused), len(rows), table, first.label or "no code", DEAD_LETTERS)
        now = ts(int(time.time() * 1000))
        letters = []
        for index, error in refused:
            topic, partition, offset = sources[index]
            text, message = _redacted(columns, rows[index], str(error))
            letters.append([table, -1 if error.code is None else error.code, error.name or "",
                            message[:4000], topic, partition, offset, text, now])
            log.warning("dead letter: %s row from %s/%d/%d refused (%s)", table, topic,
                        partition, offset, error.label or "no code")
        self.ch.insert(DEAD_LETTERS, letters, DEAD_LETTER_COLUMNS,
                       dedup_token=f"{DEAD_LETTERS}:{token}")
        METRICS.sink_dead_letters.inc(table, amount=len(letters))

    async def _write_until_done(self, batch: Batch) -> bool:
        """Write ``batch``, retrying outages with back-off. Returns False if the sink was
        stopped while waiting to retry (the batch is then not written and its offsets must not
        be committed); raises a non-retriable :class:`ClickHouseError`."""
        delay = 0.5
        while True:
            try:
                await asyncio.to_thread(self._write, batch)
                return True
            except ClickHouseError as exc:
                if not exc.retriable:
                    # the message is not logged: ClickHouse quotes offending values in it
                    log.error("ClickHouse refused the sink's write (%s, %s); the sink stops "
                              "without committing", type(exc).__name__, exc.label or "no code")
                    raise
                METRICS.sink_failures.inc()
                log.warning("ClickHouse insert failed (%s); retrying the same batch in %.1fs",
                            exc, delay)
                try:
                    await asyncio.wait_for(self._stopping.wait(), delay)
                    return False  # stopping: leave the offsets uncommitted
                except TimeoutError:
                    pass
                delay = min(delay * 2, 10.0)

    # --- loop ---------------------------------------------------------------------------
    async def _fetch(self, consumer: AIOKafkaConsumer) -> Batch:
        batch = Batch()
        deadline = time.monotonic() + self.settings.sink_batch_ms / 1000
        while batch.row_count < self.settings.sink_batch_rows and not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            records = await consumer.getmany(timeout_ms=int(remaining * 1000) + 1,
                                             max_records=500)
            for tp in sorted(records):
                for record in records[tp]:
                    self._add(batch, record)
        return batch

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **self.settings.kafka_client_options(), group_id=self.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            metadata_max_age_ms=5000, max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        self._consumer = consumer
        await consumer.start()
        consumer.subscribe(pattern=self.pattern)
        try:
            while not self._stopping.is_set():
                batch = await self._fetch(consumer)
                if not batch.offsets:
                    if not self._stopping.is_set():
                        self.as_of_ms = max(self.as_of_ms or 0, int(time.time() * 1000))
                    continue
                if not await self._write_until_done(batch):
                    break
                self._maybe_inject_crash()
                try:
                    await consumer.commit({tp: last + 1 for tp, (_, last) in
                                           batch.offsets.items()})
                except (CommitFailedError, IllegalStateError, KafkaError) as exc:
                    # rows are in; the next owner of these partitions replays them and the
                    # replacing keys absorb the repeat
                    log.warning("offset commit failed after insert (%s)", exc)
                self.committed_cycles += 1
                if batch.newest_admitted_ms:
                    self.as_of_ms = max(self.as_of_ms or 0, batch.newest_admitted_ms)
        finally:
            await consumer.stop()

    def stop(self) -> None:
        self._stopping.set()

    def _maybe_inject_erasure_crash(self) -> None:
        """Test-only fault: die in the middle of an erasure (after the first table)."""
        if self.settings.faults.kill_during_erasure:
            log.warning("fault injection: SIGKILL during an erasure")
            os.kill(os.getpid(), signal.SIGKILL)

    def _maybe_inject_crash(self) -> None:
        """Test-only fault: die between the acknowledged insert and the offset commit."""
        every = self.settings.faults.kill_after_insert_cycles
        if every and self.committed_cycles + 1 >= every:
            log.warning("fault injection: SIGKILL after insert, before commit")
            os.kill(os.getpid(), signal.SIGKILL)


def _is_pseudonym(value: Any) -> bool:
    return (isinstance(value, str) and len(value) == PSEUDONYM_HEX_CHARS
            and set(value) <= _HEX)


def _redacted(columns: tuple[str, ...], row: list[Any], message: str) -> tuple[str, str]:
    """The row as JSON and the error message, with a non-pseudonym borrower redacted in both
    (it could be a raw national id, and ClickHouse quotes offending values in its message)."""
    values = dict(zip(columns, row, strict=True))
    borrower = values.get("borrower")
    if borrower is not None and not _is_pseudonym(borrower):
        values["borrower"] = REDACTED
        if str(borrower):
            message = message.replace(str(borrower), REDACTED)
    return json.dumps(values, default=str, ensure_ascii=False), message
