"""Every reader of outside bytes turns ANY input into a value or a reported reason (issue 13).

Property-based (hypothesis, bounded and derandomised so ``make test`` is repeatable):

* the JSON Lines reader (:func:`streams.lender.jsonl.read_line`) on random bytes, random
  Unicode with lone surrogates and byte-order marks, and random nesting: no exception, every
  line is an event, a rejection or blank, and no rejection repeats the national id;
* the API body parsers (:mod:`consumers.api.body`) of every route: a value or a
  :class:`BodyError`, whose detail never repeats the id;
* the Avro single-object decoder on random and truncated bytes: only ``CodecError``;
* ``registry consent``'s arguments: a consent record or a reported reason.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from consumers.api.body import (
    FrequencyRequest,
    parse_erasure_body,
    parse_frequency_body,
)
from consumers.api.errors import BODY_ERRORS, BodyError
from schemas.codec import CONSENT_RECORD, LOAN_EVENT, codec_for
from schemas.errors import CodecError
from schemas.national_id import generate
from schemas.records import ConsentRecord, LoanEvent
from schemas.validation import ValidationLimits
from streams.lender.jsonl import Rejected, consent_record, read_line

LENDER = "jd-baitiao"
NOW = 1_790_000_000_000
LIMITS = ValidationLimits()
IDS = [generate(random.Random(n)) for n in range(8)]
PROPERTY = settings(derandomize=True, max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

surrogates = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
#: Text with everything a file or body may hold: any code point incl. lone surrogates, BOMs.
wild_text = st.lists(
    st.one_of(st.characters(), surrogates, st.just("\ufeff"), st.sampled_from(IDS)),
    max_size=40,
).map("".join)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                      wild_text)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(wild_text, inner, max_size=4)),
    max_leaves=20,
)
nesting = st.tuples(st.integers(0, 3000), st.sampled_from(["[", "{\"a\":"])).map(
    lambda t: t[1] * t[0] + "0" + ("]" if t[1] == "[" else "}") * t[0])


@st.composite
def loan_objects(draw: st.DrawFn) -> dict[str, object]:
    """A loan line that is good, or broken in one or several fields with wild values."""
    obj: dict[str, object] = {
        "event_id": f"evt-{draw(st.integers(0, 10**6))}",
        "borrower_id": draw(st.sampled_from(IDS)),
        "loan_id": "bt-1",
        "event_type": "draw",
        "amount": "1250.00",
        "occurred_at": "2026-09-01T09:30:00+08:00",
    }
    for key in draw(st.lists(st.sampled_from([*obj, "product", "currency", "x"]), max_size=3)):
        obj[key] = draw(json_values)
    return obj


def encode_line(obj: object, ensure_ascii: bool) -> bytes:
    text = json.dumps(obj, ensure_ascii=ensure_ascii)
    return text.encode("utf-8", errors="surrogatepass")  # lone surrogates as raw bytes too


line_bytes = st.one_of(
    st.binary(max_size=200),
    wild_text.map(lambda t: t.encode("utf-8", errors="surrogatepass")),
    st.tuples(loan_objects(), st.booleans()).map(lambda t: encode_line(*t)),
    nesting.map(str.encode),
    st.tuples(st.sampled_from([b"", b"\xef\xbb\xbf"]), loan_objects()).map(
        lambda t: t[0] + encode_line(t[1], True)),
    st.tuples(loan_objects(), st.sampled_from(["gbk", "utf-16", "latin-1"])).map(
        lambda t: json.dumps(t[0] | {"loan_id": "借款一"}, ensure_ascii=False).encode(
            t[1], errors="replace")),
)


def _assert_never_echoes_an_id(text: str) -> None:
    for national_id in IDS:
        assert national_id[:14] not in text, text


@PROPERTY
@given(st.lists(line_bytes, max_size=8))
@example([b"\xef\xbb\xbf" + b'{"a": 1}', b"[" * 5000 + b"]" * 5000, b'{"product": "\\ud800"}'])
def test_every_line_is_published_or_reported(lines: list[bytes]) -> None:
    data = b"\n".join(lines)
    seen = published = rejected = blank = 0
    for raw in io.BytesIO(data):  # exactly how `registry publish` iterates a file
        seen += 1
        result = read_line(raw, lender_id=LENDER, limits=LIMITS, max_record_bytes=16384,
                           now_ms=NOW)
        if isinstance(result, LoanEvent):
            published += 1
            result.borrower_id.encode()  # what the encoder needs: valid text everywhere
            (result.event_id + result.loan_id + (result.product or "")).encode()
        elif isinstance(result, Rejected):
            rejected += 1
            _assert_never_echoes_an_id(result.message)
        else:
            assert result is None  # blank: whitespace (and byte-order marks) only
            assert raw.decode("utf-8", "replace").strip().lstrip("\ufeff").strip() == ""
            blank += 1
    assert published + rejected + blank == seen == len(io.BytesIO(data).readlines())


@PROPERTY
@given(st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: encode_line(v, False)),
    st.tuples(st.sampled_from([*IDS, " " + IDS[0] + " "]), st.one_of(st.none(), json_values),
              st.one_of(st.none(), json_values), json_values).map(
        lambda t: encode_line({"borrower_id": t[0], "window_days": t[1], "purpose": t[2],
                               "x": t[3]}, False)),
    nesting.map(str.encode),
))
@example(b"[" * 50_000)
@example(encode_line({"borrower_id": IDS[0], "x": json.loads("[" * 900 + "]" * 900)}, True))
def test_api_bodies_give_a_value_or_a_400_reason(raw: bytes) -> None:
    for parse in (parse_frequency_body, parse_erasure_body):
        try:
            value = parse(raw)
        except BodyError as problem:
            assert problem.code in BODY_ERRORS
            _assert_never_echoes_an_id(problem.detail)
        else:
            borrower = value.borrower_id if isinstance(value, FrequencyRequest) else value
            assert borrower in IDS


@PROPERTY
@given(st.one_of(
    st.binary(max_size=200),
    st.tuples(st.integers(0, 120), st.sampled_from(IDS)).map(
        lambda t: codec_for(LOAN_EVENT).encode({
            "event_id": "e", "lender_id": LENDER, "borrower_id": t[1], "loan_id": "l",
            "event_type": "draw", "amount_minor": 1, "currency": "CNY",
            "occurred_at_ms": NOW, "product": None})[: t[0]]),
    st.binary(max_size=60).map(lambda b: codec_for(LOAN_EVENT).encode({
        "event_id": "e", "lender_id": LENDER, "borrower_id": IDS[0], "loan_id": "l",
        "event_type": "draw", "amount_minor": 1, "currency": "CNY",
        "occurred_at_ms": NOW, "product": None})[:10] + b),
))
def test_avro_decoder_raises_only_codec_errors(data: bytes) -> None:
    for family in (LOAN_EVENT, CONSENT_RECORD):
        with contextlib.suppress(CodecError):  # anything else fails the test
            codec_for(family).decode(data)


@PROPERTY
@given(action=st.sampled_from(["grant", "revoke"]),
       lender=st.one_of(st.just(LENDER), wild_text),
       borrower=st.one_of(st.sampled_from(IDS), st.sampled_from(IDS).map(lambda i: f" {i}\t"),
                          wild_text),
       at=st.one_of(st.none(), wild_text, st.just("2026-09-01T00:00:00+08:00")),
       reference=st.one_of(st.none(), wild_text))
def test_consent_arguments_give_a_record_or_a_reason(action: str, lender: str, borrower: str,
                                                     at: str | None,
                                                     reference: str | None) -> None:
    args = argparse.Namespace(action=action, lender=lender, borrower=borrower, at=at,
                              reference=reference)
    result = consent_record(args, now_ms=NOW, limits=LIMITS)
    if isinstance(result, ConsentRecord):
        assert result.borrower_id in IDS
    else:
        assert isinstance(result, Rejected)
        _assert_never_echoes_an_id(result.message)
