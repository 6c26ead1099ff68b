"""The simulated loan history: which records several lenders publish, and in what order.

The history covers the last ``days`` days ending at ``now``; :func:`generate_sequence` yields it
in publish order, a pure function of the parameters (same seed and arguments, same ``now`` ->
identical items, ids and timestamps). Each item has a sequence time ``seq_ms``: a consent
record's effective time, a loan event's event time, or later for a *late* event (hours to days
after it happened, some beyond 72 h) and for a *duplicate* (an exact re-send of an earlier
event: same event id, same key). *Malformed* records (garbage, unknown fingerprint, invalid
fields, another lender's id in the payload) are sent raw, bypassing the publisher's checks.
:func:`live_items` draws further records, happening now, from the same scenario.

No Kafka and no clock here (when ``now_ms`` is set): publishing is
:mod:`~streams.lender.simulator`'s job, so tests and benchmarks can plan a history without it.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from schemas.codec import HEADER_SIZE, LOAN_EVENT, MAGIC, codec_for
from schemas.national_id import check_character
from schemas.reasons import RejectReason
from schemas.records import ConsentRecord, EventType, LoanEvent
from streams.lender import population as pop
from streams.lender.sim_types import ItemKind, SimItem, SimulationParams

#: Relative draw frequency of each profile, used to pick live borrowers.
_LIVE_WEIGHT = {
    "monthly": 1,
    "weekly": 4,
    "ten_a_month": 10,
    "bursty": 5,
    "stacker": 8,
    "defaulter": 2,
}

#: Injected malformations and the reason the registry must give.
MALFORMATIONS: dict[str, RejectReason] = {
    "garbage": RejectReason.MALFORMED,
    "unknown_fingerprint": RejectReason.UNKNOWN_SCHEMA,
    "bad_check_character": RejectReason.INVALID_BORROWER_ID,
    "nonpositive_amount": RejectReason.INVALID_AMOUNT,
    "future_occurred_at": RejectReason.FUTURE_TIMESTAMP,
    "empty_event_id": RejectReason.MISSING_FIELD,
    "other_lender": RejectReason.LENDER_MISMATCH,
}


class _Assembler:
    """Turns planned events into items, injecting late, duplicate and malformed records."""

    def __init__(self, rng: random.Random, params: SimulationParams, lender_ids: list[str]):
        self.rng = rng
        self.params = params
        self.now_ms = params.now_ms or 0
        self.lender_ids = lender_ids
        self.codec = codec_for(LOAN_EVENT)
        self.entries: list[tuple[int, int, int, SimItem]] = []  # (seq, order, counter, item)
        self._malformed = 0

    def _put(self, item: SimItem, order: int) -> None:
        self.entries.append((item.seq_ms, order, len(self.entries), item))

    def consent(self, rec: ConsentRecord, seq_ms: int) -> None:
        self._put(SimItem(seq_ms, ItemKind.CONSENT, rec.lender_id, consent=rec), 0)

    def event_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def lateness_ms(self) -> int:
        """How late a late event is published: < 1 day (50 %), 1-3 days, beyond 72 h (20 %)."""
        tier = self.rng.random()
        low, high = (1, 24) if tier < 0.5 else (24, 72) if tier < 0.8 else (73, 168)
        return int(self.rng.uniform(low, high) * pop.HOUR_MS)

    def loan(self, ev: LoanEvent, latest_ms: int, *, seq_ms: int | None = None) -> None:
        """Add ``ev`` at ``seq_ms`` (default: its event time, or later if drawn to be late,
        never after ``latest_ms``), maybe followed by a duplicate and a malformed sibling."""
        rng, seq, tag = self.rng, ev.occurred_at_ms, ""
        if seq_ms is not None:
            seq, tag = seq_ms, ("late" if seq_ms > ev.occurred_at_ms else "")
        elif rng.random() < self.params.late_rate:
            seq, tag = min(max(seq, latest_ms), seq + self.lateness_ms()), "late"
        self._put(SimItem(seq, ItemKind.LOAN, ev.lender_id, loan=ev, tag=tag), 1)
        if rng.random() < self.params.duplicate_rate:
            later = min(max(seq, latest_ms), seq + rng.randint(60_000, 12 * pop.HOUR_MS))
            self._put(SimItem(later, ItemKind.LOAN, ev.lender_id, loan=ev, tag="duplicate"), 1)
        if rng.random() < self.params.malformed_rate:
            self._put(self._malformed_item(ev), 1)

    def _malformed_item(self, base: LoanEvent) -> SimItem:
        names = list(MALFORMATIONS)
        kind = names[self._malformed % len(names)]  # cycle: every kind appears
        self._malformed += 1
        record = base.to_avro() | {"event_id": self.event_id()}
        key: bytes | None = base.borrower_id.encode()
        if kind == "garbage":
            value = bytes([self.rng.randrange(0xC3)]) + self.rng.randbytes(self.rng.randint(4, 60))
            key = None
        elif kind == "unknown_fingerprint":
            body = self.codec.encode(record)[HEADER_SIZE:]
            value = MAGIC + self.rng.randbytes(8) + body
        else:
            if kind == "bad_check_character":
                first17 = base.borrower_id[:17]
                good = check_character(first17)
                record["borrower_id"] = first17 + self.rng.choice(
                    [c for c in "0123456789X" if c != good]
                )
            elif kind == "nonpositive_amount":
                record["amount_minor"] = -self.rng.randint(0, 10_000)
            elif kind == "future_occurred_at":
                record["occurred_at_ms"] = self.now_ms + pop.DAY_MS
            elif kind == "empty_event_id":
                record["event_id"] = ""
            elif kind == "other_lender":
                others = [lid for lid in self.lender_ids if lid != base.lender_id]
                record["lender_id"] = self.rng.choice(others or ["lender-0"])
            value = self.codec.encode(record)
        return SimItem(
            base.occurred_at_ms,
            ItemKind.RAW,
            base.lender_id,
            key=key,
            value=value,
            reason=MALFORMATIONS[kind],
            tag=kind,
        )

    def sorted_items(self) -> list[SimItem]:
        self.entries.sort(key=lambda e: e[:3])
        return [entry[3] for entry in self.entries]


@dataclass
class Scenario:
    """A resolved run: the lenders, the borrowers and the history in publish order."""

    params: SimulationParams
    lenders: list[pop.Lender]
    borrowers: list[pop.Borrower]
    items: list[SimItem]
    rng: random.Random  # continues after the history (live mode)


def build_scenario(params: SimulationParams) -> Scenario:
    params = params.resolved()
    now = params.now_ms or 0
    rng = random.Random(params.seed)
    lenders = pop.lenders(params.lenders)
    catalogue = {lender.lender_id: lender for lender in lenders}
    lender_ids = list(catalogue)
    start = now - params.days * pop.DAY_MS
    people = pop.borrowers(rng, params.borrowers, lender_ids)
    asm = _Assembler(rng, params, lender_ids)
    for person in people:
        for c in pop.plan_consent(rng, person, params.consent_rate, start, now):
            rec = ConsentRecord(
                c.lender_id, person.borrower_id, c.action, c.effective_at_ms, c.reference
            )
            asm.consent(rec, c.effective_at_ms)
        for p in pop.plan_loans(rng, person, catalogue, start, now):
            ev = LoanEvent(
                asm.event_id(),
                p.lender_id,
                person.borrower_id,
                p.loan_id,
                p.event_type,
                p.amount_minor,
                "CNY",
                p.occurred_at_ms,
                p.product,
            )
            asm.loan(ev, now)
    return Scenario(params, lenders, people, asm.sorted_items(), rng)


def generate_sequence(params: SimulationParams) -> Iterator[SimItem]:
    """The history in publish order; pure (no Kafka, no clock when ``now_ms`` is set)."""
    return iter(build_scenario(params).items)


def live_items(scenario: Scenario, now_ms: int, count: int) -> list[SimItem]:
    """``count`` loan records happening at ``now_ms`` (plus injected extras and, rarely, a
    consent change effective at ``now_ms``), in publish order."""
    rng, params = scenario.rng, scenario.params
    asm = _Assembler(
        rng,
        SimulationParams(**{**asdict(params), "now_ms": now_ms}),
        [lender.lender_id for lender in scenario.lenders],
    )
    weights = [_LIVE_WEIGHT[b.profile] for b in scenario.borrowers]
    by_id = {lender.lender_id: lender for lender in scenario.lenders}
    for person in rng.choices(scenario.borrowers, weights, k=count):
        lid = rng.choice(person.lenders)
        if rng.random() < 0.02:
            action = pop.ConsentAction.GRANT if rng.random() < 0.8 else pop.ConsentAction.REVOKE
            ref = f"consent-{rng.getrandbits(64):016x}"
            asm.consent(ConsentRecord(lid, person.borrower_id, action, now_ms, ref), now_ms)
        kind = EventType.DRAW if rng.random() < 0.7 else EventType.REPAYMENT
        product, median = by_id[lid].pick_product(rng)
        amount = max(100, int(rng.lognormvariate(0, 0.6) * median * 100))
        loan_id = f"{lid.split('-')[-1][:4]}-{rng.getrandbits(48):012x}"
        late = rng.random() < params.late_rate
        occurred = now_ms - asm.lateness_ms() if late else now_ms
        ev = LoanEvent(
            asm.event_id(), lid, person.borrower_id, loan_id, kind, amount, "CNY", occurred, product
        )
        asm.loan(ev, now_ms, seq_ms=now_ms)
    return asm.sorted_items()
