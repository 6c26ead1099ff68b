"""``registry api``: the risk API (+ ``/metrics``, ``/api/v1/lag``, the ``/lag`` dashboard) as
a process of its own, against a ClickHouse SERVER (``CLICKHOUSE_URL=http(s)://...``).

Several of them can run behind a load balancer: each holds only a ClickHouse client, a lag
monitor and the HTTP server; the stream and the sink run in ``registry worker`` processes. It
refuses embedded ClickHouse: chDB admits one process per data folder, and that process is the
worker (``registry worker`` serves the API itself then).

``as_of`` here: no sink runs in this process, so every group's part comes from the lag
monitor's latest sample, the sink's group included (:func:`complete_until_ms` with the sample
time as the sink's figure and no group exempted). The sink commits its offsets only after the
rows are in ClickHouse, so a sink partition at lag 0 at the sample time is complete up to it.
Until the first sample, ``as_of`` is null (unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from consumers.api.server import build_app, serve
from consumers.clickhouse.client import connect
from consumers.clickhouse.migrations import apply_migrations
from consumers.lag.monitor import LagMonitor
from consumers.risk.watermark import complete_until_ms
from streams.settings import Settings

log = logging.getLogger(__name__)


def as_of_from_samples(monitor: LagMonitor) -> int | None:
    """The freshness watermark from the monitor's latest sample alone (see the module doc)."""
    snapshot = monitor.last
    if snapshot is None:
        return None
    return complete_until_ms(snapshot.sampled_at_ms, snapshot, sink_group="")


async def run_api(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM."""
    if settings.clickhouse_embedded:
        raise SystemExit("registry api needs CLICKHOUSE_URL (a ClickHouse server); with "
                         "embedded ClickHouse the worker serves the API")
    ch = await asyncio.to_thread(connect, settings)
    await asyncio.to_thread(apply_migrations, ch, cluster=settings.clickhouse_cluster)
    monitor = LagMonitor(settings)
    await monitor.start()
    app = build_app(settings, ch, monitor, as_of_ms=lambda: as_of_from_samples(monitor))
    runner = await serve(app, settings.api_host, settings.api_port)
    log.info("risk API on http://%s:%d/", settings.api_host, settings.api_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await monitor.stop()
        with contextlib.suppress(Exception):
            ch.close()


def add_parser(subparsers: Any) -> Any:
    return subparsers.add_parser(
        "api", help="serve the risk API alone (needs CLICKHOUSE_URL; several may run)")


def run(args: Any) -> int:
    from streams.cli.base import ExitCode, fail
    from streams.settings import get_settings

    settings = get_settings()
    if settings.clickhouse_embedded:
        return fail("api", "needs CLICKHOUSE_URL (a ClickHouse server); with embedded "
                    "ClickHouse the worker serves the API", ExitCode.CONFIG)
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run_api(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(None))
