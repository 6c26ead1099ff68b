"""The risk API against a real ClickHouse (embedded chDB unless the suite provides a server).

Two borrowers with known national ids: one drawing about once a month, one ten times a month.
Their daily rows go into ``borrower_daily``; the answers must give back exactly what was
inserted, every query must leave exactly one ``inquiries`` row, and tokens of two institutions
must both be counted in ``inquiring_institutions``. Every answer (200, 400, 401) is checked
against the OpenAPI document (``tests/support/openapi_check.py``).
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer

from consumers.api.server import build_app
from consumers.clickhouse.client import ClickHouse, connect
from consumers.clickhouse.migrations import apply_migrations
from consumers.lag.monitor import LagMonitor
from schemas.calendar import local_today
from schemas.national_id import generate
from schemas.pseudonym import Pseudonymiser
from streams.runtime.metrics import METRICS
from streams.settings import Settings
from tests.support.openapi_check import checked

pytestmark = pytest.mark.integration

COLUMNS = ["borrower", "day", "draws", "draw_amount_minor", "repayments",
           "repaid_amount_minor", "defaults", "lenders", "last_draw_at", "version"]
COUNTER_TOKEN = "tok-counter-5e1"  # scope subject_report only: no frequency queries
TOKENS = f"bank-a:ta,bank-b:tb,counter:{COUNTER_TOKEN}:subject_report"


@pytest.fixture(scope="module")
def ch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ClickHouse:
    """The suite's ``clickhouse`` fixture when it exists, else one embedded chDB per module.

    chDB allows one session per process and cannot be reopened elsewhere, so the client is
    never closed here.
    """
    try:
        return request.getfixturevalue("clickhouse")
    except pytest.FixtureLookupError:
        pass
    settings = Settings(registry_data_dir=tmp_path_factory.mktemp("risk"),
                        clickhouse_database="t_" + uuid.uuid4().hex[:12])
    client = connect(settings)
    apply_migrations(client)
    return client


@pytest.fixture(scope="module")
def world(ch: ClickHouse, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    settings = Settings(registry_data_dir=tmp_path_factory.mktemp("risk-app"),
                        clickhouse_database=ch.database, api_tokens=TOKENS)
    pseudonymise = Pseudonymiser(settings.pseudonym_key_bytes)
    rng = random.Random(uuid.uuid4().int)  # unique borrowers even on a shared database
    ids = {name: generate(rng) for name in ("monthly", "frequent", "unknown")}
    assert len(set(ids.values())) == 3
    today = local_today(settings.tz)
    rows = []
    # monthly: one draw 5 days ago inside a 30-day window, one 40 days ago outside it.
    for back, lender in ((5, "bank-x"), (40, "bank-y")):
        day = today - timedelta(days=back)
        at = datetime(day.year, day.month, day.day, 2, tzinfo=UTC)
        rows.append([pseudonymise(ids["monthly"]), day, 1, 150_000, 0, 0, 0, [lender], at, 1])
    # frequent: ten draws over 8 days of the window (two days with two), three lenders,
    # one repayment; an older version of one day must be ignored (FINAL).
    lenders = ["bank-x", "bank-y", "bank-z"]
    for i, back in enumerate((0, 2, 3, 6, 9, 12, 20, 29)):
        day = today - timedelta(days=back)
        draws = 2 if back in (3, 12) else 1
        at = datetime(day.year, day.month, day.day, 1, 30, tzinfo=UTC)
        rows.append([pseudonymise(ids["frequent"]), day, draws, draws * 20_050, 1 if back == 9
                     else 0, 10_000 if back == 9 else 0, 0, [lenders[i % 3]], at, 2])
    stale_day = today - timedelta(days=2)
    rows.append([pseudonymise(ids["frequent"]), stale_day, 99, 9_999_999, 0, 0, 0, ["stale"],
                 None, 1])
    ch.insert("borrower_daily", rows, COLUMNS)
    newest = datetime(today.year, today.month, today.day, 1, 30, tzinfo=UTC)
    return {"settings": settings, "ids": ids, "today": today, "newest": newest}


@pytest.fixture
async def api(ch: ClickHouse, world: dict[str, object]) -> AsyncIterator[TestClient]:
    settings = world["settings"]
    assert isinstance(settings, Settings)
    app = build_app(settings, ch, LagMonitor(settings), as_of_ms=lambda: 1_700_000_000_000)
    async with TestClient(TestServer(app)) as client:
        yield client


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _inquiry_rows(ch: ClickHouse, settings: Settings, national_id: str) -> int:
    borrower = Pseudonymiser(settings.pseudonym_key_bytes)(national_id)
    return int(ch.query("SELECT count() FROM inquiries WHERE borrower = {b:String}",
                        {"b": borrower})[0][0])


async def test_answers_match_inserted_rows(api: TestClient, world: dict) -> None:
    ids = world["ids"]
    response = await api.post("/api/v1/frequency", headers=_auth("ta"),
                              json={"borrower_id": ids["monthly"], "window_days": 30})
    assert response.status == 200, await response.text()
    monthly = await checked(response)
    assert monthly["window_days"] == 30
    assert monthly["draws"] == 1 and monthly["draw_amount"] == "1500.00"
    assert monthly["distinct_lenders"] == 1 and monthly["active_days"] == 1
    assert monthly["as_of"] == "2023-11-14T22:13:20.000Z"
    assert len(monthly["daily"]) == 30
    assert monthly["daily"][-1]["date"] == world["today"].isoformat()
    assert [d["draws"] for d in monthly["daily"]].count(1) == 1

    response = await api.post("/api/v1/frequency", headers=_auth("ta"),
                              json={"borrower_id": ids["frequent"]})  # default window 30
    frequent = await checked(response)
    assert frequent["window_days"] == 30 and len(frequent["daily"]) == 30
    assert frequent["draws"] == 10 and frequent["draw_amount"] == "2005.00"
    assert frequent["repayments"] == 1 and frequent["repaid_amount"] == "100.00"
    assert frequent["defaults"] == 0
    assert frequent["distinct_lenders"] == 3 and frequent["active_days"] == 8
    assert frequent["last_draw_at"] == world["newest"].strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert sum(d["draws"] for d in frequent["daily"]) == 10

    response = await api.post("/api/v1/frequency", headers=_auth("ta"),
                              json={"borrower_id": ids["monthly"], "window_days": 60})
    assert (await checked(response))["draws"] == 2


async def test_unknown_borrower_is_zeros(api: TestClient, world: dict) -> None:
    response = await api.post("/api/v1/frequency", headers=_auth("tb"),
                              json={"borrower_id": world["ids"]["unknown"], "window_days": 7})
    assert response.status == 200
    body = await checked(response)
    assert body["draws"] == body["repayments"] == body["distinct_lenders"] == 0
    assert body["draw_amount"] == "0.00" and body["last_draw_at"] is None
    assert len(body["daily"]) == 7 and all(d["draws"] == 0 for d in body["daily"])


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic ta"}])
async def test_unauthorized(api: TestClient, world: dict, headers: dict) -> None:
    denied = METRICS.security_api_denied.value("/api/v1/frequency", "unauthorized")
    response = await api.post("/api/v1/frequency", headers=headers,
                              json={"borrower_id": world["ids"]["monthly"]})
    assert response.status == 401
    assert await checked(response) == {"error": "unauthorized"}
    assert METRICS.security_api_denied.value("/api/v1/frequency", "unauthorized") == denied + 1


async def test_token_without_the_scope_is_forbidden_logged_and_counted(
    api: TestClient, world: dict, ch: ClickHouse, caplog: pytest.LogCaptureFixture
) -> None:
    national_id = world["ids"]["monthly"]
    before = _inquiry_rows(ch, world["settings"], national_id)
    denied = METRICS.security_api_denied.value("/api/v1/frequency", "forbidden")
    with caplog.at_level(logging.WARNING, logger="registry.security"):
        response = await api.post("/api/v1/frequency", headers=_auth(COUNTER_TOKEN),
                                  json={"borrower_id": national_id, "window_days": 30})
    assert response.status == 403
    assert await checked(response) == {"error": "forbidden",
                                     "detail": "token lacks scope frequency"}
    assert METRICS.security_api_denied.value("/api/v1/frequency", "forbidden") == denied + 1
    assert _inquiry_rows(ch, world["settings"], national_id) == before  # nothing was read
    events = [r.getMessage() for r in caplog.records if r.name == "registry.security"]
    assert len(events) == 1 and "forbidden" in events[0] and "counter" in events[0]
    assert COUNTER_TOKEN not in events[0] and national_id not in events[0]


async def test_bad_requests_never_echo_the_id(api: TestClient, world: dict, ch: ClickHouse
                                             ) -> None:
    good = world["ids"]["monthly"]
    broken = good[:-1] + ("0" if good[-1] != "0" else "1")
    cases = [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        ({"borrower_id": broken}, "invalid_borrower_id"),
        ({"window_days": 30}, "invalid_borrower_id"),
        ({"borrower_id": good, "window_days": 0}, "invalid_window"),
        ({"borrower_id": good, "window_days": 401}, "invalid_window"),
        ({"borrower_id": good, "window_days": "30"}, "invalid_window"),
        ({"borrower_id": good, "purpose": "x" * 65}, "invalid_purpose"),
    ]
    before = _inquiry_rows(ch, world["settings"], good)
    for body, code in cases:
        kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
        response = await api.post("/api/v1/frequency", headers=_auth("ta"), **kwargs)
        assert response.status == 400, (body, await response.text())
        text = await response.text()
        assert (await checked(response))["error"] == code
        assert good not in text and broken not in text
    assert _inquiry_rows(ch, world["settings"], good) == before  # refused: not recorded


async def test_one_inquiry_row_per_query_and_two_institutions(
    api: TestClient, world: dict, ch: ClickHouse
) -> None:
    rng = random.Random(uuid.uuid4().int)
    national_id = generate(rng)
    settings = world["settings"]
    answers = []
    for token in ("ta", "ta", "tb"):
        response = await api.post("/api/v1/frequency", headers=_auth(token),
                                  json={"borrower_id": national_id, "window_days": 10})
        assert response.status == 200
        answers.append((await checked(response))["inquiring_institutions"])
    assert answers == [1, 1, 2]
    assert _inquiry_rows(ch, settings, national_id) == 3
    borrower = Pseudonymiser(settings.pseudonym_key_bytes)(national_id)
    rows = ch.query("SELECT institution, purpose, window_days FROM inquiries "
                    "WHERE borrower = {b:String} ORDER BY inquired_at", {"b": borrower})
    assert [r[0] for r in rows] == ["bank-a", "bank-a", "bank-b"]
    assert {(r[1], r[2]) for r in rows} == {("loan_application", 10)}
