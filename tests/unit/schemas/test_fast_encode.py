"""The hand-written LoanEvent v1 encoder: byte-identical to fastavro, and only for v1."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import fast_encode
from schemas.codec import LOAN_EVENT, SchemaCatalog, codec_for
from schemas.errors import EncodeError
from schemas.fast_encode import WRITTEN_FOR, encode_loan_event
from schemas.records import EventType, LoanEvent

AVRO_DIR = Path(__file__).resolve().parents[3] / "schemas" / "avro"
LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# Any unicode except lone surrogates (which are not encodable as UTF-8 by either path).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=200)

loan_events = st.builds(
    LoanEvent,
    event_id=TEXT,
    lender_id=TEXT,
    borrower_id=TEXT,
    loan_id=TEXT,
    event_type=st.sampled_from(EventType),
    amount_minor=LONG | st.integers(min_value=-300, max_value=20_000),
    currency=TEXT,
    occurred_at_ms=LONG,
    product=st.none() | TEXT,
    cancels_event_id=st.none() | TEXT,
)


def a_loan(**change: object) -> LoanEvent:
    fields: dict[str, object] = {
        "event_id": "ev-1", "lender_id": "lender-a", "borrower_id": "110101199003074514",
        "loan_id": "loan-9", "event_type": EventType.DRAW, "amount_minor": 125_000,
        "currency": "CNY", "occurred_at_ms": 1_790_000_000_000, "product": "huabei",
    }  # fmt: skip
    fields.update(change)
    return LoanEvent(**fields)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _fresh_check() -> Iterator[None]:
    """Each test sees the module as if freshly imported (no codec verified or refused yet)."""
    fast_encode._verified = fast_encode._refused = None
    yield
    fast_encode._verified = fast_encode._refused = None


@settings(max_examples=500, deadline=None)
@given(loan_events)
def test_fast_bytes_equal_fastavro_and_round_trip(event: LoanEvent) -> None:
    codec = codec_for(LOAN_EVENT)
    fast = encode_loan_event(event)
    assert fast_encode._verified is codec  # the fast path, not the fallback, made these bytes
    assert fast == codec.encode(event.to_avro())
    assert LoanEvent.from_avro(codec.decode(fast)) == event


@pytest.mark.parametrize(
    "n",
    [0, 1, -1, 63, -64, 64, 127, 128, 8191, 8192, 16383, 16384, -16385, 2**31, -(2**31) - 1,
     2**62, -(2**62) - 1, 2**63 - 1, -(2**63)],
)  # fmt: skip
def test_varint_boundaries(n: int) -> None:
    event = a_loan(amount_minor=n, occurred_at_ms=n)
    assert encode_loan_event(event) == codec_for(LOAN_EVENT).encode(event.to_avro())


@pytest.mark.parametrize("size", [63, 64, 8191, 8192, 20_000])
@pytest.mark.parametrize("char", ["a", "é", "中", "😀"])
def test_long_strings(size: int, char: str) -> None:
    text = (char * size).encode()[:size].decode(errors="ignore")  # about ``size`` bytes
    event = a_loan(loan_id=text, product=text)
    assert encode_loan_event(event) == codec_for(LOAN_EVENT).encode(event.to_avro())


def test_written_for_is_the_current_file() -> None:
    current = SchemaCatalog(AVRO_DIR).versions(LOAN_EVENT)[-1]
    assert current.version == 2 and current.fingerprint == WRITTEN_FOR


@pytest.mark.parametrize(
    "change",
    [{"amount_minor": 2**63}, {"occurred_at_ms": -(2**63) - 1}, {"amount_minor": "5"},
     {"event_type": "borrow"}, {"event_id": 5}, {"loan_id": None}, {"product": b"raw"},
     {"currency": "\ud800"}],
)  # fmt: skip
def test_values_off_schema_raise_what_the_codec_path_raised(change: dict[str, object]) -> None:
    event = a_loan(**change)
    with pytest.raises(Exception) as before:  # whatever it was
        codec_for(LOAN_EVENT).encode(event.to_avro())
    assert isinstance(before.value, EncodeError | AttributeError)  # to_avro(): "borrow".value
    with pytest.raises(type(before.value)):
        encode_loan_event(event)


def test_fallback_when_the_fingerprint_differs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fast_encode, "WRITTEN_FOR", bytes(8))

    def must_not_run(ev: LoanEvent) -> bytes:
        raise AssertionError("fast path used for a schema it was not written for")

    monkeypatch.setattr(fast_encode, "_encode_fast", must_not_run)
    codec = codec_for(LOAN_EVENT)
    with caplog.at_level(logging.WARNING, logger="schemas.fast_encode"):
        for _ in range(3):
            assert encode_loan_event(a_loan()) == codec.encode(a_loan().to_avro())
    assert fast_encode._verified is None and fast_encode._refused is codec
    warnings = [r for r in caplog.records if "fast_encode disabled" in r.getMessage()]
    assert len(warnings) == 1  # warned once, not per record


def test_a_v3_schema_is_encoded_by_the_codec_as_v3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    v2 = json.loads((AVRO_DIR / "loan_event.v2.avsc").read_text())
    v3 = copy.deepcopy(v2)
    v3["fields"].append({"name": "channel", "type": ["null", "string"], "default": None})
    (tmp_path / "loan_event.v2.avsc").write_text(json.dumps(v2))
    (tmp_path / "loan_event.v3.avsc").write_text(json.dumps(v3))
    catalog = SchemaCatalog(tmp_path)
    monkeypatch.setattr(fast_encode, "codec_for", catalog.codec_for)
    codec = catalog.codec_for(LOAN_EVENT)

    data = encode_loan_event(a_loan())
    assert data[2:10] == codec.fingerprint != WRITTEN_FOR
    assert data == codec.encode(a_loan().to_avro())
    assert codec.decode(data)["channel"] is None


def _crash(ev: LoanEvent) -> bytes:
    raise RuntimeError("bug")


@pytest.mark.parametrize(
    "broken", [lambda ev, real=fast_encode._encode_fast: real(ev) + b"\x00", _crash]
)
def test_fallback_when_a_canary_differs(monkeypatch: pytest.MonkeyPatch, broken: object) -> None:
    monkeypatch.setattr(fast_encode, "_encode_fast", broken)
    codec = codec_for(LOAN_EVENT)
    assert encode_loan_event(a_loan()) == codec.encode(a_loan().to_avro())
    assert fast_encode._refused is codec


def test_a_newly_handed_out_codec_is_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    first = codec_for(LOAN_EVENT)
    encode_loan_event(a_loan())
    assert fast_encode._verified is first
    other = SchemaCatalog(AVRO_DIR).codec_for(LOAN_EVENT)  # same schema, new codec object
    monkeypatch.setattr(fast_encode, "codec_for", lambda name: other)
    assert encode_loan_event(a_loan()) == first.encode(a_loan().to_avro())
    assert fast_encode._verified is other
