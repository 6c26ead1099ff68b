"""Per-stage costs in µs/event, in one process, without a broker (``python -m bench.stages``).

Input: ``EVENTS`` loan events from the seeded simulator, encoded as lenders send them. Each
stage runs over all of them, timed alone, in the worker's order: decode -> validate ->
pseudonymise -> the validated hop (encode on ``registry.validated`` in bulk intake, decode in
the stream agent) -> dedup + consent (one Redis script call per batch against the real Redis
of ``REDIS_URL``, in batches of ``BATCH`` as the stream agent does) -> aggregate
(``Aggregator.process``)
-> state dump (the Faust table value) -> activity encode/decode -> sink rows
(``consumers.sink.rows``) -> one chDB insert of 20k ledger rows into a scratch database.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import emit
from consumers.clickhouse.client import connect
from consumers.clickhouse.migrations import apply_migrations
from consumers.sink.rows import TABLE_COLUMNS, daily_row, hourly_row, ledger_row
from schemas.calendar import HOUR_MS, Calendar
from schemas.codec import LOAN_EVENT, codec_for
from schemas.pseudonym import Pseudonymiser, partition_of
from schemas.validation import ValidationLimits, check_loan_record
from streams.aggregation import Aggregator, StateCodec
from streams.buckets import BucketPolicy
from streams.consent.store import ConsentStore
from streams.dedup import DedupStore
from streams.lender.scenario import generate_sequence
from streams.lender.sim_types import ItemKind, SimulationParams
from streams.runtime.redis_client import connect_redis
from streams.settings import Settings

EVENTS = 20_000
BATCH = 2000
PARTITIONS = 6


def timed(fn: Callable[[], Any], n: int) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return (time.perf_counter() - started) / n * 1e6, out


def validated_dict(rec: dict[str, Any], pseudonym: str, now_ms: int, offset: int
                   ) -> dict[str, Any]:
    """The ValidatedEvent bulk intake builds (streams.intake.validate.Validator)."""
    return {"borrower": pseudonym, "lender_id": rec["lender_id"], "event_id": rec["event_id"],
            "loan_id": rec["loan_id"], "event_type": rec["event_type"],
            "amount_minor": rec["amount_minor"], "currency": rec["currency"],
            "occurred_at_ms": rec["occurred_at_ms"], "product": rec["product"],
            "appended_at_ms": now_ms, "source_topic": f"lenders.{rec['lender_id']}.loans",
            "source_partition": 0, "source_offset": offset, "consented": True}


async def redis_stages(settings: Settings, keys: list[tuple[str, str, int, int]],
                       consent_q: list[tuple[str, str, int]]) -> dict[str, float]:
    redis = connect_redis(settings)
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    dedup = DedupStore(redis, prefix, 1)
    consent = ConsentStore(redis, prefix)
    n = len(keys)
    try:
        grants = sorted({(p, lender, True, 0) for p, lender, _ in consent_q})
        for i in range(0, len(grants), BATCH):
            await consent.record(grants[i:i + BATCH], {})
        started = time.perf_counter()
        for i in range(0, n, BATCH):
            await dedup.check_and_mark(keys[i:i + BATCH])
        dedup_us = (time.perf_counter() - started) / n * 1e6
        started = time.perf_counter()
        for i in range(0, n, BATCH):
            await consent.in_force(consent_q[i:i + BATCH])
        consent_us = (time.perf_counter() - started) / n * 1e6
        async for key in redis.scan_iter(match=f"{prefix}*", count=5000):
            await redis.delete(key)
    finally:
        await redis.aclose()
    return {"dedup (Redis script: SET NX GET)": dedup_us,
            "consent (Redis script: ZREVRANGEBYSCORE)": consent_us}


def main() -> None:
    settings = Settings()
    params = SimulationParams(seed=5, lenders=5, borrowers=3000, days=30, consent_rate=1.0,
                              duplicate_rate=0.0, late_rate=0.0, malformed_rate=0.0,
                              cancel_rate=0.0,
                              now_ms=int(time.time()) * 1000)
    loans = [it.loan for it in generate_sequence(params) if it.kind is ItemKind.LOAN][:EVENTS]
    n = len(loans)
    codec = codec_for(LOAN_EVENT)
    raw = [codec.encode(ev.to_avro()) for ev in loans]
    now_ms = int(time.time() * 1000)
    limits = ValidationLimits.from_settings(settings)
    us: dict[str, float] = {}

    us["decode (Avro)"], recs = timed(lambda: [codec.decode(b) for b in raw], n)
    us["validate"], events = timed(
        lambda: [check_loan_record(r, lender_id=r["lender_id"], now_ms=now_ms, limits=limits)
                 for r in recs], n)
    pseudonymise = Pseudonymiser(settings.pseudonym_key_bytes)
    us["pseudonymise (HMAC)"], pseudonyms = timed(
        lambda: [pseudonymise(ev.borrower_id) for ev in events], n)
    keys = [(ev.lender_id, ev.event_id, 0, i) for i, ev in enumerate(events)]
    consent_q = [(p, ev.lender_id, ev.occurred_at_ms)
                 for p, ev in zip(pseudonyms, events, strict=True)]
    us.update(asyncio.run(redis_stages(settings, keys, consent_q)))

    admitted = [validated_dict(r, p, now_ms, i)
                for i, (r, p) in enumerate(zip(recs, pseudonyms, strict=True))]
    by_partition: dict[int, list[list[dict[str, Any]]]] = {}
    for i in range(0, n, BATCH):
        parts: dict[int, list[dict[str, Any]]] = {}
        for ev in admitted[i:i + BATCH]:
            parts.setdefault(partition_of(ev["borrower"], PARTITIONS), []).append(ev)
        for p, evs in parts.items():
            by_partition.setdefault(p, []).append(evs)
    val_codec = codec_for("registry.internal.ValidatedBatch")
    messages = [(p, evs) for p, batches in by_partition.items() for evs in batches]
    us["validated hop (encode)"], encoded = timed(
        lambda: [(p, val_codec.encode({"events": evs, "erase": None})) for p, evs in messages],
        n)
    us["validated hop (decode)"], decoded = timed(
        lambda: [(p, val_codec.decode(b)["events"]) for p, b in encoded], n)
    for _, evs in decoded:
        for ev in evs:
            ev["admitted_at_ms"] = now_ms

    aggregator = Aggregator(BucketPolicy(Calendar(settings.tz), settings.grace_hours * HOUR_MS,
                                         settings.hourly_state_hours * HOUR_MS))
    state_codec = StateCodec()
    table: dict[bytes, bytes] = {}
    outputs: list[list[dict[str, Any]]] = []
    agg_s = dump_s = 0.0
    for offset, (p, evs) in enumerate(decoded):
        started = time.perf_counter()
        activity, states = aggregator.process(
            p, offset, evs, lambda b: state_codec.load(table.get(b.encode())))[:2]
        mid = time.perf_counter()
        for borrower, state in states.items():
            table[borrower.encode()] = state_codec.dump(state)
        dump_s += time.perf_counter() - mid
        agg_s += mid - started
        outputs.append(activity)
    us["aggregate (incl. state load)"] = agg_s / n * 1e6
    us["state dump (table value)"] = dump_s / n * 1e6
    act_codec = codec_for("registry.internal.ActivityBatch")
    us["activity hop (encode)"], act = timed(
        lambda: [act_codec.encode(out) for out in outputs], n)
    us["activity hop (decode, sink)"], act_records = timed(
        lambda: [act_codec.decode(b) for b in act], n)
    us["sink rows (consumers.sink.rows)"], rows = timed(
        lambda: [("ledger", ledger_row(r)) for rec in act_records for r in rec["ledger"]]
        + [("daily", daily_row(r)) if r["daily"] else ("hourly", hourly_row(r))
           for rec in act_records for r in rec["buckets"]], n)
    ledger = [r for kind, r in rows if kind == "ledger"][:20_000]
    folder = Path(tempfile.mkdtemp(prefix="bench-stages-ch-"))
    ch = connect(Settings(registry_data_dir=folder, clickhouse_url="",
                          clickhouse_database="scratch"))
    apply_migrations(ch)
    started = time.perf_counter()
    ch.insert("admitted_events", ledger, TABLE_COLUMNS["admitted_events"], dedup_token="bench")
    insert_us = (time.perf_counter() - started) / len(ledger) * 1e6
    bucket_rows = sum(1 for kind, _ in rows if kind != "ledger")
    # one event costs one ledger row plus its share of bucket rows
    us["chDB insert (per row)"] = insert_us
    us["chDB insert (per event, ledger + bucket rows)"] = insert_us * len(rows) / n
    ch.close()
    emit({"events": n, "rows_per_event": len(rows) / n, "bucket_rows": bucket_rows,
          "us_per_event": {k: round(v, 2) for k, v in us.items()},
          "pid": os.getpid()})


if __name__ == "__main__":
    main()
