"""The full Quix Streams peer: the registry's job, done the Quix Streams way, on the same input.

``python -m bench.quix_peer --bootstrap B --topics T1,T2 --n N --namespace NS --redis-url U
--consent-prefix P --chdb DIR`` (from the Quix venv, :data:`bench.QUIX_PYTHON`; the
pseudonym key comes from ``BENCH_PSEUDONYM_KEY``, never from argv).

What it does, per lender message (Quix Streams 3.x calls user code once per message):

1. decode with our codec (:mod:`schemas.codec`), size check, validate with the registry's
   rules (:func:`schemas.validation.check_loan_record`), bind the lender to the topic, HMAC
   pseudonym (:class:`schemas.pseudonym.Pseudonymiser`, the same key as the registry's
   deployment); a bad message becomes a rejection row;
2. repartition by pseudonym: one topic of the peer's own, keyed by pseudonym, JSON values
   (``to_topic``; see the comment in :func:`full_peer` for why not ``group_by``);
3. on the borrower's partition: de-duplication of (lender, event_id) and the consent check
   at ``occurred_at``, in ONE Redis round trip per event (a pipeline of the registry's own
   scripts, :data:`streams.dedup._CHECK_AND_MARK` and :data:`streams.consent.store._IN_FORCE`,
   with the registry's key layout). The registry calls them once per batch record; the Quix
   DataFrame has no batch operator, and buffering events outside its offset tracking would
   break at-least-once, so per event is what a Quix pipeline does;
4. tumbling event-time windows per borrower: local days (the registry's time zone, as a
   fixed UTC offset) with ``GRACE_HOURS`` grace and UTC hours with ``HOURLY_GRACE_HOURS``
   grace, reducing draws, amounts, repayments, defaults, lenders and the last draw time
   (RocksDB state + changelog topics); ``.current()`` emits the bucket after each event;
5. ClickHouse through clickhouse-connect on embedded chDB (its own folder, the registry's
   migrations, the registry's row functions :mod:`consumers.sink.rows`): ledger rows, daily and
   hourly bucket rows (the newest version per bucket and flush) and rejection rows, in Quix
   ``BatchingSink`` s, which Quix flushes before it commits the offsets of a checkpoint.

Consent records are not ingested here: the look-ups read the intervals the registry's consent
agent stored for the same lender topics (``--consent-prefix``), read-only, so the peer sees
the same consent without a barrier. Dedup marks go to a prefix of the peer's own. Late events
beyond the grace are dropped by Quix windows (the registry recomputes such buckets from the
ledger instead); velocity alerts and erasure are not part of the peer.

Clock: from the first lender record consumed until ``Application.run()`` returned after the
final checkpoint, i.e. once every input record went through both stages, every sink was
flushed into ClickHouse and the offsets were committed. It prints ``{"events", "seconds",
"events_per_s", ...}`` with counts of what was admitted and rejected.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from bench import emit
from schemas.codec import LOAN_EVENT, codec_for
from schemas.errors import ValidationError
from schemas.pseudonym import Pseudonymiser
from schemas.records import REGISTRY_CURRENCY
from schemas.topics import TopicNames
from schemas.validation import ValidationLimits, check_loan_record

GRACE_HOURS = 72  # the registry's default ``GRACE_HOURS``
HOURLY_GRACE_HOURS = 48  # the registry's default ``HOURLY_STATE_HOURS``
MAX_RECORD_BYTES = 16384  # the registry's default ``MAX_RECORD_BYTES``
DEDUP_TTL_S = 90 * 86400
DAY_MS, HOUR_MS = 86_400_000, 3_600_000


class _Progress:
    """Counts both stages so the run can stop once all N inputs went all the way through."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.consumed = 0
        self.forwarded = 0  # valid events sent through the repartition topic
        self.decided = 0  # of those, decided on the borrower's partition
        self.admitted = 0
        self.rejected: dict[str, int] = {}
        self.first: float | None = None

    def done(self) -> bool:
        return self.consumed >= self.n and self.decided >= self.forwarded


