"""The simulator's oracle: what the registry must admit and reject, given what was published.

Computed independently of the stream code (nothing from ``streams`` admission is imported): the
rules of the lender contract are re-stated here plainly and applied to exactly the records the
simulator published, in publish order per lender topic.

For every record on ``lenders.<L>.loans``:

a. bytes that are not a decodable record of a known schema -> ``MALFORMED`` / ``UNKNOWN_SCHEMA``
   (the simulator knows which malformation it injected, and records that reason);
b. a field that breaks the contract -> the injected validation reason;
c. payload ``lender_id`` != ``L`` -> ``LENDER_MISMATCH``;
d. ``(L, event_id)`` already seen among records that passed a-c -> ``DUPLICATE``;
e. no consent of (borrower, L) in force at ``occurred_at_ms`` -> ``NO_CONSENT``, where consent
   in force at t is the latest consent record with ``effective_at_ms <= t`` being a grant (at the
   same millisecond a revoke wins), and no record means no consent;
f. otherwise ``ADMITTED``.

Cancels (``event_type`` ``cancel``) go through the same rules: de-duplicated by their own
``event_id``, admitted if consent is in force at their own ``occurred_at_ms``. An admitted cancel
withdraws the admitted non-cancel event of the same borrower and lender whose ``event_id`` it
names, whenever that arrives (:meth:`GroundTruth.counted`); it counts nowhere itself, and a
cancel of a cancel, of an unknown or of a not admitted event withdraws nothing. The ledger
holds every admitted event, cancels included (:attr:`GroundTruth.admitted`).
"""

from __future__ import annotations

import bisect
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from schemas.reasons import RejectReason
from schemas.records import ConsentAction, ConsentRecord, EventType, LoanEvent
from streams.lender.population import GRACE_HOURS, HOUR_MS

#: Keys of :attr:`GroundTruth.cancels`.
CANCEL_FIGURES = ("published", "admitted", "effective", "effective_late",
                  "effective_before_target")


class AdmittedEvent(NamedTuple):
    lender_id: str
    event_id: str
    borrower_id: str
    event_type: str
    amount_minor: int
    occurred_at_ms: int
    cancels_event_id: str = ""  # a cancel's target, "" for other events


@dataclass(frozen=True, slots=True)
class BorrowerTruth:
    profile: str
    lenders_consented: list[str]  # lenders this borrower granted consent to at some time


