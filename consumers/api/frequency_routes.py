"""Risk API: ``POST /api/v1/frequency``.

Request: ``Authorization: Bearer <token>`` (``API_TOKENS`` maps tokens to institutions) and a
JSON body ``{"borrower_id": "...", "window_days": 30, "purpose": "loan_application"}``. The
national id travels only in the body, so it never lands in a URL or an access log; it is
normalised, pseudonymised at once and never logged nor echoed, not even in error messages.

Answers:

* 200 — :meth:`FrequencyAnswer.to_json` (an unknown borrower answers with zeros).
* 400 — ``{"error": CODE, "detail": "..."}`` with CODE one of
  :data:`~consumers.api.errors.BODY_ERRORS` (body rules, including unknown fields and
  nesting: :mod:`consumers.api.body`).
* 401 — ``{"error": "unauthorized"}``: missing or unknown token.
* 403 — ``{"error": "forbidden", ...}``: the token lacks scope ``frequency``
  (:mod:`consumers.api.auth`).
* 503 — ``{"error": "clickhouse_unavailable"}``: ClickHouse did not answer.

Order of work: the inquiry is recorded FIRST, then the answer is computed, so every access is
audited (a failed audit insert fails the request) and ``inquiring_institutions`` counts the
asker. Concurrent requests share one inquiry insert and one read
(:class:`consumers.risk.batcher.FrequencyBatcher`, group commit); ClickHouse calls are
blocking and run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web

from consumers.api.auth import authorizer
from consumers.api.body import (
    DEFAULT_PURPOSE,
    DEFAULT_WINDOW_DAYS,
    MAX_PURPOSE_CHARS,
    parse_frequency_body,
)
from consumers.api.errors import ApiError
from consumers.api.errors import BodyError as _Problem
from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.errors import ClickHouseError
from consumers.risk.batcher import FrequencyBatcher
from consumers.risk.frequency import Ask
from consumers.risk.inquiries import Inquiry
from schemas.calendar import local_today
from schemas.pseudonym import Pseudonymiser
from streams.runtime.metrics import METRICS
from streams.settings import Scope, Settings

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_PURPOSE", "DEFAULT_WINDOW_DAYS", "MAX_PURPOSE_CHARS",
           "FrequencyHandler", "add_frequency_routes"]


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

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        institution = authorizer(self._settings).require(request, Scope.FREQUENCY)
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
            return web.json_response({"error": ApiError.CLICKHOUSE_UNAVAILABLE}, status=503)
        METRICS.frequency_queries.inc(institution)
        METRICS.frequency_query_seconds.observe(time.perf_counter() - started)
        body = answer.to_json() | {"request_id": request_id}
        return web.json_response(body, headers={"Cache-Control": "no-store"})


def _parse(raw: bytes) -> tuple[str, int, str]:
    """(canonical id, window days, purpose) of a body; raises ``_Problem`` (a BodyError)."""
    request = parse_frequency_body(raw)
    return request.borrower_id, request.window_days, request.purpose


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