def _open_clickhouse(folder: Path) -> Any:
    """The registry's ClickHouse facade on a chDB folder of the peer's own, migrated."""
    import clickhouse_connect

    from consumers.clickhouse.client import ClickHouse
    from consumers.clickhouse.migrations import apply_migrations

    client = clickhouse_connect.get_client(dsn=f"chdb://{folder}")
    client.command("CREATE DATABASE IF NOT EXISTS `bench`")
    client.database = "bench"
    ch = ClickHouse(client, "bench")
    apply_migrations(ch)
    return ch


def _initial(ev: dict[str, Any]) -> dict[str, Any]:
    return _add({"draws": 0, "draw_amount_minor": 0, "repayments": 0, "repaid_amount_minor": 0,
                 "defaults": 0, "lenders": [], "last_draw_at_ms": None, "n": 0}, ev)


def _add(agg: dict[str, Any], ev: dict[str, Any]) -> dict[str, Any]:
    """The registry's bucket arithmetic (:class:`streams.buckets.Bucket`), on a JSON value."""
    kind = ev["event_type"]
    amount = ev["amount_minor"] if ev["currency"] == REGISTRY_CURRENCY else 0
    if kind == "draw":
        agg["draws"] += 1
        agg["draw_amount_minor"] += amount
        last = agg["last_draw_at_ms"]
        agg["last_draw_at_ms"] = ev["occurred_at_ms"] if last is None else max(
            last, ev["occurred_at_ms"])
    elif kind == "repayment":
        agg["repayments"] += 1
        agg["repaid_amount_minor"] += amount
    else:
        agg["defaults"] += 1
    if ev["lender_id"] not in agg["lenders"]:
        agg["lenders"].append(ev["lender_id"])
    agg["n"] += 1
    return agg


