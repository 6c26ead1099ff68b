"""The simulated loan history: which records several lenders publish, and in what order.

The history covers the last ``days`` days ending at ``now``; :func:`generate_sequence` yields it
in publish order, a pure function of the parameters (same seed and arguments, same ``now`` ->
identical items, ids and timestamps). Each item has a sequence time ``seq_ms``: a consent
record's effective time, a loan event's event time, or later for a *late* event (hours to days
after it happened, some beyond 72 h) and for a *duplicate* (an exact re-send of an earlier
event: same event id, same key). *Malformed* records (garbage, unknown fingerprint, invalid
fields, another lender's id in the payload) are sent raw, bypassing the publisher's checks.
*Cancels* (``cancel_rate`` per loan event) withdraw an event of the same lender and borrower
(``cancels_event_id``, the target's ``loan_id`` and product, amount 0, a fresh event id, an
event time at or after the target's), whether or not the registry admits the target; the
kinds are tagged (:data:`~streams.lender.sim_types.CANCEL_TAGS`): ``cancel`` (70 %) follows
its target within 36 h, ``cancel_late`` (18 %) happens 73-240 h after it (beyond the grace
period), ``cancel_before`` (12 %) is published BEFORE its target, which the lender publishes
late. A cancel is re-sent (``duplicate``) like any event. Cancels come from a random generator
of their own (seeded by ``seed``), so the rest of a seeded history does not depend on them.
:func:`live_items` draws further records, happening now, from the same scenario.

No Kafka and no clock here (when ``now_ms`` is set): publishing is
:mod:`~streams.lender.simulator`'s job, so tests and benchmarks can plan a history without it.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

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

#: A ``cancel_late`` happens 73-240 h after its target, beyond ``GRACE_HOURS`` (72 h by
#: default; the target's daily bucket is mostly closed by then).
GRACE_HOURS = pop.GRACE_HOURS
#: Kinds of cancels (SimItem tags) and their shares.
_CANCEL_KINDS = ("cancel", "cancel_late", "cancel_before")
_CANCEL_WEIGHTS = (0.70, 0.18, 0.12)

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

    def __init__(
        self,
        rng: random.Random,
        params: SimulationParams,
        lender_ids: list[str],
        cancel_rng: random.Random,
    ):
        self.rng = rng
        self.cancel_rng = cancel_rng  # everything about cancels, so ``rng`` never depends on them
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

    def lateness_ms(self, rng: random.Random | None = None) -> int:
        """How late a late event is published: < 1 day (50 %), 1-3 days, beyond 72 h (20 %)."""
        rng = rng or self.rng
        tier = rng.random()
        low, high = (1, 24) if tier < 0.5 else (24, 72) if tier < 0.8 else (73, 168)
        return int(rng.uniform(low, high) * pop.HOUR_MS)

    def cancel_kind(self) -> str | None:
        """Whether the next loan event is to be cancelled, and by which kind of cancel."""
        crng = self.cancel_rng
        if crng.random() >= self.params.cancel_rate:
            return None
        return crng.choices(_CANCEL_KINDS, _CANCEL_WEIGHTS)[0]

    def loan(
        self,
        ev: LoanEvent,
        latest_ms: int,
        *,
        seq_ms: int | None = None,
        cancel: str | None = None,
    ) -> None:
        """Add ``ev`` at ``seq_ms`` (default: its event time, or later if drawn to be late,
        never after ``latest_ms``), maybe followed by a duplicate and a malformed sibling, and
        by a cancel of kind ``cancel`` (:meth:`cancel_kind`)."""
        rng, seq, tag = self.rng, ev.occurred_at_ms, ""
        if seq_ms is not None:
            seq, tag = seq_ms, ("late" if seq_ms > ev.occurred_at_ms else "")
        elif rng.random() < self.params.late_rate:
            seq, tag = min(max(seq, latest_ms), seq + self.lateness_ms()), "late"
        if cancel == "cancel_before" and seq_ms is None and seq == ev.occurred_at_ms:
            # the lender publishes the event late, after its cancel
            late = min(max(seq, latest_ms), seq + self.lateness_ms(self.cancel_rng))
            seq, tag = late, ("late" if late > seq else tag)
        self._put(SimItem(seq, ItemKind.LOAN, ev.lender_id, loan=ev, tag=tag), 1)
        if rng.random() < self.params.duplicate_rate:
            later = min(max(seq, latest_ms), seq + rng.randint(60_000, 12 * pop.HOUR_MS))
            self._put(SimItem(later, ItemKind.LOAN, ev.lender_id, loan=ev, tag="duplicate"), 1)
        if rng.random() < self.params.malformed_rate:
            self._put(self._malformed_item(ev), 1)
        if cancel is not None:
            self.cancel(ev, seq, cancel, latest_ms)

    def cancel(
        self,
        target: LoanEvent,
        target_seq: int,
        kind: str,
        latest_ms: int,
        *,
        at_ms: int | None = None,
    ) -> None:
        """Add a cancel of ``target`` (published at ``target_seq``) of kind ``kind``, or of
        kind ``cancel`` where ``kind`` does not fit (a late cancel would happen after
        ``latest_ms``; a cancel before its target needs a target published late), maybe
        followed by a re-send of it. ``at_ms``: the cancel's event time (default: drawn)."""
        crng = self.cancel_rng
        if at_ms is None:
            at, kind = self._cancel_time(target.occurred_at_ms, target_seq, kind, latest_ms)
        else:
            at = at_ms
        # a cancel before its target is published at its own time, the others after the target
        seq = at if kind == "cancel_before" else max(at, target_seq)
        ev = LoanEvent(
            self.cancel_event_id(),
            target.lender_id,
            target.borrower_id,
            target.loan_id,
            EventType.CANCEL,
            0,
            target.currency,
            at,
            target.product,
            target.event_id,
        )
        self._put(SimItem(seq, ItemKind.LOAN, ev.lender_id, loan=ev, tag=kind), 1)
        if crng.random() < self.params.duplicate_rate:
            later = min(max(seq, latest_ms), seq + crng.randint(60_000, 12 * pop.HOUR_MS))
            self._put(SimItem(later, ItemKind.LOAN, ev.lender_id, loan=ev, tag="duplicate"), 1)

    def _cancel_time(
        self, t0: int, target_seq: int, kind: str, latest_ms: int
    ) -> tuple[int, str]:
        """A cancel's event time and kind, given its target's event and publish times."""
        crng = self.cancel_rng
        if kind == "cancel_late":
            at = t0 + int(crng.uniform(GRACE_HOURS + 1, 240) * pop.HOUR_MS)
            if at < latest_ms:
                return at, kind
        elif kind == "cancel_before" and target_seq > t0:
            return t0 + crng.randrange(target_seq - t0), kind  # before the target is published
        last = max(t0, latest_ms - 1)  # no cancel happens after the end of the history
        return min(last, t0 + crng.randint(60_000, 36 * pop.HOUR_MS)), "cancel"

    def cancel_event_id(self) -> str:
        return str(uuid.UUID(int=self.cancel_rng.getrandbits(128), version=4))

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
    cancel_rng: random.Random = field(default_factory=random.Random)  # the same, for cancels
    #: the history's loan events other than cancels (late cancels in live mode name them)
    history_events: list[LoanEvent] = field(default_factory=list)


