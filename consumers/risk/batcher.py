"""Group commit for the risk API: concurrent frequency requests share one inquiry insert and
one read.

Every ``POST /api/v1/frequency`` needs a ClickHouse insert (its inquiry row) and a point read.
In embedded mode all ClickHouse calls of a process go through one lock, so each costs its full
price in series: ~5-8 ms of CPU for an insert however few rows it has, ~3-10 ms for a point
read (profile in the README, Performance, "Risk API latency"). :class:`FrequencyBatcher`
runs them per batch instead: requests that arrive while a batch is at ClickHouse wait for the
next one, and each batch is

1. ONE insert of all its inquiry rows (:func:`record_inquiries`: one block, all or nothing),
2. then ONE read of all its answers (:func:`answer_batch`), after the insert returned.

A request arriving when nothing is in progress starts a batch at once, so an idle registry (or
a lone client) answers as fast as before, and a busy one pays an insert and a read per batch,
not per request. Under load a batch may linger at most ``LINGER_S`` after the previous batch
ended, until as many asks are pending as were in flight around that batch (:meth:`_gather`):
closed-loop clients otherwise split into two cohorts of half the concurrency that alternate at
ClickHouse, each paying a whole insert and read (``bench/query.py`` at 16 connections: mean
batch 8 without, ~15 with; CPU per answer ~4.5 ms -> ~3 ms).

Promises kept, per request:

* its inquiry is durably written before its answer is computed (step 1 returns before step 2
  starts); if the insert fails, every request of the batch fails (none is answered unrecorded);
* ``inquiring_institutions`` counts every inquiry written before the read, including this
  request's own and those of the rest of its batch: all of them are real, recorded inquiries;
* ``as_of`` is the watermark taken by the caller before the request joined a batch; the read
  comes after, so everything complete up to it is in the answer;
* the numbers are those of the read, computed per request (own borrower, own window).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from consumers.risk.frequency import Ask, FrequencyAnswer, QueryFacade, answer_batch
from consumers.risk.inquiries import Inquiry, record_inquiries

#: Upper bound on one batch (rows of one insert, borrowers of one read): far above the
#: concurrency of a single API process, it only bounds the query text under a burst.
MAX_BATCH = 256

#: Under load only: how long (seconds, from the end of the previous batch) a batch may wait to
#: gather as many asks as were in flight around the previous one (see :meth:`_gather`).
LINGER_S = 0.005


@dataclass(slots=True)
class _Pending:
    inquiry: Inquiry
    ask: Ask
    future: asyncio.Future[FrequencyAnswer]


class FrequencyBatcher:
    """Answers frequency asks in batches; one instance per API process (per ClickHouse)."""

    def __init__(self, ch: QueryFacade, *, max_batch: int = MAX_BATCH) -> None:
        self._ch = ch
        self._max_batch = max_batch
        self._pending: list[_Pending] = []
        self._drainer: asyncio.Task[None] | None = None
        #: asks in flight around the last batch (its own + those queued meanwhile), and when
        #: it ended (loop time)
        self._population = 1
        self._last_end = float("-inf")
        self._grown: asyncio.Event | None = None  # made in the running loop by _gather
        #: batch sizes run so far (for tests and the benchmark's report)
        self.batches = 0
        self.asks = 0

    async def answer(self, inquiry: Inquiry, ask: Ask) -> FrequencyAnswer:
        """Record ``inquiry``, then answer ``ask`` (see the module doc for the promises).

        Raises what the insert or the read raised (``ClickHouseError``, ``ValueError``)."""
        ask.bounds  # noqa: B018 - a bad window fails alone, before joining a batch
        loop = asyncio.get_running_loop()
        future: asyncio.Future[FrequencyAnswer] = loop.create_future()
        self._pending.append(_Pending(inquiry, ask, future))
        if self._grown is not None and len(self._pending) >= self._population:
            self._grown.set()
        drainer = self._drainer
        if drainer is None or drainer.done() or drainer.get_loop() is not loop:
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _gather(self) -> None:
        """Under load, wait (at most ``LINGER_S`` after the previous batch ended) until as many
        asks are pending as were in flight around the previous batch.

        With closed-loop clients, concurrent requests otherwise settle into two cohorts: one
        at ClickHouse while the other's answers travel, each paying a whole insert and read.
        Waiting for the just-answered clients to come back merges them into one batch. A lone
        client (one ask in flight) never waits, nor does a batch after an idle moment."""
        loop = asyncio.get_running_loop()
        target = min(self._population, self._max_batch)
        deadline = self._last_end + LINGER_S
        while len(self._pending) < target and loop.time() < deadline:
            self._grown = grown = asyncio.Event()
            try:
                await asyncio.wait_for(grown.wait(), deadline - loop.time())
            except TimeoutError:
                break
            finally:
                self._grown = None

    async def _drain(self) -> None:
        while self._pending:
            await self._gather()
            batch = self._pending[:self._max_batch]
            del self._pending[:self._max_batch]
            try:
                answers = await asyncio.to_thread(self._run, batch)
            except Exception as exc:  # delivered to every request of the batch
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            finally:
                self._population = max(1, len(batch) + len(self._pending))
                self._last_end = asyncio.get_running_loop().time()
            for item, answer in zip(batch, answers, strict=True):
                if not item.future.done():
                    item.future.set_result(answer)

    def _run(self, batch: list[_Pending]) -> list[FrequencyAnswer]:
        """In a worker thread: insert every inquiry, then read every answer."""
        record_inquiries(self._ch, [item.inquiry for item in batch])  # type: ignore[arg-type]
        answers = answer_batch(self._ch, [item.ask for item in batch])
        self.batches += 1
        self.asks += len(batch)
        return answers
