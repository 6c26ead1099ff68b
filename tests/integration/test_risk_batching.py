"""Group commit of the risk API (:mod:`consumers.risk.batcher`) against a real ClickHouse.

* Requests that queue while a batch is at ClickHouse form the next batch: one insert and one
  read for all of them, and each answer counts every inquiry recorded before its read (its
  own, its batch's, the earlier batches').
* A failed inquiry insert fails every request of its batch, and nothing is answered.
* Many concurrent HTTP requests: every 200 answer has exactly one inquiry row.

The first batch is held at its insert by a gate on the facade (threading events, no sleeps),
so the batch boundaries are known exactly.
"""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from consumers.api.server import build_app
from consumers.clickhouse.client import ClickHouse, connect
from consumers.clickhouse.errors import ClickHouseUnavailable
from consumers.clickhouse.migrations import apply_migrations
from consumers.lag.monitor import LagMonitor
from consumers.risk.batcher import FrequencyBatcher
from consumers.risk.frequency import Ask
from consumers.risk.inquiries import Inquiry
from schemas.calendar import local_today
from schemas.national_id import generate
from schemas.pseudonym import Pseudonymiser
from streams.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ClickHouse:
    """The suite's ``clickhouse`` fixture when it exists, else one embedded chDB per module."""
    try:
        return request.getfixturevalue("clickhouse")
    except pytest.FixtureLookupError:
        pass
    settings = Settings(registry_data_dir=tmp_path_factory.mktemp("batch"),
                        clickhouse_database="t_" + uuid.uuid4().hex[:12])
    client = connect(settings)
    apply_migrations(client)
    return client


class Gated:
    """The real facade; the first insert waits for ``release`` after setting ``entered``.
    Counts inserts (rows each) and queries; ``fail_inserts`` makes inserts raise."""

    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch
        self.entered = threading.Event()
        self.release = threading.Event()
        self.insert_rows: list[int] = []
        self.queries = 0
        self.fail_inserts = False

    def insert(self, table: str, rows: Any, column_names: Any) -> None:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(60), "the test never released the first insert"
        if self.fail_inserts:
            raise ClickHouseUnavailable("injected: insert refused")
        self.insert_rows.append(len(rows))
        self.ch.insert(table, rows, column_names)

    def query(self, sql: str, parameters: dict[str, Any] | None = None, *,
              settings: dict[str, Any] | None = None) -> list[tuple]:
        self.queries += 1
        return self.ch.query(sql, parameters, settings=settings)


def _ask(borrower: str, institution: str, tz: Any) -> tuple[Inquiry, Ask]:
    return (Inquiry(datetime.now(UTC), institution, borrower, "loan_application", 7,
                    uuid.uuid4().hex),
            Ask(borrower, 7, tz, local_today(tz)))


def _rows(ch: ClickHouse, borrower: str) -> int:
    return int(ch.query("SELECT count() FROM inquiries WHERE borrower = {b:String}",
                        {"b": borrower})[0][0])


async def test_queued_requests_share_one_insert_and_one_read(ch: ClickHouse) -> None:
    tz = Settings().tz
    borrower = "batch-" + uuid.uuid4().hex
    gated = Gated(ch)
    batcher = FrequencyBatcher(gated)  # type: ignore[arg-type]
    first = asyncio.ensure_future(batcher.answer(*_ask(borrower, "bank-a", tz)))
    await asyncio.to_thread(gated.entered.wait, 60)  # batch 1 (bank-a) is at its insert
    institutions = ["bank-a", "bank-b", "bank-c", "bank-b", "bank-a"]
    rest = [asyncio.ensure_future(batcher.answer(*_ask(borrower, inst, tz)))
            for inst in institutions]
    await asyncio.sleep(0)  # one loop turn: every task above has queued its ask
    gated.release.set()
    answers = await asyncio.gather(first, *rest)
    assert gated.insert_rows == [1, 5]
    assert gated.queries == 2
    assert [a.inquiring_institutions for a in answers] == [1, 3, 3, 3, 3, 3]
    assert (batcher.batches, batcher.asks) == (2, 6)
    assert _rows(ch, borrower) == 6


async def test_failed_insert_fails_the_whole_batch_and_answers_nothing(ch: ClickHouse) -> None:
    tz = Settings().tz
    borrower = "batch-" + uuid.uuid4().hex
    gated = Gated(ch)
    gated.fail_inserts = True
    batcher = FrequencyBatcher(gated)  # type: ignore[arg-type]
    first = asyncio.ensure_future(batcher.answer(*_ask(borrower, "bank-a", tz)))
    await asyncio.to_thread(gated.entered.wait, 60)
    rest = [asyncio.ensure_future(batcher.answer(*_ask(borrower, "bank-b", tz)))
            for _ in range(3)]
    await asyncio.sleep(0)
    gated.release.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert [type(r) for r in results] == [ClickHouseUnavailable] * 4
    assert gated.queries == 0  # nothing was read: no answer without its inquiry
    assert _rows(ch, borrower) == 0


async def test_concurrent_http_requests_each_have_one_inquiry_row(
    ch: ClickHouse, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = Settings(registry_data_dir=tmp_path_factory.mktemp("batch-app"),
                        clickhouse_database=ch.database, api_tokens="bank-a:ta,bank-b:tb")
    national_id = generate(random.Random(uuid.uuid4().int))
    borrower = Pseudonymiser(settings.pseudonym_key_bytes)(national_id)
    app = build_app(settings, ch, LagMonitor(settings), as_of_ms=lambda: 1_700_000_000_000)
    n = 48
    async with TestClient(TestServer(app)) as api:
        async def ask(i: int) -> tuple[int, dict[str, Any]]:
            response = await api.post(
                "/api/v1/frequency",
                headers={"Authorization": f"Bearer {'ta' if i % 2 else 'tb'}",
                         "X-Request-Id": f"r{i}"},
                json={"borrower_id": national_id, "window_days": 3})
            return response.status, await response.json()

        results = await asyncio.gather(*(ask(i) for i in range(n)))
    assert [status for status, _ in results] == [200] * n
    assert {body["request_id"] for _, body in results} == {f"r{i}" for i in range(n)}
    assert {body["as_of"] for _, body in results} == {"2023-11-14T22:13:20.000Z"}
    # every answer counts itself; the last batch reads after every insert: both institutions
    counts = {body["inquiring_institutions"] for _, body in results}
    assert counts <= {1, 2} and max(counts) == 2
    assert _rows(ch, borrower) == n
    ids = ch.query("SELECT request_id FROM inquiries WHERE borrower = {b:String}",
                   {"b": borrower})
    assert sorted(r[0] for r in ids) == sorted(f"r{i}" for i in range(n))