def build_scenario(params: SimulationParams) -> Scenario:
    params = params.resolved()
    now = params.now_ms or 0
    rng = random.Random(params.seed)
    lenders = pop.lenders(params.lenders)
    catalogue = {lender.lender_id: lender for lender in lenders}
    lender_ids = list(catalogue)
    start = now - params.days * pop.DAY_MS
    people = pop.borrowers(rng, params.borrowers, lender_ids)
    asm = _Assembler(rng, params, lender_ids, cancel_rng(params.seed))
    events: list[LoanEvent] = []
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
            events.append(ev)
            asm.loan(ev, now, cancel=asm.cancel_kind())
    return Scenario(
        params, lenders, people, asm.sorted_items(), rng, asm.cancel_rng, events
    )


def cancel_rng(seed: int) -> random.Random:
    """The cancels' own random generator of a run seeded ``seed``."""
    return random.Random(f"cancels-{seed}")


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
        scenario.cancel_rng,
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
        cancel = asm.cancel_kind()
        if cancel == "cancel_before" and not late:  # published late, after its cancel
            occurred = now_ms - asm.lateness_ms(asm.cancel_rng)
        elif cancel == "cancel_late":  # of a history event beyond the grace period
            _cancel_history_event(asm, scenario.history_events, now_ms)
            cancel = None
        ev = LoanEvent(
            asm.event_id(), lid, person.borrower_id, loan_id, kind, amount, "CNY", occurred, product
        )
        asm.loan(ev, now_ms, seq_ms=now_ms, cancel=cancel)
    return asm.sorted_items()


def _cancel_history_event(asm: _Assembler, history: list[LoanEvent], now_ms: int) -> None:
    """A ``cancel_late`` happening at ``now_ms`` of a history event more than the grace period
    older (published with the history, before any live item)."""
    oldest = now_ms - (GRACE_HOURS + 1) * pop.HOUR_MS
    for _ in range(20):
        if not history:
            return
        target = history[asm.cancel_rng.randrange(len(history))]
        if target.occurred_at_ms <= oldest:
            asm.cancel(target, now_ms, "cancel_late", now_ms, at_ms=now_ms)
            return