def full_peer(args: argparse.Namespace) -> None:
    import redis
    from quixstreams import Application, message_context
    from quixstreams.models import TopicConfig
    from quixstreams.models.serializers import Deserializer
    from quixstreams.sinks import BatchingSink, SinkBatch

    from consumers.sink.rows import (
        TABLE_COLUMNS,
        daily_row,
        hourly_row,
        ledger_row,
        rejection_row,
    )
    from streams.consent.store import _IN_FORCE
    from streams.dedup import _CHECK_AND_MARK, DedupStore

    names = TopicNames(args.namespace)
    codec = codec_for(LOAN_EVENT)
    limits = ValidationLimits()
    pseudonymise = Pseudonymiser(os.environ["BENCH_PSEUDONYM_KEY"].encode())
    tz = ZoneInfo(args.tz)
    offset_ms = int(datetime.now(UTC).astimezone(tz).utcoffset().total_seconds() * 1000)
    # Quix windows align to UTC days. Event times shifted by ``shift`` put local day starts on
    # UTC midnights; one day back keeps the shifted times in the past, since the broker
    # refuses record times more than ``log.message.timestamp.after.max.ms`` (1 h) ahead.
    shift = offset_ms - DAY_MS
    red = redis.Redis.from_url(args.redis_url)
    dedup_script = red.register_script(_CHECK_AND_MARK)
    consent_script = red.register_script(_IN_FORCE)
    dedup_prefix = f"benchquix-{uuid.uuid4().hex[:8]}:"
    # the registry's key layout (DedupStore._key reads only the prefix), without its asyncio
    # client
    dedup_key = partial(DedupStore._key, SimpleNamespace(_prefix=dedup_prefix))
    ch = _open_clickhouse(Path(args.chdb))
    progress = _Progress(args.n)

    class Loan(Deserializer):
        """Bytes -> the decoded record, or a marker carrying the reason it did not decode."""

        def __call__(self, value: bytes, ctx: Any) -> Any:
            if not value:
                return {"_reject": "MALFORMED", "_detail": "empty message"}
            if len(value) > MAX_RECORD_BYTES:
                return {"_reject": "OVERSIZED", "_detail": f"{len(value)} bytes"}
            try:
                return codec.decode(value)
            except Exception as exc:
                reason = getattr(exc, "reason", None)
                return {"_reject": str(getattr(reason, "value", reason) or "MALFORMED"),
                        "_detail": type(exc).__name__}

    def event_time(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
        """Windows run on event time, shifted so that UTC-aligned days are local days."""
        at = value.get("occurred_at_ms") if isinstance(value, dict) else None
        return (at if isinstance(at, int) else timestamp) + shift

    def rejection(reason: str, detail: str, lender: str, event_id: Any, topic: str,
                  partition: int, offset: int) -> dict[str, Any]:
        progress.rejected[reason] = progress.rejected.get(reason, 0) + 1
        return {"_rejection": {
            "lender_id": lender, "reason": reason, "detail": detail,
            "event_id": event_id[:64] if isinstance(event_id, str) else None,
            "source_topic": topic, "source_partition": partition, "source_offset": offset,
            "rejected_at_ms": int(time.time() * 1000)}}

    def intake(record: dict[str, Any]) -> dict[str, Any]:
        """Stage 1: validate, bind the lender, pseudonymise (or a rejection)."""
        if progress.first is None:
            progress.first = time.perf_counter()
        progress.consumed += 1
        ctx = message_context()
        lender = names.lender_of(ctx.topic) or "?"
        if "_reject" in record:
            return rejection(record["_reject"], record["_detail"], lender, None, ctx.topic,
                             ctx.partition, ctx.offset)
        try:
            ev = check_loan_record(record, lender_id=lender, now_ms=int(time.time() * 1000),
                                   limits=limits)
        except ValidationError as exc:
            return rejection(exc.reason.value, f"field {exc.field}", lender,
                             record.get("event_id"), ctx.topic, ctx.partition, ctx.offset)
        progress.forwarded += 1
        return {"borrower": pseudonymise(ev.borrower_id), "lender_id": ev.lender_id,
                "event_id": ev.event_id, "loan_id": ev.loan_id,
                "event_type": ev.event_type.value, "amount_minor": ev.amount_minor,
                "currency": ev.currency, "occurred_at_ms": ev.occurred_at_ms,
                "product": ev.product, "source_topic": ctx.topic,
                "source_partition": ctx.partition, "source_offset": ctx.offset}

    def admit(ev: dict[str, Any]) -> dict[str, Any]:
        """Stage 2: dedup + consent, one Redis round trip (the registry's scripts)."""
        pipe = red.pipeline(transaction=False)
        # the script's layout (streams.dedup): ttl, one cancel flag per item ("0": the
        # bench workloads hold no cancels), then the positions
        dedup_script(keys=[dedup_key(ev["lender_id"], ev["event_id"])],
                     args=[DEDUP_TTL_S, "0",
                           f"{ev['source_partition']}:{ev['source_offset']}"],
                     client=pipe)
        consent_script(keys=[f"{args.consent_prefix}c:{ev['borrower']}:{ev['lender_id']}"],
                       args=[ev["occurred_at_ms"]], client=pipe)
        (seen,), (in_force,) = pipe.execute()
        progress.decided += 1
        if int(seen) & 3 == 2:
            return rejection("DUPLICATE", "event_id already received", ev["lender_id"],
                             ev["event_id"], ev["source_topic"], ev["source_partition"],
                             ev["source_offset"])
        if int(in_force) != 1:
            return rejection("NO_CONSENT", "no consent in force at occurred_at",
                             ev["lender_id"], ev["event_id"], ev["source_topic"],
                             ev["source_partition"], ev["source_offset"])
        progress.admitted += 1
        ev["admitted_at_ms"] = int(time.time() * 1000)
        ev["version"] = ev["source_offset"]
        return ev

    def check_done(_value: Any) -> None:
        if progress.done():
            app.stop()

    class TableSink(BatchingSink):
        """One ClickHouse insert per table per checkpoint and partition."""

        def __init__(self, table: str, to_row: Any, bucket_key: bool = False) -> None:
            super().__init__()
            self.table, self.to_row, self.bucket_key = table, to_row, bucket_key
            self.rows = 0

        def write(self, batch: SinkBatch) -> None:
            if self.bucket_key:  # newest state per (borrower, bucket) within the flush
                newest: dict[tuple[Any, Any], list[Any]] = {}
                for item in batch:
                    row = self.to_row(item)
                    key = (row[0], row[1])
                    if key not in newest or newest[key][-1] <= row[-1]:
                        newest[key] = row
                rows = list(newest.values())
            else:
                rows = [self.to_row(item) for item in batch]
            if rows:
                ch.insert(self.table, rows, TABLE_COLUMNS[self.table])
                self.rows += len(rows)

    def bucket_row(daily: bool) -> Any:
        def to_row(item: Any) -> list[Any]:
            win = item.value
            agg = win["value"]
            out = {**agg, "borrower": _key(item.key), "version": agg["n"],
                   "lenders": sorted(agg["lenders"]),
                   # local day number; UTC hour start in ms
                   "bucket": win["start"] // DAY_MS + 1 if daily else win["start"] - shift}
            return (daily_row if daily else hourly_row)(out)
        return to_row

    def _key(key: Any) -> str:
        return key.decode() if isinstance(key, bytes) else str(key)

    app = Application(broker_address=args.bootstrap,
                      consumer_group=f"bench-quix-full-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", loglevel="ERROR",
                      state_dir=tempfile.mkdtemp(prefix="bench-quix-full-"))
    sinks = {"rejections": TableSink("rejections", lambda i: rejection_row(
                 i.value["_rejection"], tz)),
             "admitted_events": TableSink("admitted_events", lambda i: ledger_row(i.value)),
             "borrower_daily": TableSink("borrower_daily", bucket_row(True), True),
             "borrower_hourly": TableSink("borrower_hourly", bucket_row(False), True)}
    validated = app.topic(f"bench-quix-validated-{uuid.uuid4().hex[:8]}",
                          key_serializer="str", key_deserializer="str",
                          value_serializer="json", value_deserializer="json",
                          config=TopicConfig(num_partitions=args.partitions,
                                             replication_factor=1))
    frames = []
    for name in args.topics.split(","):
        topic = app.topic(name, key_deserializer="bytes", value_deserializer=Loan(),
                          timestamp_extractor=event_time)
        frames.append(app.dataframe(topic).apply(intake))
    sdf = frames[0]
    for other in frames[1:]:
        sdf = sdf.concat(other)
    bad = sdf.filter(lambda v: "_rejection" in v)
    bad.sink(sinks["rejections"])
    bad.update(check_done)
    # Repartition by pseudonym. Not ``group_by``: on dataframes concatenated from several
    # topics it makes one repartition topic (and state store) per origin topic, i.e. windows
    # per lender; the registry's windows span lenders. ``to_topic`` with the pseudonym as key
    # into ONE topic is what ``group_by`` does inside, for all lenders at once.
    sdf.filter(lambda v: "_rejection" not in v).to_topic(validated, key=lambda v: v["borrower"])
    decided = app.dataframe(validated).apply(admit)
    refused = decided.filter(lambda v: "_rejection" in v)
    refused.sink(sinks["rejections"])
    refused.update(check_done)
    admitted = decided.filter(lambda v: "_rejection" not in v)
    admitted.sink(sinks["admitted_events"])
    (admitted.tumbling_window(DAY_MS, grace_ms=GRACE_HOURS * HOUR_MS)
     .reduce(_add, _initial).current().sink(sinks["borrower_daily"]))
    hourly = (admitted.tumbling_window(HOUR_MS, grace_ms=HOURLY_GRACE_HOURS * HOUR_MS)
              .reduce(_add, _initial).current())
    hourly.sink(sinks["borrower_hourly"])
    admitted.update(check_done)
    app.run()
    ended = time.perf_counter()
    if progress.first is None or not progress.done():
        raise SystemExit(f"stopped before all {args.n} records went through: {vars(progress)}")
    seconds = ended - progress.first
    # after the clock: what is queryable, counted like bench.e2e counts the registry's tables
    final = {table: ch.query(f"SELECT count() FROM {table} FINAL")[0][0]
             for table in ("admitted_events", "borrower_daily", "borrower_hourly")}
    emit({"events": progress.consumed, "seconds": seconds,
          "events_per_s": progress.consumed / seconds, "admitted": progress.admitted,
          "rejected": progress.rejected,
          "rows_inserted": {name: s.rows for name, s in sinks.items()},
          "rows_final": final, "bucket_rows": final["borrower_daily"] + final["borrower_hourly"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topics", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--consent-prefix", required=True)
    parser.add_argument("--chdb", required=True, help="an empty folder for embedded chDB")
    parser.add_argument("--tz", default="Asia/Shanghai")
    parser.add_argument("--partitions", type=int, default=6,
                        help="partitions of the pseudonym topic (the registry's)")
    full_peer(parser.parse_args())


if __name__ == "__main__":
    main()
