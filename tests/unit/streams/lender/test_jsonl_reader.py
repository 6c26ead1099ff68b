"""What each line of a publish file becomes (issue 13, inputs 1, 2, 4, 5, 7, 8), without Kafka.

``tests/integration/test_publish_cli.py`` runs the same inputs through ``registry publish``
against the real broker and counts what lands on the topic.
"""

from __future__ import annotations

import io
import json

import pytest

from schemas.reasons import RejectReason
from schemas.records import LoanEvent
from schemas.validation import ValidationLimits
from streams.lender.jsonl import Rejected, check_encoding, count_lines, read_line

LENDER = "jd-baitiao"
BORROWER = "11010519491231002X"
NOW = 1_790_000_000_000
GOOD = {"event_id": "e-1", "borrower_id": BORROWER, "loan_id": "l-1", "event_type": "draw",
        "amount": "100.00", "occurred_at": "2026-09-01T09:30:00+08:00"}


def read(raw: bytes, encoding: str = "utf-8") -> LoanEvent | Rejected | None:
    return read_line(raw, lender_id=LENDER, limits=ValidationLimits(), max_record_bytes=16384,
                     now_ms=NOW, encoding=encoding)


def line(encoding: str = "utf-8", **changes: object) -> bytes:
    return json.dumps(GOOD | changes, ensure_ascii=False).encode(encoding) + b"\n"


def test_a_utf8_byte_order_mark_is_not_data() -> None:
    event = read(b"\xef\xbb\xbf" + line())
    assert isinstance(event, LoanEvent) and event.event_id == "e-1"


def test_deep_nesting_is_reported_not_raised() -> None:
    result = read(b"[" * 5000 + b"]" * 5000 + b"\n")
    assert result == Rejected(RejectReason.MALFORMED, "not valid JSON (nested too deeply)")
    deep_field = json.dumps(GOOD)[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}"
    assert read(deep_field.encode()) == result  # an unknown field is parsed like the rest


def test_a_lone_surrogate_escape_is_malformed() -> None:
    result = read(line().replace(b'"l-1"', b'"l-1", "product": "\\ud800"'))
    assert isinstance(result, Rejected)
    assert (result.reason, result.message) == (
        RejectReason.MALFORMED, "product holds a lone surrogate: not valid Unicode text")


def test_gbk_bytes_are_reported_as_not_utf8_never_replaced() -> None:
    raw = line("gbk", event_id="借款-甲")
    result = read(raw)
    assert isinstance(result, Rejected) and result.reason == RejectReason.MALFORMED
    assert result.message.startswith("not UTF-8 (byte 0xBD at column 15)")
    event = read(raw, check_encoding("gbk"))
    assert isinstance(event, LoanEvent) and event.event_id == "借款-甲"
    assert read(line("gb18030", event_id="借款-乙"), "gb18030").event_id == "借款-乙"


@pytest.mark.parametrize("amount", ["１００.００", "１00.00"])
def test_full_width_digits_are_an_invalid_amount(amount: str) -> None:
    result = read(line(amount=amount))
    assert isinstance(result, Rejected) and result.reason == RejectReason.INVALID_AMOUNT


def test_whitespace_around_the_national_id_is_normalised() -> None:
    event = read(line(borrower_id=f"  {BORROWER.lower()}\u3000"))
    assert isinstance(event, LoanEvent) and event.borrower_id == BORROWER


def test_blank_and_bom_only_lines_carry_no_record() -> None:
    assert read(b"\r\n") is None
    assert read(b"\xef\xbb\xbf \n") is None


@pytest.mark.parametrize("name", ["utf-16", "utf-32", "no-such-codec"])
def test_encodings_that_cannot_split_lines_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        check_encoding(name)


def test_count_lines_of_a_regular_file(tmp_path: object) -> None:
    assert count_lines(io.BytesIO(b"a\nb\n")) is None  # not a file: no total, no ETA
    path = tmp_path / "f.jsonl"  # type: ignore[operator]
    path.write_bytes(b"a\nb\nc")
    with open(path, "rb") as handle:
        assert count_lines(handle) == 3
        assert handle.read(1) == b"a"  # rewound
