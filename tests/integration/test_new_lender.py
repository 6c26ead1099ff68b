"""A lender that appears while the worker runs needs no code change, no operator and no
restart: bulk intake subscribes to the lender topics by pattern, so the next metadata refresh
(every few seconds) assigns the new lender's partitions and its events are admitted, while the
worker keeps its process, its Faust consumer and its HTTP server."""

from __future__ import annotations

import random
import time

import pytest

from schemas import national_id
from schemas.records import ConsentAction, ConsentRecord, EventType, LoanEvent
from streams.kafka.topics import ensure_lender_topics
from streams.lender.publisher import LenderPublisher
from streams.settings import Settings
from tests.support.pipeline import dump_clickhouse, wait_drained

pytestmark = pytest.mark.integration

DAY = 86_400_000


async def _publish_consented(settings: Settings, lender: str, borrower: str, n: int) -> None:
    now = int(time.time() * 1000)
    await ensure_lender_topics(settings, lender)
    async with LenderPublisher(settings, lender) as publisher:
        await publisher.publish_consent(
            ConsentRecord(lender, borrower, ConsentAction.GRANT, now - 30 * DAY))
        await publisher.flush()
        for i in range(n):
            await publisher.publish_event(LoanEvent(
                f"{lender}-{i}", lender, borrower, f"loan-{i}", EventType.DRAW, 10_000 + i,
                "CNY", now - DAY + i))
        await publisher.flush()


async def test_lender_added_while_running_is_picked_up(settings: Settings,
                                                       worker_factory) -> None:
    rng = random.Random(5)
    await _publish_consented(settings, "first-bank", national_id.generate(rng), 20)
    worker = worker_factory()
    await wait_drained(settings, timeout=180, worker=worker)
    pid = worker.proc.pid

    await _publish_consented(settings, "late-bank", national_id.generate(rng), 30)
    await wait_drained(settings, timeout=120, worker=worker)
    assert worker.proc.pid == pid and worker.proc.poll() is None
    assert worker.stop() == 0, worker.log_tail()
    log_text = worker.log_path.read_text(errors="replace")
    assert "restarting this worker" not in log_text

    stored = dump_clickhouse(settings, "late-bank-29")
    assert stored["late-bank-29"] == ["admitted_events"]
    ledger = dump_clickhouse(settings)["ledger_rows"]
    assert ledger == 50, f"ledger rows {ledger}:\n{worker.log_tail(40)}"
