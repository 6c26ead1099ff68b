"""The batcher's linger under load: a lone client never waits; after a batch of N, the next
batch gathers up to N asks (at most ``LINGER_S`` after the previous batch ended)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from consumers.risk import batcher as batcher_module
from consumers.risk.batcher import FrequencyBatcher
from consumers.risk.frequency import Ask
from consumers.risk.inquiries import Inquiry

TZ = ZoneInfo("Asia/Shanghai")


class NullCH:
    """Records batch sizes; every borrower is unknown (zeros)."""

    def __init__(self) -> None:
        self.inserts: list[int] = []

    def insert(self, table: str, rows: Any, column_names: Any) -> None:
        self.inserts.append(len(rows))

    def query(self, sql: str, parameters: dict[str, Any] | None = None, *,
              settings: dict[str, Any] | None = None) -> list[tuple]:
        return []


def _ask(n: int) -> tuple[Inquiry, Ask]:
    borrower = f"{n:032x}"
    return (Inquiry(datetime.now(UTC), "bank-a", borrower, "loan_application", 7, str(n)),
            Ask(borrower, 7, TZ, date(2026, 3, 1)))


def test_a_lone_client_never_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batcher_module, "LINGER_S", 30.0)
    ch = NullCH()
    batcher = FrequencyBatcher(ch)  # type: ignore[arg-type]

    async def sequential() -> None:
        for n in range(5):
            await batcher.answer(*_ask(n))

    started = time.monotonic()
    asyncio.run(sequential())
    assert time.monotonic() - started < 10  # far below one linger
    assert ch.inserts == [1] * 5


def test_after_a_batch_of_n_the_next_gathers_n(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batcher_module, "LINGER_S", 30.0)
    ch = NullCH()
    batcher = FrequencyBatcher(ch)  # type: ignore[arg-type]

    async def cohorts() -> None:
        await asyncio.gather(*(batcher.answer(*_ask(n)) for n in range(4)))  # one batch of 4
        first = asyncio.ensure_future(batcher.answer(*_ask(4)))  # waits for 3 more ...
        await asyncio.sleep(0.05)
        assert not first.done()
        await asyncio.gather(first, *(batcher.answer(*_ask(n)) for n in range(5, 8)))

    started = time.monotonic()
    asyncio.run(cohorts())
    assert time.monotonic() - started < 10  # ... and goes as soon as they are there
    assert ch.inserts == [4, 4]


def test_the_linger_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batcher_module, "LINGER_S", 0.05)
    ch = NullCH()
    batcher = FrequencyBatcher(ch)  # type: ignore[arg-type]

    async def fewer() -> None:
        await asyncio.gather(*(batcher.answer(*_ask(n)) for n in range(4)))
        await batcher.answer(*_ask(4))  # only one comes back: answered after the linger
        await asyncio.sleep(0.1)
        await batcher.answer(*_ask(5))  # after an idle moment: no linger at all

    asyncio.run(fewer())
    assert ch.inserts == [4, 1, 1]
