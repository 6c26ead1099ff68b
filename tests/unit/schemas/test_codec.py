"""Single-object encoding: exact header, lossless round trips, typed refusals."""

from __future__ import annotations

import copy
import json
import string
from pathlib import Path

import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import national_id
from schemas.codec import (
    CONSENT_RECORD,
    LOAN_EVENT,
    MAGIC,
    REJECTION,
    Codec,
    SchemaCatalog,
    codec_for,
    fingerprint,
    rabin64,
)
from schemas.errors import (
    EncodeError,
    MalformedRecordError,
    UnknownRecordNameError,
    UnknownSchemaError,
)
from schemas.reasons import RejectReason
from schemas.records import ConsentAction, ConsentRecord, EventType, LoanEvent, Rejection

AVRO_DIR = Path(__file__).resolve().parents[3] / "schemas" / "avro"
LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(max_size=80)
IDS = st.builds(national_id.generate, st.randoms(use_true_random=False))

loan_events = st.builds(
    LoanEvent,
    event_id=TEXT,
    lender_id=st.text(alphabet=string.ascii_lowercase + "-", min_size=1, max_size=48),
    borrower_id=IDS,
    loan_id=TEXT,
    event_type=st.sampled_from(EventType),
    amount_minor=LONG,
    currency=st.sampled_from(["CNY", "USD", "HKD"]),
    occurred_at_ms=LONG,
    product=st.none() | TEXT,
)
consent_records = st.builds(
    ConsentRecord,
    lender_id=TEXT,
    borrower_id=IDS,
    action=st.sampled_from(ConsentAction),
    effective_at_ms=LONG,
    reference=st.none() | TEXT,
)
rejections = st.builds(
    Rejection,
    lender_id=TEXT,
    reason=st.sampled_from(RejectReason),
    detail=TEXT,
    source_topic=TEXT,
    source_partition=st.integers(min_value=0, max_value=2**31 - 1),
    source_offset=st.integers(min_value=0, max_value=2**63 - 1),
    event_id=st.none() | TEXT,
    rejected_at_ms=LONG,
)


def a_loan() -> LoanEvent:
    return LoanEvent(
        "ev-1", "lender-a", "110101199003074514", "loan-9", EventType.DRAW, 125_000, "CNY",
        1_790_000_000_000, "huabei",
    )  # fmt: skip


# --- fingerprints -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canonical", "signed"),  # the Avro project's published vectors (schema-tests.txt)
    [('"null"', 7195948357588979594), ('"int"', 8247732601305521295),
     ('"long"', -3434872931120570953), ('"boolean"', -6970731678124411036)],
)  # fmt: skip
def test_rabin_matches_the_avro_spec_vectors(canonical: str, signed: int) -> None:
    assert rabin64(canonical.encode()) == signed & (2**64 - 1)


@pytest.mark.parametrize("name", [LOAN_EVENT, CONSENT_RECORD, REJECTION])
def test_header_is_marker_plus_little_endian_fingerprint(name: str) -> None:
    codec = codec_for(name)
    schema = codec.schema
    # fastavro prints the same CRC-64-AVRO as hex of the little-endian bytes
    expected = bytes.fromhex(fastavro_fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
    assert codec.fingerprint == fingerprint(schema) == expected
    assert len(codec.fingerprint) == 8
    if name == LOAN_EVENT:
        data = codec.encode(a_loan().to_avro())
        assert data[:2] == MAGIC == b"\xc3\x01"
        assert data[2:10] == codec.fingerprint


# --- round trips --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(loan_events)
def test_loan_event_round_trip(event: LoanEvent) -> None:
    codec = codec_for(LOAN_EVENT)
    assert LoanEvent.from_avro(codec.decode(codec.encode(event.to_avro()))) == event


@settings(max_examples=200, deadline=None)
@given(consent_records)
def test_consent_round_trip(record: ConsentRecord) -> None:
    codec = codec_for(CONSENT_RECORD)
    assert ConsentRecord.from_avro(codec.decode(codec.encode(record.to_avro()))) == record


@settings(max_examples=200, deadline=None)
@given(rejections)
def test_rejection_round_trip(rejection: Rejection) -> None:
    codec = codec_for(REJECTION)
    assert Rejection.from_avro(codec.decode(codec.encode(rejection.to_avro()))) == rejection


def test_currency_default_and_enum_symbol_on_the_wire() -> None:
    codec = codec_for(LOAN_EVENT)
    rec = a_loan().to_avro()
    del rec["currency"]
    assert codec.decode(codec.encode(rec))["currency"] == "CNY"
    assert codec.decode(codec.encode(rec))["event_type"] == "draw"


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc3", b"\xc3\x01\x00", b'{"event_id": "e1"}', b"\x00\x01" + bytes(40), b"\xff" * 64],
)
def test_no_marker_or_short_header_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedRecordError) as info:
        codec_for(LOAN_EVENT).decode(data)
    assert info.value.reason is RejectReason.MALFORMED
    assert info.value.retriable is False


@pytest.mark.parametrize(
    "body", [b"\xff" * 40, b"\x7f\x80\x80", b"\x04\xff\xfe", b"\x02a" * 4 + b"\x0a", b""]
)
def test_garbage_body_behind_a_valid_header_is_malformed(body: bytes) -> None:
    codec = codec_for(LOAN_EVENT)
    with pytest.raises(MalformedRecordError):
        codec.decode(MAGIC + codec.fingerprint + body)


def test_every_truncation_is_malformed() -> None:
    codec = codec_for(LOAN_EVENT)
    data = codec.encode(a_loan().to_avro())
    for cut in range(len(data)):
        with pytest.raises(MalformedRecordError):
            codec.decode(data[:cut])


