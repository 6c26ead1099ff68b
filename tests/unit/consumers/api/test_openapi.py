"""The OpenAPI document: a valid OpenAPI 3.1 document, describing exactly the app's routes and
the error codes the code defines; the response checker other tests use rejects what it must."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from openapi_spec_validator.versions import consts, get_spec_version

from consumers.api.errors import BODY_ERRORS
from consumers.api.openapi import OPENAPI, OPENAPI_PATH
from consumers.api.server import build_app
from consumers.lag.monitor import LagMonitor
from streams.settings import Settings
from tests.support.openapi_check import check_response

#: Described ahead of its handler (another change adds it); allowed to be missing from the app.
PENDING = {("POST", "/api/v1/subject-report")}


def _registered() -> set[tuple[str, str]]:
    settings = Settings(api_tokens="bank-a:ta")
    app = build_app(settings, ch=None, monitor=LagMonitor(settings))  # type: ignore[arg-type]
    found = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        if isinstance(route.resource, web.StaticResource):
            found.add((route.method, route.resource.canonical + "/{path}"))
        else:
            assert route.resource is not None
            found.add((route.method, route.resource.canonical))
    return found


def _documented() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in OPENAPI["paths"].items() for method in item}


def test_document_is_valid_openapi_3_1() -> None:
    assert get_spec_version(OPENAPI) == consts.OPENAPIV31
    validate(OPENAPI, cls=OpenAPIV31SpecValidator)  # raises on any violation
    json.dumps(OPENAPI)  # served as JSON: nothing in it may be unserialisable


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    registered, documented = _registered(), _documented()
    assert registered - documented == set(), "routes missing from the OpenAPI document"
    assert documented - registered <= PENDING, "documented routes the app does not have"
    assert ("GET", OPENAPI_PATH) in registered


def test_error_codes_match_the_code() -> None:
    def codes(path: str, status: str) -> list[str]:
        schema = OPENAPI["paths"][path]["post"]["responses"][status]["content"][
            "application/json"]["schema"]
        return schema["properties"]["error"]["enum"]

    assert codes("/api/v1/frequency", "400") == [str(c) for c in BODY_ERRORS]
    for path in ("/api/v1/frequency", "/api/v1/erasure", "/api/v1/subject-report"):
        assert codes(path, "401") == ["unauthorized"]
        assert codes(path, "403") == ["forbidden"]
        assert OPENAPI["paths"][path]["post"]["security"] == [{"bearer": []}]
    assert codes("/api/v1/erasure", "503") == ["kafka_unavailable", "redis_unavailable"]
    assert codes("/api/v1/frequency", "503") == ["clickhouse_unavailable"]


@pytest.mark.parametrize(("status", "body", "problem"), [
    (400, {"error": "invalid_window", "detail": "x"}, None),
    (400, {"error": "no_such_code"}, "is not one of"),
    (401, {"error": "unauthorized", "borrower_id": "x"}, "Additional properties"),
    (200, {"request_id": "r", "tables": [], "rows_before": -1, "consent_keys": 0}, "minimum"),
    (418, {"error": "teapot"}, "documented"),
])
def test_checker_rejects_what_the_document_forbids(status: int, body: Any,
                                                   problem: str | None) -> None:
    path = "/api/v1/erasure" if status == 200 else "/api/v1/frequency"
    if problem is None:
        check_response("POST", path, status, body)
        return
    with pytest.raises(AssertionError, match=problem):
        check_response("POST", path, status, body)


def test_checker_knows_templates_and_content_types() -> None:
    check_response("GET", "/static/vendor/uPlot.iife.min.js", 200, "x", "text/javascript")
    with pytest.raises(AssertionError, match="documented"):
        check_response("GET", "/lag", 200, "{}", "application/json")
    with pytest.raises(AssertionError, match="not described"):
        check_response("GET", "/nowhere", 200, {})
    with pytest.raises(AssertionError, match="date-time"):  # formats are checked
        check_response("POST", "/api/v1/frequency", 200, _answer() | {"as_of": "yesterday"})
    check_response("POST", "/api/v1/frequency", 200, _answer())


def _answer() -> dict[str, Any]:
    return {"window_days": 1, "window_start": "2026-01-01", "window_end": "2026-01-01",
            "draws": 1, "draw_amount": "10.00", "repayments": 0, "repaid_amount": "0.00",
            "defaults": 0, "distinct_lenders": 1, "active_days": 1,
            "last_draw_at": "2026-01-01T10:00:00.000Z", "as_of": None,
            "inquiring_institutions": 1,
            "daily": [{"date": "2026-01-01", "draws": 1, "draw_amount": "10.00"}],
            "request_id": "abc"}
