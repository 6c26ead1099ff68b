"""Schema evolution: the static check agrees with what fastavro actually does."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas.codec import LOAN_EVENT, SchemaCatalog, default_catalog
from schemas.evolution import check_backward_compatible, check_family

ROOT = Path(__file__).resolve().parents[3]
V1 = json.loads((ROOT / "schemas" / "avro" / "loan_event.v1.avsc").read_text())
INCOMPATIBLE = json.loads(
    (ROOT / "tests" / "fixtures" / "loan_event.v2.incompatible.avsc").read_text()
)
V1_RECORD = {
    "event_id": "ev-1", "lender_id": "lender-a", "borrower_id": "11010519491231002X",
    "loan_id": "loan-9", "event_type": "repayment", "amount_minor": 5_000, "currency": "CNY",
    "occurred_at_ms": 1_790_000_000_000, "product": None,
}  # fmt: skip


def evolve(**field_types: Any) -> dict[str, Any]:
    """A copy of v1 with some field types replaced (or fields added, as full dicts)."""
    schema = copy.deepcopy(V1)
    for name, change in field_types.items():
        fields = schema["fields"]
        match = [f for f in fields if f["name"] == name]
        if match:
            match[0]["type"] = change
        else:
            fields.append({"name": name, **change})
    return schema


def decode_with(reader: dict[str, Any], writer: dict[str, Any], record: dict[str, Any]) -> Any:
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(writer, {}), record)
    buf.seek(0)
    return schemaless_reader(buf, parse_schema(writer, {}), parse_schema(reader, {}))


@pytest.mark.parametrize("name", default_catalog().names())
def test_every_shipped_family_is_backward_compatible(name: str) -> None:
    assert check_family(name) == []


def test_incompatible_fixture_is_caught_and_really_breaks_decoding() -> None:
    problems = check_backward_compatible(INCOMPATIBLE, V1)
    assert problems == ["LoanEvent.fee_minor: added without a default"]
    with pytest.raises(Exception, match="fee_minor"):
        decode_with(INCOMPATIBLE, V1, V1_RECORD)


def test_check_family_reports_the_old_file(tmp_path: Path) -> None:
    (tmp_path / "loan_event.v1.avsc").write_text(json.dumps(V1))
    (tmp_path / "loan_event.v2.avsc").write_text(json.dumps(INCOMPATIBLE))
    problems = check_family(LOAN_EVENT, SchemaCatalog(tmp_path))
    assert len(problems) == 1
    assert "loan_event.v1.avsc" in problems[0] and "fee_minor" in problems[0]


def test_compatible_v2_passes_and_decodes_v1_bytes() -> None:
    v2 = evolve(
        channel={"type": ["null", "string"], "default": None},
        fee_minor={"type": "long", "default": 0},
        amount_minor="double",  # long -> double is an Avro promotion
        event_type={"type": "enum", "name": "EventType",
                    "symbols": ["draw", "repayment", "default", "writeoff"]},
    )  # fmt: skip
    v2["fields"] = [f for f in v2["fields"] if f["name"] != "product"]  # dropping is fine
    assert check_backward_compatible(v2, V1) == []
    got = decode_with(v2, V1, V1_RECORD)
    expected = {k: v for k, v in V1_RECORD.items() if k != "product"}
    assert got == expected | {"channel": None, "fee_minor": 0, "amount_minor": 5000.0}


@pytest.mark.parametrize(
    ("new", "problem"),
    [
        (evolve(amount_minor="int"), "LoanEvent.amount_minor: type changed from long to int"),
        (evolve(currency="long"), "LoanEvent.currency: type changed from string to long"),
        (evolve(event_type={"type": "enum", "name": "EventType",
                            "symbols": ["draw", "repayment"]}),
         "LoanEvent.event_type: enum symbols removed: default"),
        (evolve(product="string"), "LoanEvent.product: type changed from null to string"),
        (evolve(event_type={"type": "enum", "name": "Kind", "symbols": ["draw"]}),
         "LoanEvent.event_type: named type registry.lender.EventType renamed to "
         "registry.lender.Kind without an alias"),
    ],
)  # fmt: skip
def test_incompatible_changes(new: dict[str, Any], problem: str) -> None:
    assert problem in check_backward_compatible(new, V1)
    # fastavro agrees: reading v1 data with the new reader fails
    with pytest.raises(Exception):  # noqa: B017 - any fastavro resolution error will do
        decode_with(new, V1, V1_RECORD | {"product": None, "event_type": "default"})


def test_enum_default_absorbs_removed_symbols() -> None:
    new = evolve(event_type={"type": "enum", "name": "EventType",
                             "symbols": ["draw", "other"], "default": "other"})  # fmt: skip
    assert check_backward_compatible(new, V1) == []
    assert decode_with(new, V1, V1_RECORD)["event_type"] == "other"


def test_reader_union_accepts_a_promoted_writer() -> None:
    new = evolve(amount_minor=["null", "double"])
    assert check_backward_compatible(new, V1) == []
    assert decode_with(new, V1, V1_RECORD)["amount_minor"] == 5000.0


V2 = json.loads((ROOT / "schemas" / "avro" / "loan_event.v2.avsc").read_text())


def test_loan_event_v2_reads_v1_and_v1_reads_v2_except_cancels() -> None:
    """Old writers: a v1 record reads as v2 (no cancel target). Old readers: a registry at
    v1 handed the v2 writer schema reads every v2 record that is not a cancel, and refuses a
    cancel loudly (an unknown enum symbol) instead of counting it as something else."""
    assert check_backward_compatible(V2, V1) == []
    assert decode_with(V2, V1, V1_RECORD) == V1_RECORD | {"cancels_event_id": None}
    draw = V1_RECORD | {"event_type": "draw", "cancels_event_id": None}
    assert decode_with(V1, V2, draw) == V1_RECORD | {"event_type": "draw"}
    cancel = V1_RECORD | {"event_type": "cancel", "amount_minor": 0, "cancels_event_id": "ev-0"}
    assert decode_with(V2, V2, cancel) == cancel
    with pytest.raises(Exception, match="cancel"):
        decode_with(V1, V2, cancel)