@dataclass
class GroundTruth:
    """The expected outcome of one simulation run (the ``--truth`` JSON file)."""

    params: dict[str, Any]
    now_ms: int
    lenders: list[str]
    borrowers: dict[str, BorrowerTruth]
    admitted: list[AdmittedEvent]
    rejections: dict[str, dict[str, int]]
    published: dict[str, int]
    #: cancels: ``published`` (re-sends included), ``admitted``, ``effective`` (admitted, and
    #: naming an admitted event: it withdraws it), of those ``effective_late`` (happened more
    #: than GRACE_HOURS after their target) and ``effective_before_target`` (published before
    #: their target)
    cancels: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CANCEL_FIGURES, 0))

    def rejected_total(self, reason: RejectReason | str | None = None) -> int:
        """Rejections over all lenders, of one reason or of all."""
        return sum(
            count
            for per_lender in self.rejections.values()
            for code, count in per_lender.items()
            if reason is None or code == reason
        )

    def admitted_for(self, borrower_id: str) -> list[AdmittedEvent]:
        return [ev for ev in self.admitted if ev.borrower_id == borrower_id]

    def cancelled(self) -> set[tuple[str, str, str]]:
        """``(borrower_id, lender_id, event_id)`` named by an admitted cancel."""
        return {
            (ev.borrower_id, ev.lender_id, ev.cancels_event_id)
            for ev in self.admitted
            if ev.event_type == EventType.CANCEL
        }

    def counted(self) -> list[AdmittedEvent]:
        """The admitted events that count (in buckets and risk answers): not cancels, and not
        named by an admitted cancel of the same borrower and lender."""
        gone = self.cancelled()
        return [
            ev
            for ev in self.admitted
            if ev.event_type != EventType.CANCEL
            and (ev.borrower_id, ev.lender_id, ev.event_id) not in gone
        ]

    def counted_for(self, borrower_id: str) -> list[AdmittedEvent]:
        return [ev for ev in self.counted() if ev.borrower_id == borrower_id]

    def to_json(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "now_ms": self.now_ms,
            "lenders": self.lenders,
            "borrowers": {
                bid: {"profile": b.profile, "lenders_consented": b.lenders_consented}
                for bid, b in self.borrowers.items()
            },
            "admitted": [list(ev) for ev in self.admitted],
            "rejections": self.rejections,
            "published": self.published,
            "cancels": self.cancels,
        }

    def write(self, path: Path) -> None:
        """Write atomically (a reader never sees half a file)."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), separators=(",", ":")))
        tmp.replace(path)


@dataclass
class _ConsentHistory:
    """Consent records of one (borrower, lender) as ``(effective_at_ms, 0 grant | 1 revoke)``."""

    records: list[tuple[int, int]] = field(default_factory=list)
    _sorted: bool = True

    def add(self, effective_at_ms: int, grant: bool) -> None:
        self.records.append((effective_at_ms, 0 if grant else 1))
        self._sorted = False

    def in_force_at(self, t: int) -> bool:
        if not self._sorted:
            self.records.sort()  # at one millisecond the revoke (1) sorts last, so it wins
            self._sorted = True
        index = bisect.bisect_right(self.records, (t, 2))  # records effective at or before t
        return index > 0 and self.records[index - 1][1] == 0


class TruthBuilder:
    """Feed it every published record in publish order; :meth:`build` applies rules a-f."""

    def __init__(
        self,
        params: dict[str, Any],
        now_ms: int,
        lenders: list[str],
        profiles: dict[str, str],
    ) -> None:
        self._params = params
        self._now_ms = now_ms
        self._lenders = lenders
        self._profiles = profiles
        self._seen: set[tuple[str, str]] = set()
        self._candidates: list[LoanEvent] = []  # passed a-d, consent decided at build time
        self._consent: dict[tuple[str, str], _ConsentHistory] = defaultdict(_ConsentHistory)
        self._granted: dict[str, set[str]] = defaultdict(set)
        self._rejections: dict[str, Counter[str]] = defaultdict(Counter)
        self._published: Counter[str] = Counter()
        self._cancels_published = 0
        self._before_target: set[tuple[str, str]] = set()  # (lender, cancel's event_id)

    def observe_loan(self, topic_lender: str, ev: LoanEvent) -> None:
        """A well-formed loan event published on ``topic_lender``'s loans topic."""
        self._published["loans"] += 1
        if ev.lender_id != topic_lender:
            self._rejections[topic_lender][RejectReason.LENDER_MISMATCH] += 1
            return
        if ev.event_type is EventType.CANCEL:
            self._cancels_published += 1
        key = (topic_lender, ev.event_id)
        if key in self._seen:
            self._rejections[topic_lender][RejectReason.DUPLICATE] += 1
            return
        self._seen.add(key)
        self._candidates.append(ev)
        target_seen = (topic_lender, ev.cancels_event_id) in self._seen
        if ev.event_type is EventType.CANCEL and not target_seen:
            self._before_target.add(key)  # its target is published later, or never

    def observe_raw(self, topic_lender: str, reason: RejectReason) -> None:
        """A record the simulator broke on purpose, failing with ``reason`` (rules a-c)."""
        self._published["raw"] += 1
        self._rejections[topic_lender][reason] += 1

    def observe_consent(self, rec: ConsentRecord) -> None:
        self._published["consent"] += 1
        grant = rec.action is ConsentAction.GRANT
        self._consent[(rec.borrower_id, rec.lender_id)].add(rec.effective_at_ms, grant)
        if grant:
            self._granted[rec.borrower_id].add(rec.lender_id)

    def build(self) -> GroundTruth:
        admitted: list[AdmittedEvent] = []
        rejections = {lid: Counter(c) for lid, c in self._rejections.items()}
        for ev in self._candidates:
            history = self._consent.get((ev.borrower_id, ev.lender_id))
            if history is None or not history.in_force_at(ev.occurred_at_ms):
                rejections.setdefault(ev.lender_id, Counter())[RejectReason.NO_CONSENT] += 1
                continue
            admitted.append(
                AdmittedEvent(
                    ev.lender_id,
                    ev.event_id,
                    ev.borrower_id,
                    EventType(ev.event_type).value,
                    ev.amount_minor,
                    ev.occurred_at_ms,
                    ev.cancels_event_id or "",
                )
            )
        return GroundTruth(
            params=self._params,
            now_ms=self._now_ms,
            lenders=list(self._lenders),
            borrowers={
                bid: BorrowerTruth(profile, sorted(self._granted.get(bid, ())))
                for bid, profile in self._profiles.items()
            },
            admitted=admitted,
            rejections={
                lid: {str(reason): n for reason, n in sorted(c.items())}
                for lid, c in sorted(rejections.items())
            },
            published={k: self._published[k] for k in ("loans", "consent", "raw")},
            cancels=self._cancel_figures(admitted),
        )

    def _cancel_figures(self, admitted: list[AdmittedEvent]) -> dict[str, int]:
        figures = dict.fromkeys(CANCEL_FIGURES, 0)
        figures["published"] = self._cancels_published
        targets = {
            (ev.borrower_id, ev.lender_id, ev.event_id): ev
            for ev in admitted
            if ev.event_type != EventType.CANCEL
        }
        for ev in admitted:
            if ev.event_type != EventType.CANCEL:
                continue
            figures["admitted"] += 1
            target = targets.get((ev.borrower_id, ev.lender_id, ev.cancels_event_id))
            if target is None:
                continue
            figures["effective"] += 1
            if ev.occurred_at_ms - target.occurred_at_ms > GRACE_HOURS * HOUR_MS:
                figures["effective_late"] += 1
            if (ev.lender_id, ev.event_id) in self._before_target:
                figures["effective_before_target"] += 1
        return figures