def test_trailing_bytes_are_malformed() -> None:
    codec = codec_for(LOAN_EVENT)
    with pytest.raises(MalformedRecordError):
        codec.decode(codec.encode(a_loan().to_avro()) + b"\x00")


def test_unknown_fingerprint_is_unknown_schema() -> None:
    codec = codec_for(LOAN_EVENT)
    body = codec.encode(a_loan().to_avro())[10:]
    with pytest.raises(UnknownSchemaError) as info:
        codec.decode(MAGIC + bytes(8) + body)
    assert info.value.reason is RejectReason.UNKNOWN_SCHEMA
    # a consent record is a known schema, but not of the loan family
    consent = codec_for(CONSENT_RECORD).encode(
        ConsentRecord("lender-a", "110101199003074514", ConsentAction.GRANT, 1).to_avro()
    )
    with pytest.raises(UnknownSchemaError):
        codec.decode(consent)


def test_unknown_record_name_is_a_key_error() -> None:
    with pytest.raises(UnknownRecordNameError) as info:
        codec_for("registry.lender.NoSuchThing")
    assert isinstance(info.value, KeyError)
    assert "registry.lender.NoSuchThing" in str(info.value)


@pytest.mark.parametrize(
    "change",
    [{"amount_minor": "5"}, {"event_type": "borrow"}, {"event_id": 5}, {"loan_id": None}],
)
def test_encoding_a_record_off_schema_raises_encode_error(change: dict[str, object]) -> None:
    with pytest.raises(EncodeError):
        codec_for(LOAN_EVENT).encode(a_loan().to_avro() | change)


# --- families, versions, registration ------------------------------------------------------------


def _loan_v1() -> dict[str, object]:
    return json.loads((AVRO_DIR / "loan_event.v1.avsc").read_text())


def _v1_fields(record: dict[str, object]) -> dict[str, object]:
    """``record`` without the field loan_event v2 added (what a v1 schema reads back)."""
    return {k: v for k, v in record.items() if k != "cancels_event_id"}


def _compatible_v2() -> dict[str, object]:
    schema = copy.deepcopy(_loan_v1())
    schema["fields"].append(  # type: ignore[attr-defined]
        {"name": "channel", "type": ["null", "string"], "default": None, "doc": "new in v2"}
    )
    return schema


def test_catalog_reads_every_version_into_the_newest(tmp_path: Path) -> None:
    (tmp_path / "loan_event.v1.avsc").write_text(json.dumps(_loan_v1()))
    v1 = SchemaCatalog(tmp_path).codec_for(LOAN_EVENT)
    old_bytes = v1.encode(a_loan().to_avro())

    (tmp_path / "loan_event.v2.avsc").write_text(json.dumps(_compatible_v2()))
    catalog = SchemaCatalog(tmp_path)
    codec = catalog.codec_for(LOAN_EVENT)
    assert [v.version for v in codec.versions] == [1, 2]
    assert codec.fingerprint != v1.fingerprint  # writes v2 now
    assert codec.decode(old_bytes) == _v1_fields(a_loan().to_avro()) | {"channel": None}
    new = codec.encode(a_loan().to_avro() | {"channel": "app"})
    assert codec.decode(new)["channel"] == "app"
    with pytest.raises(UnknownSchemaError):  # the old reader does not know v2
        v1.decode(new)


def test_current_version_is_the_highest_number_not_the_last_name(tmp_path: Path) -> None:
    v10 = _compatible_v2()
    (tmp_path / "loan_event.v2.avsc").write_text(json.dumps(_loan_v1()))
    (tmp_path / "loan_event.v10.avsc").write_text(json.dumps(v10))
    codec = SchemaCatalog(tmp_path).codec_for(LOAN_EVENT)
    assert codec.fingerprint == fingerprint(v10)


def test_a_family_added_later_is_found_by_name(tmp_path: Path) -> None:
    catalog = SchemaCatalog(tmp_path)
    with pytest.raises(UnknownRecordNameError):
        catalog.codec_for("registry.internal.AdmittedEvent")
    (tmp_path / "admitted_event.v1.avsc").write_text(json.dumps({
        "type": "record", "name": "AdmittedEvent", "namespace": "registry.internal",
        "fields": [{"name": "pseudonym", "type": "string"}],
    }))  # fmt: skip
    codec = catalog.codec_for("registry.internal.AdmittedEvent")
    assert codec.decode(codec.encode({"pseudonym": "p"})) == {"pseudonym": "p"}


def test_register_schema(tmp_path: Path) -> None:
    (tmp_path / "loan_event.v1.avsc").write_text(json.dumps(_loan_v1()))
    catalog = SchemaCatalog(tmp_path)
    file_codec = catalog.codec_for(LOAN_EVENT)
    assert catalog.register_schema(_loan_v1()) is file_codec  # already known: no change
    old_bytes = file_codec.encode(a_loan().to_avro())

    codec = catalog.register_schema(_compatible_v2())
    assert isinstance(codec, Codec) and codec.fingerprint == fingerprint(_compatible_v2())
    assert catalog.codec_for(LOAN_EVENT) is codec
    assert codec.decode(old_bytes)["channel"] is None

    internal = {"type": "record", "name": "Tally", "namespace": "registry.internal",
                "fields": [{"name": "n", "type": "long"}]}  # fmt: skip
    tally = catalog.register_schema(internal)
    assert catalog.codec_for("registry.internal.Tally") is tally
    assert tally.decode(tally.encode({"n": 3})) == {"n": 3}


def test_every_shipped_schema_file_loads() -> None:
    catalog = SchemaCatalog(AVRO_DIR)
    names = catalog.names()
    assert {LOAN_EVENT, CONSENT_RECORD, REJECTION} <= set(names)
    for name in names:
        assert catalog.codec_for(name).name == name
