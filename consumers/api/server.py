"""The worker's HTTP front: risk API, metrics, lag dashboard, OpenAPI document.

Every route registered here is described in :mod:`consumers.api.openapi`
(``GET /api/v1/openapi.json``); a unit test fails when one is missing.

In embedded-ClickHouse mode it runs inside the worker that owns the chDB folder (one process per
folder); against a ClickHouse server it can run standalone (``registry api``).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from consumers.api.erasure_routes import add_erasure_routes
from consumers.api.frequency_routes import add_frequency_routes
from consumers.api.openapi import add_openapi_route
from consumers.api.ops_routes import add_ops_routes
from consumers.api.report_routes import add_report_routes
from consumers.clickhouse.client import ClickHouse
from consumers.lag.monitor import LagMonitor
from streams.runtime.metrics import METRICS
from streams.settings import Settings


def build_app(settings: Settings, ch: ClickHouse, monitor: LagMonitor,
              as_of_ms: Callable[[], int | None] | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    add_ops_routes(app, monitor=monitor, metrics=METRICS, as_of_ms=as_of_ms)
    add_frequency_routes(app, settings=settings, ch=ch, as_of_ms=as_of_ms)
    add_erasure_routes(app, settings=settings, ch=ch)
    add_report_routes(app, settings=settings, ch=ch)
    add_openapi_route(app)
    return app


#: seconds a stopping server waits for requests in flight
SHUTDOWN_TIMEOUT_S = 5.0


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    # a stopping worker waits at most this long for requests in flight (aiohttp's default, 60 s,
    # outlasts the 40 s a supervisor or test gives a worker before SIGKILL)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
