"""Risk API: ``POST /api/v1/frequency``.

Request: ``Authorization: Bearer <token>`` (``API_TOKENS`` maps tokens to institutions) and a
JSON body ``{"borrower_id": "...", "window_days": 30, "purpose": "loan_application"}``. The
national id travels only in the body, so it never lands in a URL or an access log; it is
normalised, pseudonymised at once and never logged nor echoed, not even in error messages.

Answers:

* 200 — :meth:`FrequencyAnswer.to_json` (an unknown borrower answers with zeros).
* 400 — ``{"error": CODE, "detail": "..."}`` with CODE one of :class:`BadRequest`.
* 401 — ``{"error": "unauthorized"}``: missing or unknown token.
* 503 — ``{"error": "clickhouse_unavailable"}``: ClickHouse did not answer.

Order of work: the inquiry is recorded FIRST, then the answer is computed, so every access is
audited (a failed audit insert fails the request) and ``inquiring_institutions`` counts the
asker. Concurrent requests share one inquiry insert and one read
(:class:`consumers.risk.batcher.FrequencyBatcher`, group commit); ClickHouse calls are
blocking and run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import enum
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.errors import ClickHouseError
from consumers.metrics import METRICS
from consumers.risk.batcher import FrequencyBatcher
from consumers.risk.frequency import MAX_WINDOW_DAYS, MIN_WINDOW_DAYS, Ask
from consumers.risk.inquiries import Inquiry
from schemas.national_id import normalise
from streams.calendar import local_today
from streams.pseudonym import Pseudonymiser
from streams.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_WINDOW_DAYS = 30
DEFAULT_PURPOSE = "loan_application"
MAX_PURPOSE_CHARS = 64


class BadRequest(enum.StrEnum):
    """Reason codes of a 400 answer."""

    INVALID_JSON = "invalid_json"
    INVALID_BORROWER_ID = "invalid_borrower_id"
    INVALID_WINDOW = "invalid_window"
    INVALID_PURPOSE = "invalid_purpose"


class _Problem(Exception):
    def __init__(self, code: BadRequest, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class FrequencyHandler:
    """Holds what the route needs; one instance per application."""

    def __init__(
        self,
        settings: Settings,
        ch: ClickHouse,
        as_of_ms: Callable[[], int | None] | None,
    ) -> None:
        self._settings = settings
        self._ch = ch
        self._as_of_ms = as_of_ms
        self._pseudonymise = Pseudonymiser(settings.pseudonym_key_bytes)
        self._tz = settings.tz
        self._batcher = FrequencyBatcher(ch)

    def _institution(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self._settings.institution_tokens.get(token.strip())

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        institution = self._institution(request)
        if institution is None:
            return web.json_response({"error": "unauthorized"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        try:
            borrower_id, window_days, purpose = _parse(await request.read())
        except _Problem as problem:
            return web.json_response({"error": str(problem.code), "detail": problem.detail},
                                     status=400)
        borrower = self._pseudonymise(borrower_id)
        del borrower_id
        request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
        today = local_today(self._tz)
        as_of = self._as_of_ms() if self._as_of_ms is not None else None
        try:
            answer = await self._batcher.answer(
                Inquiry(datetime.now(UTC), institution, borrower, purpose, window_days,
                        request_id),
                Ask(borrower, window_days, self._tz, today, as_of))
        except ClickHouseError as exc:
            log.warning("frequency query %s failed: %s", request_id, exc)
            return web.json_response({"error": "clickhouse_unavailable"}, status=503)
        METRICS.frequency_queries.inc(institution)
        METRICS.frequency_query_seconds.observe(time.perf_counter() - started)
        body = answer.to_json() | {"request_id": request_id}
        return web.json_response(body, headers={"Cache-Control": "no-store"})


def _parse(raw: bytes) -> tuple[str, int, str]:
    try:
        body: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _Problem(BadRequest.INVALID_JSON, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _Problem(BadRequest.INVALID_JSON, "the body must be a JSON object")
    raw_id = body.get("borrower_id")
    if not isinstance(raw_id, str):
        raise _Problem(BadRequest.INVALID_BORROWER_ID, "borrower_id must be a string")
    try:
        borrower_id = normalise(raw_id.strip())
    except ValueError as exc:
        raise _Problem(BadRequest.INVALID_BORROWER_ID, str(exc)) from None
    window = body.get("window_days", DEFAULT_WINDOW_DAYS)
    if (isinstance(window, bool) or not isinstance(window, int)
            or not MIN_WINDOW_DAYS <= window <= MAX_WINDOW_DAYS):
        raise _Problem(
            BadRequest.INVALID_WINDOW,
            f"window_days must be an integer from {MIN_WINDOW_DAYS} to {MAX_WINDOW_DAYS}",
        )
    purpose = body.get("purpose", DEFAULT_PURPOSE)
    if not isinstance(purpose, str) or not purpose.strip() or len(purpose) > MAX_PURPOSE_CHARS:
        raise _Problem(
            BadRequest.INVALID_PURPOSE,
            f"purpose must be a non-empty string of at most {MAX_PURPOSE_CHARS} characters",
        )
    return borrower_id, window, purpose.strip()


HANDLER_KEY = web.AppKey("frequency_handler", FrequencyHandler)


def add_frequency_routes(
    app: web.Application,
    *,
    settings: Settings,
    ch: ClickHouse,
    as_of_ms: Callable[[], int | None] | None = None,
) -> None:
    """Register ``POST /api/v1/frequency`` on ``app``."""
    handler = FrequencyHandler(settings, ch, as_of_ms)
    app[HANDLER_KEY] = handler
    app.router.add_post("/api/v1/frequency", handler.handle)
