"""Bad request bodies at every JSON route answer 4xx, never 5xx (issue 13, input 3 and the kind).

The application is the worker's own (:func:`consumers.api.server.build_app`) served in-process
against the suite's real ClickHouse and Redis: a body that passes the parser reaches them.
Unknown extra fields are ignored, but a body nested deeper than the parser allows is
``invalid_json`` whichever field holds it (README "HTTP API").
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from consumers.api.server import build_app
from consumers.clickhouse.client import ClickHouse
from consumers.lag.monitor import LagMonitor
from schemas.national_id import generate
from streams.kafka.topics import ensure_registry_topics
from streams.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ROUTES = ("/api/v1/frequency", "/api/v1/erasure")
AUTH = {"Authorization": "Bearer tok"}
IDS = [generate(random.Random(1300 + n)) for n in range(4)]


@pytest.fixture
async def api(settings: Settings, clickhouse: ClickHouse) -> AsyncIterator[TestClient]:
    # no stream worker runs here: an erasure's command is sent (the topic must exist) and the
    # answer is 202 pending after a short wait
    app_settings = settings.model_copy(update={
        "clickhouse_database": clickhouse.database, "erasure_wait_seconds": 0.2,
        "api_tokens": SecretStr("bank-a:tok:frequency+erasure+subject_report")})
    await ensure_registry_topics(app_settings)
    app = build_app(app_settings, clickhouse, LagMonitor(app_settings))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def _post(api: TestClient, route: str, raw: bytes) -> tuple[int, str]:
    response = await api.post(route, data=raw, headers=AUTH | {
        "Content-Type": "application/json"})
    return response.status, await response.text()


@pytest.mark.parametrize("route", ROUTES)
async def test_deep_nesting_is_400_invalid_json(api: TestClient, route: str) -> None:
    status, text = await _post(api, route, b"[" * 50_000)
    assert (status, json.loads(text)["error"]) == (400, "invalid_json")
    deep = '{"borrower_id": "%s", "x": %s}' % (IDS[0], "[" * 5000 + "]" * 5000)  # noqa: UP031
    status, text = await _post(api, route, deep.encode())
    assert (status, json.loads(text)["error"]) == (400, "invalid_json")
    assert IDS[0][:14] not in text


@pytest.mark.parametrize("route", ROUTES)
async def test_shallow_unknown_fields_and_padded_ids_are_accepted(api: TestClient,
                                                                   route: str) -> None:
    body = {"borrower_id": f" {IDS[1].lower()}\t", "x": [[1, {"y": None}]], "extra": "ok"}
    status, text = await _post(api, route, json.dumps(body).encode())
    # accepted: the frequency answer, or the erasure command sent (pending: no stream here)
    assert status == (200 if route.endswith("frequency") else 202), text
    assert IDS[1][:14] not in text


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("raw", [
    b'{"borrower_id": "\\ud800"}',
    b'{"borrower_id": "\xb7\xe7"}',
    b"\xef\xbb\xbf{",
    b"",
])
async def test_malformed_bodies_are_400(api: TestClient, route: str, raw: bytes) -> None:
    status, text = await _post(api, route, raw)
    assert status == 400 and json.loads(text)["error"] in ("invalid_json",
                                                           "invalid_borrower_id"), text


async def test_property_any_body_is_2xx_or_4xx_and_never_echoes_the_id(
    api: TestClient,
) -> None:
    loop = asyncio.get_running_loop()
    text_values = st.one_of(st.text(max_size=30), st.sampled_from(IDS),
                            st.sampled_from(["\ud800", "\udfff", "\ufeff"]))
    values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), text_values),
                          lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(text_values, inner,
                                                                  max_size=3)),
                          max_leaves=10)
    bodies = st.one_of(
        st.binary(max_size=100),
        st.tuples(st.sampled_from([*IDS, f" {IDS[2]} "]), values, values).map(
            lambda t: json.dumps({"borrower_id": t[0], "window_days": t[1], "x": t[2]},
                                 ensure_ascii=False).encode("utf-8", "surrogatepass")),
        st.integers(0, 3000).map(lambda n: b"[" * n + b"]" * n),
    )

    @settings(derandomize=True, max_examples=40, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(route=st.sampled_from(ROUTES), raw=bodies)
    def check(route: str, raw: bytes) -> None:
        status, text = asyncio.run_coroutine_threadsafe(_post(api, route, raw), loop).result(60)
        assert 200 <= status < 300 or 400 <= status < 500, (status, text)
        assert not any(national_id[:14] in text for national_id in IDS), text

    await asyncio.to_thread(check)


async def test_registry_frequency_and_erase_exit_codes_against_the_api(api: TestClient) -> None:
    url = f"http://127.0.0.1:{api.port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "API_"))}

    def registry(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "streams.cli", *args, "--url", url],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=60)

    done = await asyncio.to_thread(registry, "frequency", f" {IDS[3]} ", "--token", "tok")
    assert done.returncode == 0, done.stderr
    assert "draws" in done.stdout and IDS[3] not in done.stdout
    done = await asyncio.to_thread(registry, "frequency", IDS[3], "--token", "wrong")
    assert done.returncode == 77 and done.stderr.count("\n") == 1, done.stderr
    done = await asyncio.to_thread(registry, "erase", "--borrower", IDS[3], "--token", "tok")
    assert done.returncode == 0, done.stderr
