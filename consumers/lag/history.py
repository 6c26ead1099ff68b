"""Lag samples appended to ClickHouse (``lag_history``) so lag can be looked at after the fact.

The in-memory ring buffer of the monitor covers the dashboard's last 30 minutes; this table
keeps 30 days (TTL in ``infra/clickhouse/migrations/0003_lag_history.sql``) for post-mortems
and Grafana.

What is promised: rows are buffered and written in one insert every ``flush_interval_s`` (one
insert per 2-second sample would make ClickHouse merge tiny parts for nothing). A failed insert
keeps its rows for the next attempt, up to ``max_buffer_rows``; beyond that the OLDEST rows are
dropped and counted in ``dropped_rows``. Losing lag history never stops the monitor: the monitor
catches :class:`LagHistoryError` and goes on sampling. The insert callable is synchronous (the
ClickHouse clients are); it runs in a worker thread unless ``in_thread=False``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from consumers.lag.errors import LagHistoryError

if TYPE_CHECKING:
    from consumers.lag.status import PartitionLag

log = logging.getLogger(__name__)

TABLE = "lag_history"
COLUMNS: tuple[str, ...] = (
    "sampled_at",
    "group_id",
    "topic",
    "partition",
    "committed_offset",
    "end_offset",
    "lag",
    "lag_seconds",
    "status",
)

InsertFn = Callable[[str, list[tuple], list[str]], None]


def to_row(p: PartitionLag) -> tuple:
    """One ``lag_history`` row. No commit is stored as -1; unknown lag seconds as NaN."""
    return (
        datetime.fromtimestamp(p.sampled_at_ms / 1000.0, tz=UTC),
        p.group,
        p.topic,
        p.partition,
        -1 if p.committed is None else p.committed,
        p.end,
        p.lag,
        math.nan if p.lag_seconds is None else float(p.lag_seconds),
        str(p.status),
    )


class LagHistoryWriter:
    """Buffers lag samples and inserts them into ``lag_history`` through ``insert``."""

    def __init__(
        self,
        insert: InsertFn,
        *,
        flush_interval_s: float = 10.0,
        max_buffer_rows: int = 200_000,
        in_thread: bool = True,
    ) -> None:
        self._insert = insert
        self._flush_interval_s = flush_interval_s
        self._max_buffer_rows = max_buffer_rows
        self._in_thread = in_thread
        self._buffer: list[tuple] = []
        self._last_flush = time.monotonic()
        self._lock = asyncio.Lock()
        self.written_rows = 0
        self.dropped_rows = 0
        self.failures = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def append(self, partitions: Sequence[PartitionLag]) -> None:
        """Buffer one sample's rows; flush when the interval has passed.

        Raises :class:`LagHistoryError` when a due flush fails (rows are kept).
        """
        self._buffer.extend(to_row(p) for p in partitions)
        overflow = len(self._buffer) - self._max_buffer_rows
        if overflow > 0:
            del self._buffer[:overflow]
            self.dropped_rows += overflow
            log.warning("lag history buffer full: dropped %d oldest rows", overflow)
        if time.monotonic() - self._last_flush >= self._flush_interval_s:
            await self.flush()

    async def flush(self) -> int:
        """Insert everything buffered now; return the number of rows written."""
        async with self._lock:
            self._last_flush = time.monotonic()
            rows, self._buffer = self._buffer, []
            if not rows:
                return 0
            try:
                if self._in_thread:
                    await asyncio.to_thread(self._insert, TABLE, rows, list(COLUMNS))
                else:
                    self._insert(TABLE, rows, list(COLUMNS))
            except Exception as exc:
                self.failures += 1
                self._buffer[:0] = rows
                raise LagHistoryError(f"insert into {TABLE} failed: {exc}") from exc
            self.written_rows += len(rows)
            return len(rows)
