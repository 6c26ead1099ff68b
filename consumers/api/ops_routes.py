"""Operations routes: Prometheus metrics, the lag JSON and the human lag dashboard.

* ``GET /metrics`` — the registry's metrics rendered by ``prometheus_client``: text format
  0.0.4, or OpenMetrics when the scraper's ``Accept`` asks for it.
* ``GET /api/v1/lag`` — :meth:`LagMonitor.snapshot`: per group the status, total lag in
  messages and seconds, trend, totals over time and lag per lender; per partition the
  committed and end offsets, lag in messages and seconds, status and the recent history
  series; plus lender freshness. ``?points=N`` thins each series to at most N points
  (default 180, at most 2000); a ``points`` that is not an integer answers 400
  ``{"error": "invalid_points"}``.
* ``GET /lag`` — a self-contained dashboard (HTML, CSS and JS served from ``/static/``, the
  chart library uPlot vendored in ``static/vendor/``; no CDN, no build step) that polls
  ``/api/v1/lag`` every 2 seconds.

Their shapes are in the OpenAPI document (:mod:`consumers.api.openapi`).

None of these routes takes a national id or any borrower data, so they carry no
authentication of their own; bind them to an operations network in production.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from consumers.api.errors import ApiError
from consumers.lag.monitor import LagMonitor
from streams.runtime.metrics import Metrics

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_POINTS = 180
MAX_POINTS = 2000

MONITOR_KEY = web.AppKey("lag_monitor", LagMonitor)
METRICS_KEY = web.AppKey("metrics", Metrics)


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS_KEY].exposition(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _lag_json(request: web.Request) -> web.Response:
    raw = request.query.get("points", str(DEFAULT_POINTS))
    try:
        points = int(raw)
    except ValueError:
        return web.json_response(
            {"error": ApiError.INVALID_POINTS, "detail": "points must be an integer"}, status=400)
    points = max(2, min(points, MAX_POINTS))
    snapshot = request.app[MONITOR_KEY].snapshot(max_points=points)
    return web.json_response(snapshot, headers={"Cache-Control": "no-store"})


async def _lag_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "lag.html", headers={"Cache-Control": "no-cache"})


def add_ops_routes(app: web.Application, *, monitor: LagMonitor, metrics: Metrics,
                   as_of_ms: Callable[[], int | None] | None = None) -> None:
    """Register ``/metrics``, ``/api/v1/lag``, ``/lag`` and ``/static/`` on ``app``.

    ``as_of_ms`` (the risk API's freshness watermark) is exported on ``/metrics`` as
    ``registry_freshness_watermark_seconds``.

    The monitor's lifecycle stays with the caller (the worker starts and stops it); these
    routes only read its latest snapshot, so they never wait on Kafka.
    """
    app[MONITOR_KEY] = monitor
    app[METRICS_KEY] = metrics
    metrics.watch_freshness(as_of_ms)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/api/v1/lag", _lag_json)
    app.router.add_get("/lag", _lag_page)
    app.router.add_static("/static/", STATIC_DIR, name="static")
