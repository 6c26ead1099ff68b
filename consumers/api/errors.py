"""Errors of the HTTP API: the one enum of error codes every route answers with.

An error answer is ``{"error": CODE, "detail": "..."}`` (``detail`` where a route gives one, never
holding an id) with CODE a member of :class:`ApiError`; the OpenAPI document lists, per route and
status, the members it can carry (:mod:`consumers.api.openapi`). Client mistakes are 4xx,
unreachable stores 503 (retry later), never a 5xx otherwise.
"""

from __future__ import annotations

import enum

from schemas.errors import RegistryError


class ApiError(enum.StrEnum):
    """Every ``error`` code of the registry's HTTP API."""

    # 400: the request itself
    INVALID_JSON = "invalid_json"
    INVALID_BORROWER_ID = "invalid_borrower_id"
    INVALID_WINDOW = "invalid_window"
    INVALID_PURPOSE = "invalid_purpose"
    INVALID_POINTS = "invalid_points"
    # 401 / 403: the bearer token
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    # 404
    UNKNOWN_REQUEST = "unknown_request"
    # 503: a store did not answer; the same request may be repeated
    CLICKHOUSE_UNAVAILABLE = "clickhouse_unavailable"
    REDIS_UNAVAILABLE = "redis_unavailable"
    KAFKA_UNAVAILABLE = "kafka_unavailable"


#: The codes of a refused frequency body (400), in the order the rules are checked.
BODY_ERRORS = (ApiError.INVALID_JSON, ApiError.INVALID_BORROWER_ID, ApiError.INVALID_WINDOW,
               ApiError.INVALID_PURPOSE)


class BodyError(RegistryError):
    """The body is refused: ``code`` (one of :data:`BODY_ERRORS`) and a ``detail`` without
    any id."""

    retriable = False

    def __init__(self, code: ApiError, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
