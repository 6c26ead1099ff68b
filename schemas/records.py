"""Typed Python views of the Avro records, plus the timestamp formatter every output shares.

Money is an ``int`` of minor units (fen for CNY), never a float or a ``Decimal``: it is exact,
sums without rounding, and the Avro ``long`` decodes about twice as fast as an Avro
``bytes``/``decimal`` (measurements in :mod:`schemas.codec`). Time is ``int`` epoch
milliseconds UTC for the same reasons; :func:`format_timestamp` turns it into RFC 3339 at the
edges (API answers, CLI output).

The dataclasses are frozen: a record decided by validation cannot be altered afterwards.
``to_avro()`` gives the plain ``dict`` :meth:`schemas.codec.Codec.encode` expects (enum members
become their symbol strings); ``from_avro()`` rebuilds a record from a decoded dict WITHOUT
validating it (use :mod:`schemas.validation` for input from lenders).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from schemas.reasons import RejectReason

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: The registry's currency: a lender record without ``currency`` is in it, and bucket amounts
#: (stream and correction path alike) sum it only; other currencies are counted, not summed.
REGISTRY_CURRENCY = "CNY"


class EventType(StrEnum):
    """Symbols of the Avro enum ``registry.lender.EventType`` (lower case, exactly)."""

    DRAW = "draw"
    REPAYMENT = "repayment"
    DEFAULT = "default"
    #: withdraws the lender's earlier event named by ``cancels_event_id`` (README, Corrections)
    CANCEL = "cancel"


class ConsentAction(StrEnum):
    """Symbols of the Avro enum ``registry.lender.ConsentAction``."""

    GRANT = "grant"
    REVOKE = "revoke"


@dataclass(frozen=True, slots=True)
class LoanEvent:
    """``registry.lender.LoanEvent``: one loan event of one lender."""

    event_id: str
    lender_id: str
    borrower_id: str
    loan_id: str
    event_type: EventType
    amount_minor: int
    currency: str
    occurred_at_ms: int
    product: str | None = None
    #: only with ``EventType.CANCEL``: the lender's own ``event_id`` it withdraws
    cancels_event_id: str | None = None

    def to_avro(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "lender_id": self.lender_id,
            "borrower_id": self.borrower_id,
            "loan_id": self.loan_id,
            "event_type": self.event_type.value,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "occurred_at_ms": self.occurred_at_ms,
            "product": self.product,
            "cancels_event_id": self.cancels_event_id,
        }

    @classmethod
    def from_avro(cls, rec: dict[str, Any]) -> LoanEvent:
        """Rebuild from a decoded dict, unvalidated (trusted, registry-internal data)."""
        return cls(
            rec["event_id"],
            rec["lender_id"],
            rec["borrower_id"],
            rec["loan_id"],
            EventType(rec["event_type"]),
            rec["amount_minor"],
            rec["currency"],
            rec["occurred_at_ms"],
            rec.get("product"),
            rec.get("cancels_event_id"),
        )


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """``registry.lender.ConsentRecord``: a borrower's consent to one lender changes."""

    lender_id: str
    borrower_id: str
    action: ConsentAction
    effective_at_ms: int
    reference: str | None = None

    def to_avro(self) -> dict[str, Any]:
        return {
            "lender_id": self.lender_id,
            "borrower_id": self.borrower_id,
            "action": self.action.value,
            "effective_at_ms": self.effective_at_ms,
            "reference": self.reference,
        }

    @classmethod
    def from_avro(cls, rec: dict[str, Any]) -> ConsentRecord:
        """Rebuild from a decoded dict, unvalidated (trusted, registry-internal data)."""
        return cls(
            rec["lender_id"],
            rec["borrower_id"],
            ConsentAction(rec["action"]),
            rec["effective_at_ms"],
            rec.get("reference"),
        )


@dataclass(frozen=True, slots=True)
class Rejection:
    """``registry.lender.Rejection``: the dead-letter notice. It never carries borrower data:
    ``detail`` names the field and the problem, never a value."""

    lender_id: str
    reason: RejectReason
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    event_id: str | None
    rejected_at_ms: int

    def to_avro(self) -> dict[str, Any]:
        return {
            "lender_id": self.lender_id,
            "reason": self.reason.value,
            "detail": self.detail,
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "event_id": self.event_id,
            "rejected_at_ms": self.rejected_at_ms,
        }

    @classmethod
    def from_avro(cls, rec: dict[str, Any]) -> Rejection:
        return cls(
            rec["lender_id"],
            RejectReason(rec["reason"]),
            rec["detail"],
            rec["source_topic"],
            rec["source_partition"],
            rec["source_offset"],
            rec.get("event_id"),
            rec["rejected_at_ms"],
        )


def rejection(msg_topic: str, partition: int, offset: int, lender_id: str,
              reason: RejectReason, detail: str, event_id: str | None, now_ms: int) -> Rejection:
    """A dead-letter notice for one source message (never any borrower data)."""
    return Rejection(lender_id=lender_id, reason=reason, detail=detail, source_topic=msg_topic,
                     source_partition=partition, source_offset=offset,
                     event_id=event_id[:64] if event_id else None, rejected_at_ms=now_ms)


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message from a lender topic, with its coordinates and broker append time."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes | None


def format_timestamp(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC with milliseconds: ``"2026-11-22T14:00:00.000Z"``."""
    seconds, millis = divmod(ms, 1000)
    return f"{_EPOCH + timedelta(seconds=seconds):%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"
