"""Every reason validation can give, its precedence, and what the happy path returns."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from schemas.errors import ValidationError
from schemas.reasons import STREAM_REASONS, RejectReason
from schemas.records import ConsentAction, ConsentRecord, EventType, LoanEvent
from schemas.validation import (
    ISO_4217,
    ValidationLimits,
    check_consent_record,
    check_loan_record,
    parse_consent_json,
    parse_loan_json,
)

R = RejectReason
LENDER = "lender-a"
BORROWER = "11010519491231002X"  # the GB 11643 example id (check character X)
NOW = 1_790_000_000_000  # 2026-09-21T14:13:20Z
LIMITS = ValidationLimits()


def loan_json(**changes: Any) -> dict[str, Any]:
    obj = {
        "event_id": "ev-1",
        "lender_id": LENDER,
        "borrower_id": BORROWER,
        "loan_id": "loan-9",
        "event_type": "draw",
        "amount": "1250.00",
        "currency": "CNY",
        "occurred_at": "2026-09-21T12:00:00+08:00",
        "product": "huabei",
    }
    obj.update(changes)
    return {k: v for k, v in obj.items() if v is not ...}


def loan_rec(**changes: Any) -> dict[str, Any]:
    rec = {
        "event_id": "ev-1",
        "lender_id": LENDER,
        "borrower_id": BORROWER,
        "loan_id": "loan-9",
        "event_type": "draw",
        "amount_minor": 125_000,
        "currency": "CNY",
        "occurred_at_ms": NOW - 60_000,
        "product": None,
    }
    return rec | changes


def consent_json(**changes: Any) -> dict[str, Any]:
    obj = {"lender_id": LENDER, "borrower_id": BORROWER, "action": "grant",
           "effective_at": "2026-01-01T00:00:00Z", "reference": "form-77"}  # fmt: skip
    obj.update(changes)
    return {k: v for k, v in obj.items() if v is not ...}


def consent_rec(**changes: Any) -> dict[str, Any]:
    rec = {"lender_id": LENDER, "borrower_id": BORROWER, "action": "revoke",
           "effective_at_ms": NOW, "reference": None}  # fmt: skip
    return rec | changes


def reject_json(obj: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse_loan_json(obj, lender_id=LENDER, now_ms=NOW, limits=LIMITS)
    return info.value


def reject_rec(rec: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        check_loan_record(rec, lender_id=LENDER, now_ms=NOW, limits=LIMITS)
    return info.value


# --- happy paths --------------------------------------------------------------------------------


def test_json_line_becomes_a_loan_event() -> None:
    event = parse_loan_json(loan_json(), lender_id=LENDER, now_ms=NOW, limits=LIMITS)
    # 2026-09-21T12:00:00+08:00 is 04:00Z; the oracle is datetime, not our parser
    at_ms = int(datetime(2026, 9, 21, 4, tzinfo=UTC).timestamp()) * 1000
    assert event == LoanEvent(
        "ev-1", LENDER, BORROWER, "loan-9", EventType.DRAW, 125_000, "CNY", at_ms, "huabei"
    )


def test_json_defaults_and_normalisation() -> None:
    obj = loan_json(lender_id=..., currency=..., product=..., borrower_id=BORROWER.lower(),
                    amount="0.5", extra_field={"ignored": True})  # fmt: skip
    event = parse_loan_json(obj, lender_id=LENDER, now_ms=NOW, limits=LIMITS)
    assert event.lender_id == LENDER  # omitted -> the publishing lender
    assert event.currency == "CNY"
    assert event.product is None
    assert event.borrower_id == BORROWER  # 'x' -> 'X'
    assert event.amount_minor == 50


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2026-11-22T14:00:00.000Z", 1_795_356_000_000),
        ("2026-11-22T22:00:00+08:00", 1_795_356_000_000),
        ("2026-11-22t14:00:00.1239999z", 1_795_356_000_123),  # truncated, never rounded
        ("2026-11-22 09:00:00-05:00", 1_795_356_000_000),
    ],
)
def test_timestamps(text: str, ms: int) -> None:
    from schemas.validation import parse_timestamp_ms

    assert parse_timestamp_ms(text) == ms


@pytest.mark.parametrize(
    ("amount", "minor"),
    [("1250.00", 125_000), ("1", 100), ("0.01", 1),
     ("10000000.00", 1_000_000_000), ("007.1", 710)],
)  # fmt: skip
def test_amounts(amount: str, minor: int) -> None:
    event = parse_loan_json(loan_json(amount=amount), lender_id=LENDER, now_ms=NOW, limits=LIMITS)
    assert event.amount_minor == minor


def test_avro_record_becomes_a_loan_event() -> None:
    event = check_loan_record(
        loan_rec(borrower_id=BORROWER.lower()), lender_id=LENDER, now_ms=NOW, limits=LIMITS
    )
    assert event.borrower_id == BORROWER
    assert event.event_type is EventType.DRAW
    assert event.amount_minor == 125_000


def test_consent_paths() -> None:
    got = parse_consent_json(consent_json(), lender_id=LENDER, now_ms=NOW, limits=LIMITS)
    assert got == ConsentRecord(LENDER, BORROWER, ConsentAction.GRANT, 1_767_225_600_000, "form-77")
    defaulted = parse_consent_json(
        consent_json(lender_id=..., effective_at=..., reference=...),
        lender_id=LENDER, now_ms=NOW, limits=LIMITS,
    )  # fmt: skip
    assert defaulted == ConsentRecord(LENDER, BORROWER, ConsentAction.GRANT, NOW, None)
    # consent has no future check: it may be recorded ahead of when it takes effect
    ahead = check_consent_record(consent_rec(effective_at_ms=NOW + 10**10), lender_id=LENDER,
                                 limits=LIMITS)  # fmt: skip
    assert ahead.action is ConsentAction.REVOKE


# --- one failing example per reason -------------------------------------------------------------

LOAN_JSON_FAILURES = [
    (R.MISSING_FIELD, "event_id", loan_json(event_id=...)),
    (R.MISSING_FIELD, "loan_id", loan_json(loan_id="")),
    (R.MISSING_FIELD, "borrower_id", loan_json(borrower_id=None)),
    (R.MISSING_FIELD, "lender_id", loan_json(lender_id="")),
    (R.FIELD_TOO_LONG, "event_id", loan_json(event_id="e" * 65)),
    (R.FIELD_TOO_LONG, "product", loan_json(product="p" * 65)),
    (R.MALFORMED, "event_id", loan_json(event_id=12345)),
    (R.INVALID_BORROWER_ID, "borrower_id", loan_json(borrower_id="110105194912310021")),
    (R.INVALID_BORROWER_ID, "borrower_id", loan_json(borrower_id="1101051949")),
    (R.INVALID_EVENT_TYPE, "event_type", loan_json(event_type="Draw")),
    (R.INVALID_EVENT_TYPE, "event_type", loan_json(event_type=...)),
    (R.INVALID_AMOUNT, "amount", loan_json(amount=1250.0)),
    (R.INVALID_AMOUNT, "amount", loan_json(amount=1250)),
    (R.INVALID_AMOUNT, "amount", loan_json(amount="12.345")),
    (R.INVALID_AMOUNT, "amount", loan_json(amount="-5.00")),
    (R.INVALID_AMOUNT, "amount", loan_json(amount="0.00")),
    (R.INVALID_AMOUNT, "amount", loan_json(amount="1e3")),
    (R.INVALID_AMOUNT, "amount", loan_json(amount="10000000.01")),
    (R.INVALID_CURRENCY, "currency", loan_json(currency="RMB")),
    (R.INVALID_CURRENCY, "currency", loan_json(currency="cny")),
    (R.INVALID_TIMESTAMP, "occurred_at", loan_json(occurred_at="2026-09-21T12:00:00")),
    (R.INVALID_TIMESTAMP, "occurred_at", loan_json(occurred_at="2026-02-30T12:00:00Z")),
    (R.INVALID_TIMESTAMP, "occurred_at", loan_json(occurred_at=1_790_000_000_000)),
    (R.INVALID_TIMESTAMP, "occurred_at", loan_json(occurred_at="1999-12-31T23:59:59Z")),
    (R.FUTURE_TIMESTAMP, "occurred_at", loan_json(occurred_at="2026-09-21T21:00:00Z")),
    (R.LENDER_MISMATCH, "lender_id", loan_json(lender_id="lender-b")),
]


@pytest.mark.parametrize(("reason", "field", "obj"), LOAN_JSON_FAILURES)
def test_loan_json_failures(reason: RejectReason, field: str, obj: dict[str, Any]) -> None:
    err = reject_json(obj)
    assert (err.reason, err.field) == (reason, field)
    assert field in str(err)
    assert BORROWER not in str(err) and BORROWER[:17] not in str(err)
    assert err.retriable is False


LOAN_REC_FAILURES = [
    (R.MISSING_FIELD, "event_id", loan_rec(event_id="")),
    (R.MISSING_FIELD, "borrower_id", loan_rec(borrower_id="")),
    (R.FIELD_TOO_LONG, "loan_id", loan_rec(loan_id="l" * 65)),
    (R.FIELD_TOO_LONG, "lender_id", loan_rec(lender_id="l" * 65)),
    (R.INVALID_BORROWER_ID, "borrower_id", loan_rec(borrower_id="11010519491231002Y")),
    (R.INVALID_EVENT_TYPE, "event_type", loan_rec(event_type="refund")),
    (R.INVALID_AMOUNT, "amount_minor", loan_rec(amount_minor=0)),
    (R.INVALID_AMOUNT, "amount_minor", loan_rec(amount_minor=-1)),
    (R.INVALID_AMOUNT, "amount_minor", loan_rec(amount_minor=1_000_000_001)),
    (R.INVALID_CURRENCY, "currency", loan_rec(currency="XXX")),
    (R.INVALID_TIMESTAMP, "occurred_at_ms", loan_rec(occurred_at_ms=1_790_000_000)),  # seconds
    (R.FUTURE_TIMESTAMP, "occurred_at_ms", loan_rec(occurred_at_ms=NOW + 300_001)),
    (R.LENDER_MISMATCH, "lender_id", loan_rec(lender_id="lender-b")),
    (R.INVALID_CANCEL, "cancels_event_id", loan_rec(cancels_event_id="e-0")),  # on a draw
    (R.MISSING_FIELD, "cancels_event_id", loan_rec(event_type="cancel")),
    (R.INVALID_CANCEL, "cancels_event_id",
     loan_rec(event_type="cancel", cancels_event_id="ev-1")),  # the cancel itself
    (R.INVALID_AMOUNT, "amount_minor", loan_rec(event_type="draw", amount_minor=0)),
]


@pytest.mark.parametrize(("reason", "field", "rec"), LOAN_REC_FAILURES)
def test_loan_record_failures(reason: RejectReason, field: str, rec: dict[str, Any]) -> None:
    err = reject_rec(rec)
    assert (err.reason, err.field) == (reason, field)
    assert field in str(err)


def test_cancel_paths() -> None:
    """A cancel names another event of the lender; its amount may be omitted (0), or given
    and valid; the cancel rules come right after the event type (README, Corrections)."""
    cancel = loan_json(event_type="cancel", cancels_event_id="ev-0", amount=...)
    got = parse_loan_json(cancel, lender_id=LENDER, now_ms=NOW, limits=LIMITS)
    assert (got.event_type, got.cancels_event_id, got.amount_minor) == (
        EventType.CANCEL, "ev-0", 0)
    with_amount = parse_loan_json(loan_json(event_type="cancel", cancels_event_id="ev-0"),
                                  lender_id=LENDER, now_ms=NOW, limits=LIMITS)
    assert with_amount.amount_minor == 125_000
    rec = check_loan_record(loan_rec(event_type="cancel", cancels_event_id="ev-0",
                                     amount_minor=0), lender_id=LENDER, now_ms=NOW,
                            limits=LIMITS)
    assert (rec.event_type, rec.cancels_event_id, rec.amount_minor) == (
        EventType.CANCEL, "ev-0", 0)
    assert check_loan_record(loan_rec(), lender_id=LENDER, now_ms=NOW,
                             limits=LIMITS).cancels_event_id is None
    for obj, reason in [
        (loan_json(event_type="cancel", amount=...), R.MISSING_FIELD),
        (loan_json(event_type="cancel", cancels_event_id="x" * 65), R.FIELD_TOO_LONG),
        (loan_json(cancels_event_id="ev-0"), R.INVALID_CANCEL),
        (loan_json(event_type="cancel", cancels_event_id="ev-0", amount="-1"),
         R.INVALID_AMOUNT),
        # the cancel rules decide before the amount does
        (loan_json(event_type="cancel", amount="-1"), R.MISSING_FIELD),
    ]:
        with pytest.raises(ValidationError) as info:
            parse_loan_json(obj, lender_id=LENDER, now_ms=NOW, limits=LIMITS)
        assert (info.value.reason, info.value.field) == (
            reason, "amount" if reason is R.INVALID_AMOUNT else "cancels_event_id")


def test_skew_boundary_is_inclusive() -> None:
    check_loan_record(loan_rec(occurred_at_ms=NOW + 300_000), lender_id=LENDER, now_ms=NOW,
                      limits=LIMITS)  # fmt: skip


CONSENT_FAILURES = [
    (R.MISSING_FIELD, "borrower_id", consent_json(borrower_id=...)),
    (R.FIELD_TOO_LONG, "reference", consent_json(reference="r" * 65)),
    (R.INVALID_BORROWER_ID, "borrower_id", consent_json(borrower_id="11010519491231002")),
    (R.INVALID_ACTION, "action", consent_json(action="GRANT")),
    (R.INVALID_ACTION, "action", consent_json(action=...)),
    (R.INVALID_TIMESTAMP, "effective_at", consent_json(effective_at="yesterday")),
    (R.LENDER_MISMATCH, "lender_id", consent_json(lender_id="lender-b")),
]


@pytest.mark.parametrize(("reason", "field", "obj"), CONSENT_FAILURES)
def test_consent_json_failures(reason: RejectReason, field: str, obj: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        parse_consent_json(obj, lender_id=LENDER, now_ms=NOW, limits=LIMITS)
    assert (info.value.reason, info.value.field) == (reason, field)


@pytest.mark.parametrize(
    ("reason", "rec"),
    [
        (R.MISSING_FIELD, consent_rec(lender_id="")),
        (R.INVALID_BORROWER_ID, consent_rec(borrower_id="110101199003074515")),
        (R.INVALID_ACTION, consent_rec(action="pause")),
        (R.INVALID_TIMESTAMP, consent_rec(effective_at_ms=-1)),
        (R.LENDER_MISMATCH, consent_rec(lender_id="lender-b")),
    ],
)
def test_consent_record_failures(reason: RejectReason, rec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        check_consent_record(rec, lender_id=LENDER, limits=LIMITS)
    assert info.value.reason is reason


def test_every_validation_reason_has_a_failing_example() -> None:
    covered = {r for r, *_ in LOAN_JSON_FAILURES + LOAN_REC_FAILURES + CONSENT_FAILURES}
    not_validation = STREAM_REASONS | {R.UNKNOWN_SCHEMA, R.OVERSIZED}  # codec / stream decide
    assert covered == set(RejectReason) - not_validation


# --- precedence ---------------------------------------------------------------------------------


def test_precedence_follows_the_documented_order() -> None:
    """Break every field, then repair them one by one in the documented order."""
    broken = {
        "event_id": "", "borrower_id": "bad", "event_type": "x", "amount": "-1",
        "currency": "ZZZ", "occurred_at": "2026-09-21T12:00:00", "lender_id": "lender-b",
    }  # fmt: skip
    repairs = [
        (R.MISSING_FIELD, {"event_id": "ev-1", "loan_id": "loan-1"}),
        (R.INVALID_BORROWER_ID, {"borrower_id": BORROWER}),
        (R.INVALID_EVENT_TYPE, {"event_type": "repayment"}),
        (R.INVALID_AMOUNT, {"amount": "1.00"}),
        (R.INVALID_CURRENCY, {"currency": "USD"}),
        (R.INVALID_TIMESTAMP, {"occurred_at": "2030-01-01T00:00:00Z"}),
        (R.FUTURE_TIMESTAMP, {"occurred_at": "2026-01-01T00:00:00Z"}),
        (R.LENDER_MISMATCH, {"lender_id": LENDER}),
    ]
    obj = dict(broken)
    for reason, repair in repairs:
        assert reject_json(obj).reason is reason
        obj |= repair
    assert parse_loan_json(obj, lender_id=LENDER, now_ms=NOW, limits=LIMITS).currency == "USD"


def test_record_precedence_matches_json_precedence() -> None:
    rec = loan_rec(borrower_id="bad", event_type="x", amount_minor=0, currency="ZZZ",
                   occurred_at_ms=NOW + 10**9, lender_id="lender-b")  # fmt: skip
    assert reject_rec(rec).reason is R.INVALID_BORROWER_ID
    assert reject_rec(rec | {"borrower_id": BORROWER}).reason is R.INVALID_EVENT_TYPE
    rec |= {"borrower_id": BORROWER, "event_type": "default"}
    assert reject_rec(rec).reason is R.INVALID_AMOUNT
    assert reject_rec(rec | {"amount_minor": 1}).reason is R.INVALID_CURRENCY
    assert reject_rec(rec | {"amount_minor": 1, "currency": "CNY"}).reason is R.FUTURE_TIMESTAMP


# --- limits and the currency list ---------------------------------------------------------------


def test_limits_from_settings() -> None:
    settings = SimpleNamespace(max_amount=Decimal("500.50"), future_skew_seconds=60)
    limits = ValidationLimits.from_settings(settings)
    assert (limits.max_amount_minor, limits.future_skew_ms) == (50_050, 60_000)
    obj = loan_json(amount="500.51")
    with pytest.raises(ValidationError):
        parse_loan_json(obj, lender_id=LENDER, now_ms=NOW, limits=limits)


def test_iso_4217_list() -> None:
    assert 150 <= len(ISO_4217) <= 185
    assert {"CNY", "USD", "EUR", "HKD", "JPY", "XCG", "ZWG"} <= ISO_4217
    assert not {"RMB", "XXX", "XTS", "HRK", "cny"} & ISO_4217
    assert all(len(c) == 3 and c.isupper() and c.isascii() for c in ISO_4217)


# --- bad input at every entry point (issue 13) --------------------------------------------------


@pytest.mark.parametrize("amount", ["１００.００", "１00.00", "100.０0", "٣٠٠", "१००"])
def test_full_width_and_other_unicode_digits_are_invalid_amounts(amount: str) -> None:
    error = reject_json(loan_json(amount=amount))
    assert (error.reason, error.field) == (R.INVALID_AMOUNT, "amount")


@pytest.mark.parametrize("at", ["２026-09-21T12:00:00+08:00", "2026-09-21T12:00:00+０8:00",
                                "2026-09-21T12:00:00.１Z"])
def test_unicode_digits_in_timestamps_are_invalid(at: str) -> None:
    error = reject_json(loan_json(occurred_at=at))
    assert (error.reason, error.field) == (R.INVALID_TIMESTAMP, "occurred_at")


@pytest.mark.parametrize("field", ["event_id", "loan_id", "product", "lender_id"])
def test_a_lone_surrogate_in_a_text_field_is_malformed(field: str) -> None:
    error = reject_json(loan_json(**{field: "bt\ud800"}))
    assert (error.reason, error.field) == (R.MALFORMED, field)
    with pytest.raises(ValidationError) as info:
        parse_consent_json(consent_json(reference="\udfff"), lender_id=LENDER, now_ms=NOW,
                           limits=LIMITS)
    assert (info.value.reason, info.value.field) == (R.MALFORMED, "reference")


def test_a_surrogate_pair_escape_is_text_and_accepted() -> None:
    event = parse_loan_json(loan_json(product="\U0001f600"), lender_id=LENDER, now_ms=NOW,
                            limits=LIMITS)
    assert event.product == "\U0001f600"


@pytest.mark.parametrize("padded", [f" {BORROWER} ", f"\t{BORROWER.lower()}\n",
                                    f"\u3000{BORROWER}", f"\ufeff{BORROWER}"])
def test_borrower_id_whitespace_is_normalised_on_every_path(padded: str) -> None:
    event = parse_loan_json(loan_json(borrower_id=padded), lender_id=LENDER, now_ms=NOW,
                            limits=LIMITS)
    assert event.borrower_id == BORROWER
    consent = parse_consent_json(consent_json(borrower_id=padded), lender_id=LENDER,
                                 now_ms=NOW, limits=LIMITS)
    assert consent.borrower_id == BORROWER
    record = check_loan_record(loan_rec(borrower_id=padded), lender_id=LENDER, now_ms=NOW,
                               limits=LIMITS)
    assert record.borrower_id == BORROWER
    assert check_consent_record(consent_rec(borrower_id=padded), lender_id=LENDER,
                                limits=LIMITS).borrower_id == BORROWER


def test_inner_whitespace_in_a_borrower_id_is_refused_without_echo() -> None:
    error = reject_json(loan_json(borrower_id=BORROWER[:6] + " " + BORROWER[6:]))
    assert error.reason == R.INVALID_BORROWER_ID
    assert BORROWER[:6] not in str(error)
