"""Request bodies of the JSON API: bytes in, validated values or one 400 reason out.

Pure functions (no I/O), shared by ``POST /api/v1/frequency`` and ``POST /api/v1/erasure`` and
property-tested on arbitrary bytes (``tests/unit/consumers/api/test_api_body.py``). Whatever the
bytes, they either return a value or raise :class:`BodyError`; nothing else escapes, so a handler
answers 400, never 500.

Rules for every body:

* it is UTF-8 (RFC 8259), a leading byte-order mark is ignored; other bytes: ``invalid_json``;
* it parses as ONE JSON object; nesting deeper than the parser's recursion limit (about 1,000
  levels) is ``invalid_json``, also when the deep value sits in a field the route does not use;
* no string (key or value) holds a lone surrogate escape such as ``"\\ud800"`` (no UTF-8 text
  can carry it): ``invalid_json``;
* unknown extra fields are allowed and ignored, provided the whole body obeys the rules above;
* the national id goes through the one normalisation rule,
  :func:`schemas.national_id.normalise`; a refusal never repeats the id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from consumers.api.errors import ApiError, BodyError
from schemas.national_id import normalise

#: Bounds of ``window_days`` (the same as :mod:`consumers.risk.frequency`'s).
MIN_WINDOW_DAYS = 1
MAX_WINDOW_DAYS = 400
DEFAULT_WINDOW_DAYS = 30
DEFAULT_PURPOSE = "loan_application"
MAX_PURPOSE_CHARS = 64


@dataclass(frozen=True, slots=True)
class FrequencyRequest:
    borrower_id: str  # canonical national id
    window_days: int  # MIN_WINDOW_DAYS..MAX_WINDOW_DAYS
    purpose: str  # stripped, 1..MAX_PURPOSE_CHARS characters


def _has_lone_surrogate(value: Any) -> bool:
    """Whether any string inside ``value`` cannot be UTF-8 encoded (iterative: no recursion)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode()
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, by the module's rules. Raises :class:`BodyError`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(ApiError.INVALID_JSON, "the body is not UTF-8") from None
    try:
        body: Any = json.loads(text.removeprefix("\ufeff"))
    except RecursionError:
        raise BodyError(ApiError.INVALID_JSON, "the body is nested too deeply") from None
    except ValueError:
        raise BodyError(ApiError.INVALID_JSON, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BodyError(ApiError.INVALID_JSON, "the body must be a JSON object")
    if _has_lone_surrogate(body):
        raise BodyError(ApiError.INVALID_JSON,
                        "the body holds a lone surrogate escape (not valid Unicode)")
    return body


def borrower_id_of(body: dict[str, Any]) -> str:
    """``body["borrower_id"]`` normalised. Raises :class:`BodyError` (invalid_borrower_id)."""
    raw_id = body.get("borrower_id")
    if not isinstance(raw_id, str):
        raise BodyError(ApiError.INVALID_BORROWER_ID, "borrower_id must be a string")
    try:
        return normalise(raw_id)
    except ValueError as exc:
        raise BodyError(ApiError.INVALID_BORROWER_ID, str(exc)) from None


def parse_frequency_body(raw: bytes) -> FrequencyRequest:
    """``{"borrower_id": str, "window_days": int = 30, "purpose": str = "loan_application"}``.

    Raises :class:`BodyError` with the first failing check: invalid_json, invalid_borrower_id,
    invalid_window, invalid_purpose.
    """
    body = json_object(raw)
    borrower_id = borrower_id_of(body)
    window = body.get("window_days", DEFAULT_WINDOW_DAYS)
    if (isinstance(window, bool) or not isinstance(window, int)
            or not MIN_WINDOW_DAYS <= window <= MAX_WINDOW_DAYS):
        raise BodyError(
            ApiError.INVALID_WINDOW,
            f"window_days must be an integer from {MIN_WINDOW_DAYS} to {MAX_WINDOW_DAYS}",
        )
    purpose = body.get("purpose", DEFAULT_PURPOSE)
    if not isinstance(purpose, str) or not purpose.strip() or len(purpose) > MAX_PURPOSE_CHARS:
        raise BodyError(
            ApiError.INVALID_PURPOSE,
            f"purpose must be a non-empty string of at most {MAX_PURPOSE_CHARS} characters",
        )
    return FrequencyRequest(borrower_id, window, purpose.strip())


def parse_erasure_body(raw: bytes) -> str:
    """``{"borrower_id": str}`` -> the canonical id. Raises :class:`BodyError`."""
    return borrower_id_of(json_object(raw))
