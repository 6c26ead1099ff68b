"""Every HTTP route of the app answers what the OpenAPI document says, on real services.

The app of :func:`consumers.api.server.build_app` runs on the suite's Redis, Kafka (lag
monitor) and ClickHouse. Erasure is called with every answer it can give here (200, 400 both
codes, 401, 503 with Redis gone: a Redis URL whose port nobody listens on), the operations
routes with theirs (``/api/v1/lag`` 200 and 400, ``/metrics``, ``/lag``, static files 200 and
404, the document itself). Each answer goes through ``tests/support/openapi_check.py``. Frequency's
answers are checked in ``test_risk_api.py`` and a live worker's lag in
``test_dashboard_browser.py``; every other registered route must have been checked here.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from consumers.api.openapi import OPENAPI
from consumers.api.server import build_app
from consumers.clickhouse.client import ClickHouse
from consumers.lag.monitor import LagMonitor
from schemas.national_id import generate
from streams.kafka.topics import ensure_registry_topics
from streams.settings import Settings
from tests.support.openapi_check import SEEN, checked, path_template
from tests.support.services import free_port

pytestmark = pytest.mark.integration

TOKEN = "t-openapi"
#: Routes whose answers other test files check with ``openapi_check.checked``.
CHECKED_ELSEWHERE = {
    ("POST", "/api/v1/frequency"),  # test_risk_api.py
    ("POST", "/api/v1/subject-report"),  # test_subject_report.py
}


def _app_settings(settings: Settings, clickhouse: ClickHouse, **update: object) -> Settings:
    # no stream worker runs here: an erasure's command is sent and answered 202 (pending)
    return settings.model_copy(update={
        "clickhouse_database": clickhouse.database, "erasure_wait_seconds": 0.2,
        "api_tokens": SecretStr(f"bank-a:{TOKEN}:frequency+erasure+subject_report"),
        **update})


@pytest.fixture
async def api(settings: Settings, clickhouse: ClickHouse) -> AsyncIterator[TestClient]:
    app_settings = _app_settings(settings, clickhouse)
    await ensure_registry_topics(app_settings)
    monitor = LagMonitor(app_settings)
    await monitor.sample_once()  # a real sample of the (new, empty) deployment's groups
    try:
        async with TestClient(TestServer(build_app(app_settings, clickhouse, monitor))) as client:
            yield client
    finally:
        await monitor.stop()


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def _erasure(api: TestClient) -> None:
    national_id = generate(random.Random(uuid.uuid4().int))
    response = await api.post("/api/v1/erasure", headers=_auth(),
                              json={"borrower_id": national_id})
    assert response.status == 202, await response.text()
    body = await checked(response)
    assert (body["status"], body["consent_keys"]) == ("pending", 0)
    assert national_id not in await response.text()

    response = await api.get(f"/api/v1/erasure/{body['request_id']}", headers=_auth())
    assert response.status == 202
    assert (await checked(response))["status"] == "pending"
    response = await api.get("/api/v1/erasure/no-such-request", headers=_auth())
    assert response.status == 404
    assert (await checked(response))["error"] == "unknown_request"

    response = await api.get("/subject-report")
    assert response.status == 200
    await checked(response)
    response = await api.post("/subject-report", data={"borrower_id": "123", "token": TOKEN})
    assert response.status == 400
    await checked(response)

    response = await api.post("/api/v1/erasure", json={"borrower_id": national_id})
    assert response.status == 401
    assert await checked(response) == {"error": "unauthorized"}
    assert response.headers["WWW-Authenticate"] == "Bearer"

    for data, code in ((b"{nope", "invalid_json"), (b'{"borrower_id": "123"}',
                                                    "invalid_borrower_id")):
        response = await api.post("/api/v1/erasure", headers=_auth(), data=data)
        assert response.status == 400
        assert (await checked(response))["error"] == code


async def test_erasure_without_redis_is_a_documented_503(settings: Settings,
                                                         clickhouse: ClickHouse) -> None:
    gone = _app_settings(settings, clickhouse, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    app = build_app(gone, clickhouse, LagMonitor(gone))
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/api/v1/erasure", headers=_auth(), json={
            "borrower_id": generate(random.Random(uuid.uuid4().int))})
        assert response.status == 503
        assert await checked(response) == {"error": "redis_unavailable"}


async def _operations(api: TestClient) -> None:
    response = await api.get("/api/v1/lag")
    assert response.status == 200
    lag = await checked(response)
    assert lag["ready"] is True and lag["error"] is None

    response = await api.get("/api/v1/lag", params={"points": "many"})
    assert response.status == 400
    assert await checked(response) == {"error": "invalid_points",
                                       "detail": "points must be an integer"}

    response = await api.get("/metrics")
    assert response.status == 200
    assert "# TYPE" in await checked(response)

    response = await api.get("/lag")
    assert response.status == 200
    assert "/static/vendor/uPlot.iife.min.js" in await checked(response)

    for name in ("lag.js", "lag.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"):
        response = await api.get(f"/static/{name}")
        assert response.status == 200, name
        await checked(response)
    response = await api.get("/static/no-such-file.js")
    assert response.status == 404
    await checked(response)

    response = await api.get("/api/v1/openapi.json")
    assert response.status == 200
    assert await checked(response) == OPENAPI


async def test_every_route_answers_as_the_document_says(api: TestClient) -> None:
    """Erasure and the operations routes, each answer checked; then every route the app
    registers, but those in ``CHECKED_ELSEWHERE``, has been checked here at least once."""
    SEEN.clear()
    await _erasure(api)
    await _operations(api)
    routes = set()
    for route in api.app.router.routes():
        if route.method == "HEAD":
            continue
        resource = route.resource
        assert resource is not None
        path = resource.canonical + ("/x" if isinstance(resource, web.StaticResource) else "")
        routes.add((route.method, path_template(path)))
    seen = {(method, template) for method, template, _ in SEEN}
    assert routes - CHECKED_ELSEWHERE == seen, (routes, seen)
