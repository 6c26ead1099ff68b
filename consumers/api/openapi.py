"""The HTTP API's OpenAPI 3.1 document, served at ``GET /api/v1/openapi.json``.

One Python dict, :data:`OPENAPI`, describes every route of :func:`consumers.api.server.build_app`:
request bodies, answers with their JSON schemas (JSON Schema 2020-12, as OpenAPI 3.1 uses it),
error codes and bearer authentication. ``tests/unit/consumers/api/test_openapi.py`` checks it with
``openapi-spec-validator`` and that every registered route is described; the integration tests
validate the real answers of every route against it (``tests/support/openapi_check.py``), so the
document cannot drift from the code.

Errors are ``{"error": CODE, "detail": "..."}`` (``detail`` where a route gives one). Each error
answer lists exactly the codes that route returns for that status.

``POST /api/v1/subject-report``'s answer is checked against its schema here by
``tests/integration/test_subject_report.py``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from consumers.api.errors import BODY_ERRORS, ApiError
from consumers.risk.frequency import MAX_WINDOW_DAYS, MIN_WINDOW_DAYS

OPENAPI_PATH = "/api/v1/openapi.json"

_JSON = "application/json"
_MONEY = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2}$",
          "description": "An amount in the currency's major unit, two decimals, as a string."}
_TIMESTAMP = {"type": ["string", "null"], "format": "date-time",
              "description": "UTC, millisecond precision (`2024-05-01T09:30:00.000Z`)."}
_STATUS = {"type": "string", "enum": ["OK", "ERROR", "WARN", "STALLED", "STOPPED"],
           "description": "Burrow-style lag status (README, 'Lag statuses')."}
_BORROWER_ID = {"type": "string", "minLength": 1, "maxLength": 64,
                "description": "The borrower's national id. It travels only in the body; the "
                               "registry pseudonymises it at once and never echoes it."}
_REQUEST_ID = {"type": "string", "minLength": 1, "maxLength": 64,
               "description": "The caller's `X-Request-Id` header (first 64 characters) or a "
                              "generated id; audit rows carry it."}


def _error(*codes: ApiError) -> dict[str, Any]:
    """Schema of an error answer whose ``error`` is one of ``codes``."""
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "enum": [str(c) for c in codes]},
            "detail": {"type": "string", "description": "Human-readable; never holds an id."},
        },
        "additionalProperties": False,
    }


def _json_answer(description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}, **extra}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_UNAUTHORIZED = _json_answer(
    "Missing, malformed or unknown bearer token.", _error(ApiError.UNAUTHORIZED),
    headers={"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
)
_FORBIDDEN = _json_answer(
    "The token is known but lacks the scope this route needs.", _error(ApiError.FORBIDDEN))


def _protected(summary: str, description: str, operation_id: str, body: str,
               answer: str, bad_request: tuple[ApiError, ...], unavailable: tuple[ApiError, ...]
               ) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "description": description,
        "operationId": operation_id,
        "tags": ["risk"],
        "security": [{"bearer": []}],
        "parameters": [{"$ref": "#/components/parameters/RequestId"}],
        "requestBody": {"required": True, "content": {_JSON: {"schema": _ref(body)}}},
        "responses": {
            "200": _json_answer("The answer.", _ref(answer)),
            "400": _json_answer("The body was refused; nothing was recorded.",
                                _error(*bad_request)),
            "401": _UNAUTHORIZED,
            "403": _FORBIDDEN,
            "503": _json_answer("A store did not answer; the request may be repeated.",
                                _error(*unavailable)),
        },
    }}


def _erasure_post() -> dict[str, Any]:
    route = _protected(
        "Erase a borrower (data-subject erasure)",
        "Deletes the borrower's consents in Redis and sends an erasure command through the "
        "stream: the agent owning the borrower's partition deletes its state, the sink its "
        "rows in every ClickHouse table, and an anonymous audit row is recorded. Answers 200 "
        "once the audit row exists (waits up to 30 s), else 202. Idempotent: repeat it "
        "after a 503.",
        "erasure", "BorrowerRequest", "ErasureAnswer",
        (ApiError.INVALID_JSON, ApiError.INVALID_BORROWER_ID),
        (ApiError.KAFKA_UNAVAILABLE, ApiError.REDIS_UNAVAILABLE),
    )
    route["post"]["responses"]["202"] = _json_answer(
        "The command was sent and is still on its way.", _ref("ErasurePending"))
    return route


_LAG_HISTORY = {
    "type": "object",
    "required": ["t", "lag", "lag_seconds"],
    "properties": {
        "t": {"type": "array", "items": {"type": "integer"},
              "description": "Sample times, epoch milliseconds, oldest first."},
        "lag": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "lag_seconds": {"type": "array", "items": {"type": ["number", "null"]}},
    },
    "additionalProperties": False,
}

SCHEMAS: dict[str, Any] = {
    "FrequencyRequest": {
        "type": "object",
        "required": ["borrower_id"],
        "properties": {
            "borrower_id": _BORROWER_ID,
            "window_days": {"type": "integer", "minimum": MIN_WINDOW_DAYS,
                            "maximum": MAX_WINDOW_DAYS, "default": 30},
            "purpose": {"type": "string", "minLength": 1, "maxLength": 64,
                        "default": "loan_application"},
        },
    },
    "FrequencyAnswer": {
        "type": "object",
        "required": ["window_days", "window_start", "window_end", "draws", "draw_amount",
                     "repayments", "repaid_amount", "defaults", "distinct_lenders",
                     "active_days", "last_draw_at", "as_of", "inquiring_institutions",
                     "daily", "request_id"],
        "properties": {
            "window_days": {"type": "integer", "minimum": MIN_WINDOW_DAYS,
                            "maximum": MAX_WINDOW_DAYS},
            "window_start": {"type": "string", "format": "date"},
            "window_end": {"type": "string", "format": "date"},
            "draws": {"type": "integer", "minimum": 0},
            "draw_amount": _MONEY,
            "repayments": {"type": "integer", "minimum": 0},
            "repaid_amount": _MONEY,
            "defaults": {"type": "integer", "minimum": 0},
            "distinct_lenders": {"type": "integer", "minimum": 0},
            "active_days": {"type": "integer", "minimum": 0},
            "last_draw_at": _TIMESTAMP,
            "as_of": _TIMESTAMP | {"description": "Data complete up to this time (the "
                                                  "freshness watermark), null when unknown."},
            "inquiring_institutions": {"type": "integer", "minimum": 0},
            "daily": {"type": "array", "items": _ref("DayActivity")},
            "request_id": _REQUEST_ID,
        },
        "additionalProperties": False,
    },
    "DayActivity": {
        "type": "object",
        "required": ["date", "draws", "draw_amount"],
        "properties": {
            "date": {"type": "string", "format": "date"},
            "draws": {"type": "integer", "minimum": 0},
            "draw_amount": _MONEY,
        },
        "additionalProperties": False,
    },
    "BorrowerRequest": {
        "type": "object",
        "required": ["borrower_id"],
        "properties": {"borrower_id": _BORROWER_ID},
    },
    "ErasurePending": {
        "type": "object",
        "description": "The erasure command was sent; the pipeline has not finished it yet. "
                       "Follow it with `GET /api/v1/erasure/{request_id}`.",
        "required": ["request_id", "status"],
        "properties": {
            "request_id": _REQUEST_ID,
            "status": {"type": "string", "enum": ["pending"]},
            "consent_keys": {"type": "integer", "minimum": 0},
        },
        "additionalProperties": False,
    },
    "ErasureAnswer": {
        "type": "object",
        "required": ["request_id", "status", "tables", "rows_before"],
        "properties": {
            "request_id": _REQUEST_ID,
            "status": {"type": "string", "enum": ["done"]},
            "tables": {"type": "array", "items": {"type": "string"},
                       "description": "ClickHouse tables the borrower's rows were deleted "
                                      "from."},
            "rows_before": {"type": "integer", "minimum": 0},
            "consent_keys": {"type": "integer", "minimum": 0,
                             "description": "Consent keys deleted in Redis."},
        },
        "additionalProperties": False,
    },
    "SubjectReport": {
        "type": "object",
        "description": "What the registry holds about one borrower (a data-subject access "
                       "report), keyed by the borrower's pseudonym; the report never "
                       "contains the national id.",
        "required": ["request_id", "generated_at", "pseudonym", "events", "consents",
                     "inquiries", "erasures"],
        "properties": {
            "request_id": _REQUEST_ID,
            "generated_at": {"type": "string", "format": "date-time"},
            "pseudonym": {"type": "string", "pattern": "^[0-9a-f]{32}$",
                          "description": "The keyed HMAC of the national id the registry "
                                         "holds the borrower's data under."},
            "events": {"type": "array", "description": "Admitted loan events, cancels "
                       "included, by lender, then event time.", "items": {
                "type": "object",
                "required": ["lender_id", "event_id", "loan_id", "event_type", "amount",
                             "currency", "occurred_at", "product", "admitted_at",
                             "cancels_event_id", "cancelled"],
                "properties": {
                    "lender_id": {"type": "string"},
                    "event_id": {"type": "string"},
                    "loan_id": {"type": "string"},
                    "event_type": {"enum": ["draw", "repayment", "default", "cancel"]},
                    "amount": {"type": ["string", "null"],
                               "description": "Decimal string; null for a cancel sent "
                                              "without an amount."},
                    "currency": {"type": "string"},
                    "occurred_at": {"type": "string", "format": "date-time"},
                    "product": {"type": ["string", "null"]},
                    "admitted_at": {"type": "string", "format": "date-time"},
                    "cancels_event_id": {"type": ["string", "null"],
                                         "description": "A cancel: the lender's event it "
                                                        "withdraws; null otherwise."},
                    "cancelled": {"type": "boolean",
                                  "description": "A cancel of the same lender names this "
                                                 "event: kept, counted nowhere."},
                },
                "additionalProperties": False}},
            "consents": {"type": "array", "description": "Per lender: the consent history "
                         "as applied and whether consent is in force now.", "items": {
                "type": "object", "required": ["lender_id", "in_force", "history"],
                "properties": {
                    "lender_id": {"type": "string"},
                    "in_force": {"type": "boolean"},
                    "history": {"type": "array", "items": {
                        "type": "object",
                        "required": ["action", "effective_at", "reference", "recorded_at"],
                        "properties": {
                            "action": {"enum": ["grant", "revoke"]},
                            "effective_at": {"type": "string", "format": "date-time"},
                            "reference": {"type": ["string", "null"]},
                            "recorded_at": {"type": "string", "format": "date-time"},
                        },
                        "additionalProperties": False}},
                },
                "additionalProperties": False}},
            "inquiries": {"type": "array", "description": "Who asked about the borrower, "
                          "when, why; the report's own request included.", "items": {
                "type": "object",
                "required": ["institution", "inquired_at", "purpose", "window_days",
                             "request_id"],
                "properties": {
                    "institution": {"type": "string"},
                    "inquired_at": {"type": "string", "format": "date-time"},
                    "purpose": {"type": "string"},
                    "window_days": {"type": "integer", "minimum": 0},
                    "request_id": {"type": "string"},
                },
                "additionalProperties": False}},
            "erasures": {"type": "array", "description": "Earlier erasures of this "
                         "borrower.", "items": {
                "type": "object",
                "required": ["erased_at", "request_id", "institution", "tables",
                             "rows_before"],
                "properties": {
                    "erased_at": {"type": "string", "format": "date-time"},
                    "request_id": {"type": "string"},
                    "institution": {"type": "string"},
                    "tables": {"type": "array", "items": {"type": "string"}},
                    "rows_before": {"type": "integer", "minimum": 0},
                },
                "additionalProperties": False}},
        },
        "additionalProperties": False,
    },
    "LagSnapshot": {
        "type": "object",
        "required": ["ready", "sampled_at", "poll_seconds", "error", "groups", "freshness"],
        "properties": {
            "ready": {"type": "boolean", "description": "A first sample has been taken."},
            "sampled_at": {"type": ["integer", "null"], "description": "Epoch milliseconds."},
            "poll_seconds": {"type": "number", "exclusiveMinimum": 0},
            "error": {"type": ["string", "null"],
                      "description": "Why the last sample failed; null when it succeeded."},
            "groups": {"type": "object", "additionalProperties": _ref("GroupLag"),
                       "description": "Every consumer group of the registry, by name."},
            "freshness": {"type": "array", "items": {
                "type": "object", "required": ["lender", "seconds"],
                "properties": {"lender": {"type": "string"},
                               "seconds": {"type": ["number", "null"], "minimum": 0}},
                "additionalProperties": False,
            }, "description": "Seconds since the newest message on each lender's loans "
                              "topic (null: no message yet)."},
        },
        "additionalProperties": False,
    },
    "GroupLag": {
        "type": "object",
        "required": ["group", "state", "members", "status", "lag", "lag_seconds", "trend",
                     "history", "lenders", "partitions"],
        "properties": {
            "group": {"type": "string"},
            "state": {"type": "string", "description": "Kafka's group state, e.g. Stable."},
            "members": {"type": ["integer", "null"], "minimum": 0},
            "status": _STATUS,
            "lag": {"type": "integer", "minimum": 0,
                    "description": "Messages behind, summed over the partitions."},
            "lag_seconds": {"type": ["number", "null"], "minimum": 0,
                            "description": "Age of the oldest unread message."},
            "trend": {
                "type": "object", "required": ["direction", "delta", "span_seconds"],
                "properties": {
                    "direction": {"type": "string",
                                  "enum": ["rising", "falling", "steady", "unknown"]},
                    "delta": {"type": "integer"},
                    "span_seconds": {"type": "number", "minimum": 0},
                },
                "additionalProperties": False,
                "description": "Total lag now against about a minute ago.",
            },
            "history": _LAG_HISTORY | {"description": "Total lag per sample."},
            "lenders": {"type": "array", "items": _ref("LenderLag")},
            "partitions": {"type": "array", "items": _ref("PartitionLag")},
        },
        "additionalProperties": False,
    },
    "LenderLag": {
        "type": "object",
        "description": "A group's partitions rolled up per lender; a topic outside "
                       "`lenders.*` is a row of its own with `lender` null.",
        "required": ["lender", "name", "topics", "partitions", "lag", "lag_seconds",
                     "status"],
        "properties": {
            "lender": {"type": ["string", "null"]},
            "name": {"type": "string"},
            "topics": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "partitions": {"type": "integer", "minimum": 1},
            "lag": {"type": "integer", "minimum": 0},
            "lag_seconds": {"type": ["number", "null"], "minimum": 0},
            "status": _STATUS,
        },
        "additionalProperties": False,
    },
    "PartitionLag": {
        "type": "object",
        "required": ["topic", "partition", "committed", "end", "lag", "lag_seconds", "status",
                     "history"],
        "properties": {
            "topic": {"type": "string"},
            "partition": {"type": "integer", "minimum": 0},
            "committed": {"type": ["integer", "null"], "minimum": 0},
            "end": {"type": "integer", "minimum": 0},
            "lag": {"type": "integer", "minimum": 0},
            "lag_seconds": {"type": ["number", "null"], "minimum": 0},
            "status": _STATUS,
            "history": _LAG_HISTORY,
        },
        "additionalProperties": False,
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Credit registry API",
        "version": "1.0.0",
        "summary": "Risk queries, data-subject requests and operations routes of the "
                   "national consumer-credit registry.",
        "description": "Every route answers JSON errors `{\"error\": CODE, \"detail\": "
                       "\"...\"}`. Routes under `risk` need `Authorization: Bearer <token>` "
                       "(tokens map to institutions, `API_TOKENS`). National ids travel only "
                       "in request bodies and are never echoed. The operations routes carry "
                       "no borrower data and no authentication of their own: bind them to an "
                       "operations network.",
    },
    "servers": [{"url": "/"}],
    "tags": [{"name": "risk", "description": "Institutions' queries about borrowers."},
             {"name": "ops", "description": "Operations: metrics, lag, this document."}],
    "paths": {
        "/api/v1/frequency": _protected(
            "Borrowing frequency of one borrower",
            "Counts and amounts of the borrower's draws, repayments and defaults over the "
            "last `window_days` local days, day by day. The inquiry is recorded before the "
            "answer is computed. An unknown borrower answers zeros.",
            "frequency", "FrequencyRequest", "FrequencyAnswer",
            BODY_ERRORS,
            (ApiError.CLICKHOUSE_UNAVAILABLE,),
        ),
        "/api/v1/erasure": _erasure_post(),
        "/api/v1/erasure/{request_id}": {"get": {
            "summary": "Follow an erasure request",
            "description": "Done (the audit row exists) or pending (the command is on its "
                           "way through the stream and the sink).",
            "operationId": "erasureStatus",
            "tags": ["risk"],
            "security": [{"bearer": []}],
            "parameters": [{"name": "request_id", "in": "path", "required": True,
                            "schema": _REQUEST_ID}],
            "responses": {
                "200": _json_answer("The erasure is done.", _ref("ErasureAnswer")),
                "202": _json_answer("The erasure is pending.", _ref("ErasurePending")),
                "401": _UNAUTHORIZED,
                "403": _FORBIDDEN,
                "404": _json_answer("No erasure with this request id.",
                                    _error(ApiError.UNKNOWN_REQUEST)),
                "503": _json_answer("A store did not answer.",
                                    _error(ApiError.CLICKHOUSE_UNAVAILABLE,
                                           ApiError.REDIS_UNAVAILABLE)),
            },
        }},
        "/subject-report": {
            "get": {
                "summary": "Subject access report: the form (HTML)",
                "description": "A page where a person (or the registry's counter) enters the "
                               "national id and a token; the id is POSTed, never in a URL.",
                "operationId": "subjectReportForm",
                "tags": ["risk"],
                "responses": {"200": {"description": "The form.", "content": {
                    "text/html": {"schema": {"type": "string"}}}}},
            },
            "post": {
                "summary": "Subject access report: the readable page (HTML)",
                "description": "Form-encoded `borrower_id` and `token` (scope "
                               "`subject_report`); the same report as "
                               "`POST /api/v1/subject-report`, as a page.",
                "operationId": "subjectReportPage",
                "tags": ["risk"],
                "requestBody": {"required": True, "content": {
                    "application/x-www-form-urlencoded": {"schema": {
                        "type": "object", "required": ["borrower_id", "token"],
                        "properties": {"borrower_id": {"type": "string"},
                                       "token": {"type": "string"}}}}}},
                "responses": {code: {"description": text, "content": {
                    "text/html": {"schema": {"type": "string"}}}} for code, text in (
                    ("200", "The report."), ("400", "The id was refused."),
                    ("401", "Unknown token."), ("403", "The token lacks the scope."),
                    ("503", "A store did not answer."))},
            },
        },
        "/api/v1/subject-report": _protected(
            "Report what the registry holds about a borrower (data-subject access)",
            "Events (cancels included), consents, inquiries and erasures of the borrower, "
            "keyed by the pseudonym, never the national id. The report itself is recorded "
            "as an inquiry.",
            "subjectReport", "BorrowerRequest", "SubjectReport",
            (ApiError.INVALID_JSON, ApiError.INVALID_BORROWER_ID),
            (ApiError.CLICKHOUSE_UNAVAILABLE, ApiError.REDIS_UNAVAILABLE),
        ),
        "/api/v1/lag": {"get": {
            "summary": "Consumer lag of every registry consumer group",
            "description": "The lag monitor's latest sample: per group its status, totals, "
                           "trend, per-lender roll-up and partitions, each with its recent "
                           "history; plus lender freshness. Never waits on Kafka.",
            "operationId": "lag",
            "tags": ["ops"],
            "parameters": [{
                "name": "points", "in": "query", "required": False,
                "description": "Thin each history series to at most this many points "
                               "(clamped to 2..2000).",
                "schema": {"type": "integer", "default": 180},
            }],
            "responses": {
                "200": _json_answer("The latest sample.", _ref("LagSnapshot")),
                "400": _json_answer("`points` is not an integer.", _error(ApiError.INVALID_POINTS)),
            },
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics",
            "description": "The registry's metrics in the Prometheus text exposition format.",
            "operationId": "metrics",
            "tags": ["ops"],
            "responses": {"200": {"description": "Prometheus text format.", "content": {
                "text/plain": {"schema": {"type": "string"}}}}},
        }},
        "/lag": {"get": {
            "summary": "Consumer-lag dashboard (HTML)",
            "description": "A page for people; it polls `/api/v1/lag`.",
            "operationId": "lagPage",
            "tags": ["ops"],
            "responses": {"200": {"description": "The page.", "content": {
                "text/html": {"schema": {"type": "string"}}}}},
        }},
        "/static/{path}": {"get": {
            "summary": "The dashboard's static files (CSS, JavaScript, vendored uPlot)",
            "operationId": "static",
            "tags": ["ops"],
            "parameters": [{"name": "path", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "The file.", "content": {
                    "text/css": {"schema": {"type": "string"}},
                    "text/html": {"schema": {"type": "string"}},
                    "text/javascript": {"schema": {"type": "string"}},
                    "application/javascript": {"schema": {"type": "string"}},
                    "text/markdown": {"schema": {"type": "string"}},
                    "application/octet-stream": {"schema": {"type": "string"}},
                }},
                "404": {"description": "No such file (empty body)."},
            },
        }},
        OPENAPI_PATH: {"get": {
            "summary": "This document",
            "operationId": "openapi",
            "tags": ["ops"],
            "responses": {"200": _json_answer("OpenAPI 3.1 document.", {"type": "object"})},
        }},
    },
    "components": {
        "securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "An institution's token (`API_TOKENS` maps tokens to "
                           "institutions).",
        }},
        "parameters": {"RequestId": {
            "name": "X-Request-Id", "in": "header", "required": False,
            "description": "Correlates the request with its audit rows (first 64 characters "
                           "kept); generated when absent.",
            "schema": {"type": "string"},
        }},
        "schemas": SCHEMAS,
    },
}


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI, headers={"Cache-Control": "no-cache"})


def add_openapi_route(app: web.Application) -> None:
    """Register ``GET /api/v1/openapi.json`` on ``app``."""
    app.router.add_get(OPENAPI_PATH, _openapi)
