"""A row ClickHouse refuses is dead-lettered; every other row lands; the sink moves on.

A seeded history is published before the worker starts, so the sink meets a backlog and inserts
it in large batches (``SINK_BATCH_MS=5000``). The worker runs with the test-only fault
``FAULT_SINK_POISON_EVENT_ID``: the ledger row of one admitted event (chosen from the oracle)
gets a borrower value that ClickHouse's ``borrower_is_pseudonym`` CHECK constraint refuses, so
ClickHouse itself refuses that insert (469 VIOLATED_CONSTRAINT) and the sink must bisect it.

Asserted: the refused batch held thousands of ledger rows; ``sink_dead_letters`` holds exactly
that one row (table, error code and name, source coordinates on ``registry.activity``, the row
with its event id and the borrower redacted); the ledger holds every other admitted event once
and not that one; the daily and hourly buckets equal the oracle exactly (they are separate
rows, not refused); the sink's offsets reach the end (drained); ``/metrics`` counts one dead
letter; the worker keeps its PID and logs no traceback.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections import Counter

import pytest

from consumers.sink.loop import REDACTED
from streams.kafka.topics import ensure_lender_topics
from streams.lender.population import lenders
from streams.lender.simulator import SimulationParams, run_simulation
from streams.settings import Settings
from tests.support.oracle import expected_buckets, expected_rows, stored_buckets
from tests.support.pipeline import dump_clickhouse, wait_drained

pytestmark = pytest.mark.integration

_REFUSED = re.compile(r"ClickHouse refused (\d+) of (\d+) rows for admitted_events "
                      r"\(469 VIOLATED_CONSTRAINT\)")


def _metric(settings: Settings, name: str) -> float | None:
    url = f"http://127.0.0.1:{settings.api_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_one_refused_row_is_dead_lettered_and_the_rest_lands(
        settings: Settings, worker_factory) -> None:
    params = SimulationParams(seed=777, lenders=2, borrowers=2000, events=12_000, days=10,
                              consent_rate=0.7, duplicate_rate=0.01, late_rate=0.0,
                              malformed_rate=0.0, rate=0)
    for lender in lenders(params.lenders):
        await ensure_lender_topics(settings, lender.lender_id)
    result = await run_simulation(settings, params)
    assert result.acked == result.sent
    admitted = result.truth.admitted
    ids = Counter(ev.event_id for ev in admitted)
    poisoned = next(ev for ev in admitted[len(admitted) // 2:]
                    if ids[ev.event_id] == 1 and ev.event_type != "cancel")

    worker = worker_factory({"FAULT_SINK_POISON_EVENT_ID": poisoned.event_id,
                             "SINK_BATCH_MS": "5000"})
    pid = worker.proc.pid
    drained_after = await wait_drained(settings, timeout=300, worker=worker)
    dead_letter_metric = await asyncio.to_thread(
        _metric, settings, 'registry_sink_dead_letter_rows_total{table="admitted_events"}')
    assert worker.proc.poll() is None and worker.proc.pid == pid
    log = worker.log_path.read_text(errors="replace")
    assert worker.stop() == 0, worker.log_tail()

    refusals = [(int(a), int(b)) for a, b in _REFUSED.findall(log)]
    stored = dump_clickhouse(settings)
    letters = stored["dead_letters"]
    print(f"[sink-poison] {len(admitted)} admitted events; refused batches (refused, rows): "
          f"{refusals}; dead letters {len(letters)}; ledger rows {stored['ledger_rows']}; "
          f"drained {drained_after:.1f}s after the worker started")

    assert refusals and all(refused == 1 for refused, _ in refusals)
    assert refusals[0][1] >= 1000, "the poisoned row must sit in a batch of thousands"
    assert len(letters) == 1
    table, code, name, message, topic, partition, offset, row = letters[0]
    assert (table, code, name) == ("admitted_events", 469, "VIOLATED_CONSTRAINT")
    assert topic == settings.topics.activity and 0 <= partition < settings.registry_partitions
    assert offset >= 0
    row = json.loads(row)
    assert (row["event_id"], row["lender_id"], row["borrower"]) == (
        poisoned.event_id, poisoned.lender_id, REDACTED)
    assert row["amount_minor"] == poisoned.amount_minor
    assert "borrower_is_pseudonym" in message
    assert dead_letter_metric == 1.0

    assert stored["ledger_duplicates"] == 0
    assert stored["ledger_rows"] == len(admitted) - 1
    where = dump_clickhouse(settings, poisoned.event_id)[poisoned.event_id]
    assert where == ["sink_dead_letters"]
    daily, hourly = expected_buckets(admitted, settings.pseudonym_key_bytes, settings.tz)
    assert stored_buckets(stored["daily"]) == expected_rows(daily)
    assert stored_buckets(stored["hourly"]) == expected_rows(hourly)
    assert "Traceback" not in log
