"""The API's body rules on the inputs of issue 13 (input 3 and the id rule), without a server.

``tests/integration/test_api_bad_bodies.py`` sends the same bodies to the real routes.
"""

from __future__ import annotations

import json

import pytest

from consumers.api import body as api_body
from consumers.api.body import (
    FrequencyRequest,
    parse_erasure_body,
    parse_frequency_body,
)
from consumers.api.errors import ApiError, BodyError
from consumers.risk import frequency

BORROWER = "11010519491231002X"


def refused(raw: bytes) -> tuple[ApiError, ApiError]:
    codes = []
    for parse in (parse_frequency_body, parse_erasure_body):
        with pytest.raises(BodyError) as info:
            parse(raw)
        assert BORROWER[:10] not in info.value.detail
        codes.append(info.value.code)
    return codes[0], codes[1]


def test_deep_nesting_is_invalid_json() -> None:
    assert refused(b"[" * 50_000) == (ApiError.INVALID_JSON,) * 2
    deep = ('{{"borrower_id": "{}", "x": {}}}'.format(BORROWER, "[" * 5000 + "]" * 5000)).encode()
    assert refused(deep) == (ApiError.INVALID_JSON,) * 2


def test_unknown_shallow_fields_are_ignored() -> None:
    raw = json.dumps({"borrower_id": BORROWER, "x": [[1, {"y": None}]], "z": "q"}).encode()
    assert parse_frequency_body(raw) == FrequencyRequest(BORROWER, 30, "loan_application")
    assert parse_erasure_body(raw) == BORROWER


@pytest.mark.parametrize("raw", [
    b'{"borrower_id": "\\ud800"}',
    (f'{{"borrower_id": "{BORROWER}", "purpose": "a\\udfffb"}}').encode(),
    (f'{{"borrower_id": "{BORROWER}", "\\ud800": 1}}').encode(),
    b'{"borrower_id": "\xb7\xe7"}',  # GBK bytes: not UTF-8
    b"\xff\xfe{\x00}\x00",  # UTF-16: not UTF-8
    b"",
    b"[]",
    b'"text"',
    b"1" * 5000,  # an integer too long to convert
])
def test_bodies_that_are_not_valid_json_text(raw: bytes) -> None:
    assert refused(raw) == (ApiError.INVALID_JSON,) * 2


def test_bom_and_whitespace_around_the_id_are_accepted() -> None:
    raw = b"\xef\xbb\xbf" + json.dumps({"borrower_id": f"\t{BORROWER.lower()} "}).encode()
    assert parse_erasure_body(raw) == BORROWER
    assert parse_frequency_body(raw).borrower_id == BORROWER


@pytest.mark.parametrize("body, code", [
    ({"borrower_id": "１１０１０５１９４９１２３１００２Ｘ"}, ApiError.INVALID_BORROWER_ID),
    ({"borrower_id": 110105194912310020}, ApiError.INVALID_BORROWER_ID),
    ({"borrower_id": BORROWER, "window_days": True}, ApiError.INVALID_WINDOW),
    ({"borrower_id": BORROWER, "window_days": 30.0}, ApiError.INVALID_WINDOW),
    ({"borrower_id": BORROWER, "window_days": 401}, ApiError.INVALID_WINDOW),
    ({"borrower_id": BORROWER, "purpose": " "}, ApiError.INVALID_PURPOSE),
])
def test_field_refusals(body: dict[str, object], code: ApiError) -> None:
    with pytest.raises(BodyError) as info:
        parse_frequency_body(json.dumps(body).encode())
    assert info.value.code == code and BORROWER[:10] not in info.value.detail


def test_window_bounds_match_the_query() -> None:
    assert (api_body.MIN_WINDOW_DAYS, api_body.MAX_WINDOW_DAYS) == (
        frequency.MIN_WINDOW_DAYS, frequency.MAX_WINDOW_DAYS)
