"""The lag monitor: samples every registry consumer group and judges it with ``status.py``.

Every ``LAG_POLL_SECONDS`` one :meth:`LagMonitor.sample_once` takes a sample with
:class:`~consumers.lag.sampler.LagSampler` (what is read from Kafka, and how, is described
there). Samples go into an in-memory ring buffer per partition (``history_s``, 30 minutes by
default, :mod:`~consumers.lag.series`) that feeds the status rules and the dashboard's charts,
into the Prometheus gauges (:mod:`~consumers.lag.gauges`), and into ClickHouse through an
optional :class:`~consumers.lag.history.LagHistoryWriter`. A failing writer is logged and the
monitor goes on; a failing broker makes that one sample fail (:class:`LagMonitorError`), the
loop logs it, reports it in the snapshot and tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiokafka.errors import KafkaError

from consumers.lag.errors import LagHistoryError, LagMonitorError
from consumers.lag.gauges import publish_metrics
from consumers.lag.history import LagHistoryWriter
from consumers.lag.sampler import LagSampler
from consumers.lag.series import snapshot_json
from consumers.lag.status import DEFAULT_STOPPED_AFTER_S, DEFAULT_WINDOW, LagSnapshot
from streams.runtime.metrics import METRICS, Metrics
from streams.settings import Settings

log = logging.getLogger(__name__)


class LagMonitor:
    """Samples consumer lag of the registry's groups; an asyncio task in the worker's loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        groups: list[str] | None = None,
        metrics: Metrics = METRICS,
        history_writer: LagHistoryWriter | None = None,
        history_s: float = 1800.0,
        window: int = DEFAULT_WINDOW,
        stopped_after_s: float = DEFAULT_STOPPED_AFTER_S,
        fetch_timeout_s: float = 3.0,
        request_timeout_s: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._sampler = LagSampler(
            settings, groups=groups, history_s=history_s, window=window,
            stopped_after_s=stopped_after_s, fetch_timeout_s=fetch_timeout_s,
            request_timeout_s=request_timeout_s, clock=clock,
        )
        self._metrics = metrics
        self._writer = history_writer
        self._fetch_timeout_s = fetch_timeout_s
        self._request_timeout_s = request_timeout_s
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._last: LagSnapshot | None = None
        self.last_error: str | None = None

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and start sampling every ``settings.lag_poll_seconds`` in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lag-monitor")

    async def stop(self) -> None:
        """Stop sampling, flush buffered history (best effort) and close the Kafka clients."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._writer is not None:
            try:
                await self._writer.flush()
            except LagHistoryError as exc:
                log.warning("lag history not flushed at stop: %s", exc)
        await self._sampler.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.sample_once()
            except LagMonitorError as exc:
                log.warning("lag sample failed: %s", exc)
            except Exception:  # a bug must not kill the worker's loop
                log.exception("lag sample crashed")
            elapsed = loop.time() - started
            await asyncio.sleep(max(0.0, self._settings.lag_poll_seconds - elapsed))

    # --- sampling ---------------------------------------------------------------------------
    async def sample_once(self) -> LagSnapshot:
        """Take one sample of every watched group; raise :class:`LagMonitorError` on failure."""
        async with self._lock:
            try:
                snapshot = await asyncio.wait_for(
                    self._sampler.sample(),
                    timeout=self._request_timeout_s + 2 * self._fetch_timeout_s,
                )
            except (KafkaError, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                raise LagMonitorError(self.last_error) from exc
            except LagMonitorError as exc:
                self.last_error = str(exc)
                raise
            self.last_error = None
            self._last = snapshot
        publish_metrics(self._metrics, snapshot, self._sampler.owns)
        if self._writer is not None:
            rows = [p for g in snapshot.groups.values() for p in g.partitions]
            try:
                await self._writer.append(rows)
            except Exception as exc:  # history is nice to have; sampling must go on
                log.warning("lag history write failed (rows kept for retry): %s", exc)
        return snapshot

    # --- outputs ----------------------------------------------------------------------------
    @property
    def last(self) -> LagSnapshot | None:
        """The most recent successful sample, if any."""
        return self._last

    def snapshot(self, *, max_points: int = 180) -> dict[str, object]:
        """JSON-ready view for ``/api/v1/lag``: see :func:`~consumers.lag.series.snapshot_json`."""
        return snapshot_json(
            self._last, self._sampler.series, poll_seconds=self._settings.lag_poll_seconds,
            error=self.last_error, max_points=max_points,
            lender_of=self._settings.topics.lender_of,
        )
