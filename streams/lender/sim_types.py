"""The simulator's vocabulary: its parameters, the items it publishes and a run's result.

Shared by :mod:`~streams.lender.scenario` (which turns the parameters into items) and
:mod:`~streams.lender.simulator` (which publishes them and reports the result). Kept apart and
free of Kafka code so that tests and benchmarks that plan or publish items themselves import
them from one place.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from schemas.reasons import RejectReason
from schemas.records import ConsentRecord, LoanEvent
from streams.lender.ground_truth import GroundTruth


class ItemKind(StrEnum):
    LOAN = "loan"  # a well-formed loan event (possibly late, possibly a duplicate)
    CONSENT = "consent"
    RAW = "raw"  # deliberately broken bytes on a loans topic


@dataclass(frozen=True, slots=True)
class SimItem:
    """One record to publish on ``lender_id``'s topics."""

    seq_ms: int
    kind: ItemKind
    lender_id: str
    loan: LoanEvent | None = None
    consent: ConsentRecord | None = None
    key: bytes | None = None  # RAW only
    value: bytes | None = None  # RAW only
    reason: RejectReason | None = None  # RAW only: the injected malformation's reason
    #: "late", "duplicate", a malformation name, or a cancel's kind (CANCEL_TAGS)
    tag: str = ""


#: Tags of the cancels the simulator publishes (a re-sent cancel is tagged "duplicate"):
#: ``cancel`` withdraws an event of the same lender and borrower published shortly before;
#: ``cancel_late`` one that happened more than the grace period (72 h) before the cancel;
#: ``cancel_before`` one that the lender publishes late, AFTER the cancel.
CANCEL_TAGS = ("cancel", "cancel_late", "cancel_before")


@dataclass(frozen=True, slots=True)
class SimulationParams:
    seed: int = 1
    lenders: int = 5
    borrowers: int = 1000
    #: events/s; 0 = unlimited, except live without an ``events`` bound (LIVE_DEFAULT_RATE)
    rate: float = 0.0
    duration_s: float | None = None
    events: int | None = None  # stop after this many records on loans topics
    days: int = 30
    consent_rate: float = 0.3
    duplicate_rate: float = 0.01
    late_rate: float = 0.02
    malformed_rate: float = 0.005
    #: cancels per loan event (history and live), drawn from a random generator of their own:
    #: the other records keep their ids, times and amounts whatever this rate (only the
    #: targets of ``cancel_before`` cancels are published later than they would be)
    cancel_rate: float = 0.003
    now_ms: int | None = None  # None: wall clock rounded to the second

    def resolved(self) -> SimulationParams:
        if self.now_ms is not None:
            return self
        return SimulationParams(**{**asdict(self), "now_ms": int(time.time()) * 1000})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SimulationResult:
    truth: GroundTruth
    sent: int
    acked: int
    history_items: int
    live_items: int
    history_complete: bool
    elapsed_s: float
