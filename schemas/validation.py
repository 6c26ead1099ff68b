"""Field rules of the lender contract: one check per field, one reason code per failure.

Two entry points per record kind share the same rules:

* ``parse_*_json`` reads a JSON Lines object with the CONTRACT names (``amount`` as a decimal
  string, ``occurred_at``/``effective_at`` as RFC 3339 with an offset) for ``registry publish``
  and ``registry consent``;
* ``check_*_record`` re-checks a dict decoded by :mod:`schemas.codec` on the worker's hot path.
  Avro already guarantees the types, so only values are checked (~1-2 µs per event).

When several fields are wrong, the FIRST failing check decides the reason, in this order:

loan:    ids (MISSING_FIELD / FIELD_TOO_LONG; type errors and lone surrogates are MALFORMED)
         -> INVALID_BORROWER_ID
         -> INVALID_EVENT_TYPE -> cancel rules -> INVALID_AMOUNT -> INVALID_CURRENCY
         -> INVALID_TIMESTAMP -> FUTURE_TIMESTAMP -> LENDER_MISMATCH
consent: ids -> INVALID_BORROWER_ID -> INVALID_ACTION -> INVALID_TIMESTAMP -> LENDER_MISMATCH

Ids are checked in the order event_id, lender_id, borrower_id (non-empty only; its format is
the next step), loan_id, then the optional product/reference (at most ``max_id_length``).
In a JSON line ``lender_id`` may be omitted: it then defaults to the publishing lender (the
topic decides who published, so the field adds nothing but a chance to disagree). If present
it must match, else LENDER_MISMATCH.

Cancel rules (README, Corrections): a ``cancel`` needs ``cancels_event_id`` (MISSING_FIELD,
FIELD_TOO_LONG like every id) naming another event than itself (INVALID_CANCEL); any other
event type must not carry it (INVALID_CANCEL). A cancel's ``amount`` may be omitted (0 minor
units: a cancel withdraws the named event with whatever amount that event had); if given, it
must be a valid amount like any other.

A :class:`ValidationError` names the field and the problem and never repeats a borrower id
(messages end up in the dead-letter topic and in logs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from schemas import national_id
from schemas.errors import ValidationError
from schemas.reasons import RejectReason
from schemas.records import (
    REGISTRY_CURRENCY,
    ConsentAction,
    ConsentRecord,
    EventType,
    LoanEvent,
)

R = RejectReason


class _LimitSettings(Protocol):
    @property
    def max_amount(self) -> Any: ...
    @property
    def future_skew_seconds(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """The bounds validation enforces; build from the settings with :meth:`from_settings`."""

    max_amount_minor: int = 1_000_000_000  # 10,000,000.00 CNY
    future_skew_ms: int = 300_000
    max_id_length: int = 64
    #: Event and consent times before 2000-01-01T00:00Z are taken as a unit or clock bug.
    earliest_ms: int = 946_684_800_000

    @classmethod
    def from_settings(cls, settings: _LimitSettings) -> ValidationLimits:
        """``settings.max_amount`` (a Decimal, major units) and ``future_skew_seconds``."""
        return cls(
            max_amount_minor=int(settings.max_amount.scaleb(2).to_integral_value()),
            future_skew_ms=int(settings.future_skew_seconds) * 1000,
        )


#: Active ISO 4217 alphabetic codes (2025 list; withdrawn ANG, CUC, HRK, SLL, ZWL left out,
#: as are XTS "testing" and XXX "no currency", which no loan can be in).
_ISO_4217_CODES = """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN
    BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP
    ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR
    ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA
    MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK
    PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC
    SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND
    VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW ZWG
"""
ISO_4217: frozenset[str] = frozenset(_ISO_4217_CODES.split())

_EVENT_TYPES: dict[str, EventType] = {e.value: e for e in EventType}
_ACTIONS: dict[str, ConsentAction] = {a.value: a for a in ConsentAction}
#: ASCII digits only: ``\\d`` would also take full-width and other Unicode digits.
_AMOUNT = re.compile(r"([0-9]{1,16})(?:\.([0-9]{1,2}))?")
_RFC3339 = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_TYPE_NAMES = {str: "string", int: "number", float: "number", bool: "boolean", list: "array",
               dict: "object", type(None): "null"}  # fmt: skip


def _kind(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


# --- shared field checks -------------------------------------------------------------------------


def _encodable(value: str, name: str) -> str:
    """``value`` unless it holds a lone surrogate (JSON ``"\\ud800"``), which no UTF-8 byte
    sequence (and so no Avro string) can carry: MALFORMED."""
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValidationError(
                R.MALFORMED, name, f"{name} holds a lone surrogate: not valid Unicode text"
            ) from None
    return value


def _required_id(value: object, name: str, limits: ValidationLimits) -> str:
    if value is None or value == "":
        raise ValidationError(R.MISSING_FIELD, name, f"{name} is missing or empty")
    if not isinstance(value, str):
        raise ValidationError(R.MALFORMED, name, f"{name} must be a string, not a {_kind(value)}")
    if len(value) > limits.max_id_length:
        raise ValidationError(
            R.FIELD_TOO_LONG, name, f"{name} is longer than {limits.max_id_length} characters"
        )
    return _encodable(value, name)


def _optional_text(value: object, name: str, limits: ValidationLimits) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(R.MALFORMED, name, f"{name} must be a string, not a {_kind(value)}")
    if len(value) > limits.max_id_length:
        raise ValidationError(
            R.FIELD_TOO_LONG, name, f"{name} is longer than {limits.max_id_length} characters"
        )
    return _encodable(value, name)


def _borrower_present(value: object) -> str:
    if value is None or value == "":
        raise ValidationError(R.MISSING_FIELD, "borrower_id", "borrower_id is missing or empty")
    if not isinstance(value, str):
        raise ValidationError(
            R.MALFORMED, "borrower_id", f"borrower_id must be a string, not a {_kind(value)}"
        )
    return value


def _borrower_valid(value: str) -> str:
    """The id in canonical form by :func:`schemas.national_id.normalise` (the one rule)."""
    try:
        return national_id.normalise(value)
    except ValueError:
        raise ValidationError(
            R.INVALID_BORROWER_ID,
            "borrower_id",
            "borrower_id is not a valid 18-character resident identity number "
            "(format, birth date or check character)",
        ) from None


def _event_type(value: object) -> EventType:
    event_type = _EVENT_TYPES.get(value) if isinstance(value, str) else None
    if event_type is None:
        raise ValidationError(
            R.INVALID_EVENT_TYPE, "event_type",
            "event_type must be draw, repayment, default or cancel",
        )
    return event_type


def _cancels(event_type: EventType, value: object, event_id: str,
             limits: ValidationLimits) -> str | None:
    """``cancels_event_id`` by the cancel rules (module docstring)."""
    if event_type is not EventType.CANCEL:
        if value is not None:
            raise ValidationError(R.INVALID_CANCEL, "cancels_event_id",
                                  "cancels_event_id is only allowed on a cancel")
        return None
    target = _required_id(value, "cancels_event_id", limits)
    if target == event_id:
        raise ValidationError(R.INVALID_CANCEL, "cancels_event_id",
                              "cancels_event_id names the cancel itself")
    return target


def _action(value: object) -> ConsentAction:
    action = _ACTIONS.get(value) if isinstance(value, str) else None
    if action is None:
        raise ValidationError(R.INVALID_ACTION, "action", "action must be grant or revoke")
    return action


def _amount_minor(value: object, limits: ValidationLimits, name: str = "amount_minor") -> int:
    if type(value) is not int:
        raise ValidationError(R.INVALID_AMOUNT, name, f"{name} must be an integer")
    if value <= 0:
        raise ValidationError(R.INVALID_AMOUNT, name, f"{name} must be greater than zero")
    if value > limits.max_amount_minor:
        raise ValidationError(R.INVALID_AMOUNT, name, f"{name} is above the accepted maximum")
    return value


def _currency(value: object) -> str:
    if not isinstance(value, str) or value not in ISO_4217:
        raise ValidationError(
            R.INVALID_CURRENCY, "currency", "currency must be an ISO 4217 code such as CNY"
        )
    return value


def _time_ms(value: object, name: str, limits: ValidationLimits) -> int:
    if type(value) is not int or value < limits.earliest_ms:
        raise ValidationError(
            R.INVALID_TIMESTAMP, name, f"{name} must be epoch milliseconds after 2000-01-01"
        )
    return value


def _not_future(ms: int, name: str, now_ms: int, limits: ValidationLimits) -> None:
    if ms > now_ms + limits.future_skew_ms:
        raise ValidationError(
            R.FUTURE_TIMESTAMP,
            name,
            f"{name} is more than {limits.future_skew_ms // 1000} s in the future",
        )


def _same_lender(payload_lender: str, lender_id: str) -> None:
    if payload_lender != lender_id:
        raise ValidationError(
            R.LENDER_MISMATCH, "lender_id", "lender_id differs from the publishing lender"
        )


# --- JSON-only conversions -----------------------------------------------------------------------


def parse_amount(value: object) -> int:
    """A contract ``amount`` (decimal string, at most 2 places) as minor units.

    Bounds are not checked here. JSON numbers are refused: a binary float cannot carry money
    exactly, and ``1250.1`` vs ``"1250.10"`` must not depend on a JSON library.
    """
    if not isinstance(value, str):
        raise ValidationError(
            R.INVALID_AMOUNT,
            "amount",
            f'amount must be a decimal string such as "1250.00", not a JSON {_kind(value)}',
        )
    match = _AMOUNT.fullmatch(value)
    if match is None:
        raise ValidationError(
            R.INVALID_AMOUNT,
            "amount",
            'amount must be digits with at most 2 decimal places, e.g. "1250.00"',
        )
    whole, cents = match.groups()
    return int(whole) * 100 + int((cents or "").ljust(2, "0"))


def parse_timestamp_ms(value: object, name: str = "occurred_at") -> int:
    """An RFC 3339 timestamp WITH an offset (``Z`` or ``+08:00``) as epoch milliseconds.

    Fractions finer than a millisecond are truncated. Naive timestamps are refused: a time
    without an offset is ambiguous by up to a day.
    """
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValidationError(
            R.INVALID_TIMESTAMP,
            name,
            f"{name} must be an RFC 3339 timestamp with an offset, e.g. 2026-11-22T14:00:00+08:00",
        )
    day, clock, fraction, offset = match.groups()
    offset = "+00:00" if offset in ("Z", "z") else offset
    micros = (fraction or "").ljust(6, "0")[:6]
    try:
        moment = datetime.fromisoformat(f"{day}T{clock}.{micros}{offset}")
    except ValueError as exc:
        raise ValidationError(
            R.INVALID_TIMESTAMP, name, f"{name} is not a real date and time"
        ) from exc
    return (moment - _EPOCH) // _ONE_MS


# --- loan events ---------------------------------------------------------------------------------


def parse_loan_json(
    obj: Mapping[str, Any], *, lender_id: str, now_ms: int, limits: ValidationLimits
) -> LoanEvent:
    """A validated :class:`LoanEvent` from one JSON Lines object (contract field names).

    ``lender_id`` may be omitted (defaults to the publishing lender); ``currency`` defaults to
    CNY; unknown extra fields are ignored. Raises :class:`ValidationError`.
    """
    event_id = _required_id(obj.get("event_id"), "event_id", limits)
    payload_lender = _required_id(obj.get("lender_id", lender_id), "lender_id", limits)
    borrower = _borrower_present(obj.get("borrower_id"))
    loan_id = _required_id(obj.get("loan_id"), "loan_id", limits)
    product = _optional_text(obj.get("product"), "product", limits)
    borrower = _borrower_valid(borrower)
    event_type = _event_type(obj.get("event_type"))
    cancels = _cancels(event_type, obj.get("cancels_event_id"), event_id, limits)
    if cancels is not None and obj.get("amount") is None:
        amount_minor = 0  # a cancel without an amount
    else:
        amount_minor = _amount_minor(parse_amount(obj.get("amount")), limits, "amount")
    raw_currency = obj.get("currency")
    currency = _currency(REGISTRY_CURRENCY if raw_currency is None else raw_currency)
    occurred_at_ms = _time_ms(parse_timestamp_ms(obj.get("occurred_at")), "occurred_at", limits)
    _not_future(occurred_at_ms, "occurred_at", now_ms, limits)
    _same_lender(payload_lender, lender_id)
    return LoanEvent(
        event_id, payload_lender, borrower, loan_id, event_type, amount_minor, currency,
        occurred_at_ms, product, cancels,
    )  # fmt: skip


def check_loan_record(
    rec: Mapping[str, Any], *, lender_id: str, now_ms: int, limits: ValidationLimits
) -> LoanEvent:
    """A validated :class:`LoanEvent` from a dict decoded by the codec (the hot path).

    The same rules as :func:`parse_loan_json` on ``amount_minor`` and ``occurred_at_ms``; the
    borrower id comes back normalised by :func:`schemas.national_id.normalise` (surrounding
    whitespace removed, ``x`` -> ``X``). Raises :class:`ValidationError`.
    """
    max_len = limits.max_id_length
    event_id = rec["event_id"]
    payload_lender = rec["lender_id"]
    borrower = rec["borrower_id"]
    loan_id = rec["loan_id"]
    product = rec.get("product")
    # One cheap test for the common case; the detailed checks only run to name the problem.
    if not (
        0 < len(event_id) <= max_len
        and 0 < len(payload_lender) <= max_len
        and borrower
        and 0 < len(loan_id) <= max_len
        and (product is None or len(product) <= max_len)
    ):
        _required_id(event_id, "event_id", limits)
        _required_id(payload_lender, "lender_id", limits)
        _borrower_present(borrower)
        _required_id(loan_id, "loan_id", limits)
        _optional_text(product, "product", limits)
    if not national_id.is_valid(borrower):
        borrower = _borrower_valid(borrower)  # surrounding whitespace is removed, or raises
    elif borrower[17] == "x":
        borrower = borrower[:17] + "X"
    event_type = _EVENT_TYPES.get(rec["event_type"]) or _event_type(rec["event_type"])
    cancels = rec.get("cancels_event_id")
    if cancels is not None or event_type is EventType.CANCEL:
        cancels = _cancels(event_type, cancels, event_id, limits)
    amount_minor = rec["amount_minor"]
    if not 0 < amount_minor <= limits.max_amount_minor and not (
            amount_minor == 0 and cancels is not None):
        _amount_minor(amount_minor, limits)
    currency = rec["currency"]
    if currency not in ISO_4217:
        _currency(currency)
    occurred_at_ms = rec["occurred_at_ms"]
    if occurred_at_ms < limits.earliest_ms:
        _time_ms(occurred_at_ms, "occurred_at_ms", limits)
    _not_future(occurred_at_ms, "occurred_at_ms", now_ms, limits)
    if payload_lender != lender_id:
        _same_lender(payload_lender, lender_id)
    return LoanEvent(
        event_id, payload_lender, borrower, loan_id, event_type, amount_minor, currency,
        occurred_at_ms, product, cancels,
    )  # fmt: skip


# --- consent -------------------------------------------------------------------------------------


def parse_consent_json(
    obj: Mapping[str, Any], *, lender_id: str, now_ms: int, limits: ValidationLimits
) -> ConsentRecord:
    """A validated :class:`ConsentRecord` from one JSON object.

    ``lender_id`` may be omitted (defaults to the publishing lender) and so may
    ``effective_at`` (defaults to ``now_ms``: consent given now). There is no future check:
    a consent may be recorded ahead of when it takes effect. Raises :class:`ValidationError`.
    """
    payload_lender = _required_id(obj.get("lender_id", lender_id), "lender_id", limits)
    borrower = _borrower_present(obj.get("borrower_id"))
    reference = _optional_text(obj.get("reference"), "reference", limits)
    borrower = _borrower_valid(borrower)
    action = _action(obj.get("action"))
    raw_at = obj.get("effective_at")
    effective_at_ms = now_ms if raw_at is None else parse_timestamp_ms(raw_at, "effective_at")
    _time_ms(effective_at_ms, "effective_at", limits)
    _same_lender(payload_lender, lender_id)
    return ConsentRecord(payload_lender, borrower, action, effective_at_ms, reference)


def check_consent_record(
    rec: Mapping[str, Any], *, lender_id: str, limits: ValidationLimits
) -> ConsentRecord:
    """A validated :class:`ConsentRecord` from a dict decoded by the codec."""
    payload_lender = _required_id(rec["lender_id"], "lender_id", limits)
    borrower = _borrower_present(rec["borrower_id"])
    reference = _optional_text(rec.get("reference"), "reference", limits)
    borrower = _borrower_valid(borrower)
    action = _action(rec["action"])
    effective_at_ms = _time_ms(rec["effective_at_ms"], "effective_at_ms", limits)
    _same_lender(payload_lender, lender_id)
    return ConsentRecord(payload_lender, borrower, action, effective_at_ms, reference)
