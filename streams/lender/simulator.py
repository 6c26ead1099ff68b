"""``registry simulate``: several lenders publishing a reproducible loan history, then live.

The history covers the last ``days`` days ending at ``now``; :func:`generate_sequence` yields it
in publish order, a pure function of the parameters (same seed and arguments, same ``now`` ->
identical items, ids and timestamps). Each item has a sequence time ``seq_ms``: a consent
record's effective time, a loan event's event time, or later for a *late* event (hours to days
after it happened, some beyond 72 h) and for a *duplicate* (an exact re-send of an earlier
event: same event id, same key). *Malformed* records (garbage, unknown fingerprint, invalid
fields, another lender's id in the payload) are sent raw, bypassing the publisher's checks.

Causality rule, relied upon by the stream: every consent record is published and acknowledged
before any loan event that follows it in the sequence is sent. :func:`run_simulation` sends the
sequence in chunks: each chunk's consent records first, then a flush, then its loan records.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from schemas.codec import HEADER_SIZE, LOAN_EVENT, MAGIC, codec_for
from schemas.national_id import check_character
from schemas.reasons import RejectReason
from schemas.records import ConsentRecord, EventType, LoanEvent
from streams.lender import population as pop
from streams.lender.ground_truth import GroundTruth, TruthBuilder
from streams.lender.publisher import LenderPublisher, PublisherError
from streams.progress import Progress
from streams.settings import Settings, get_settings
from streams.topics_admin import TopicAdminError, ensure_lender_topics

CHUNK_ITEMS = 2000
#: Live events per second when ``--rate`` is 0 and no ``--events`` bound ends the run.
LIVE_DEFAULT_RATE = 50.0
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
    tag: str = ""  # "late", "duplicate", or the malformation name


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


class _Player:
    """Sends items through one publisher per lender, honouring rate, limits and causality."""

    def __init__(
        self,
        publishers: dict[str, LenderPublisher],
        truth: TruthBuilder,
        params: SimulationParams,
        progress: Progress,
        stop: asyncio.Event,
    ) -> None:
        self.publishers = publishers
        self.truth = truth
        self.params = params
        self.progress = progress
        self.stop = stop
        self.started = time.monotonic()
        self.loan_records = 0  # records sent to loans topics
        self.sent = 0
        self.rate = params.rate
        self._paced_from = (self.started, 0)

    def done(self) -> bool:
        p = self.params
        return (
            self.stop.is_set()
            or (p.events is not None and self.loan_records >= p.events)
            or (p.duration_s is not None and time.monotonic() - self.started >= p.duration_s)
        )

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self._paced_from = (time.monotonic(), self.sent)

    async def play(self, items: Iterable[SimItem]) -> int:
        """Send ``items`` chunk by chunk; returns how many were sent before a stop."""
        played = 0
        chunk: list[SimItem] = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= CHUNK_ITEMS:
                played += await self._chunk(chunk)
                chunk = []
                if self.done():
                    return played
        return played + (await self._chunk(chunk) if chunk else 0)

    async def _chunk(self, chunk: list[SimItem]) -> int:
        consent = [item for item in chunk if item.kind is ItemKind.CONSENT]
        for item in consent:  # earlier than their place is harmless: consent is by time
            assert item.consent is not None
            await self.publishers[item.lender_id].publish_consent(item.consent)
            self.truth.observe_consent(item.consent)
            self.sent += 1
        await asyncio.gather(
            *(self.publishers[lid].flush() for lid in {c.lender_id for c in consent})
        )
        played = len(consent)
        for item in chunk:
            if item.kind is ItemKind.CONSENT:
                continue
            if self.done():
                return played
            publisher = self.publishers[item.lender_id]
            if item.kind is ItemKind.LOAN:
                assert item.loan is not None
                await publisher.publish_event(item.loan)
                self.truth.observe_loan(item.lender_id, item.loan)
            else:
                assert item.value is not None and item.reason is not None
                await publisher.send_raw(publisher.loans_topic, item.key, item.value)
                self.truth.observe_raw(item.lender_id, item.reason)
            self.sent += 1
            self.loan_records += 1
            played += 1
            await self._pace()
        return played

    async def _pace(self) -> None:
        if self.rate > 0:
            since, base = self._paced_from
            ahead = since + (self.sent - base) / self.rate - time.monotonic()
            if ahead > 0.002:
                await asyncio.sleep(ahead)
        elif self.sent % 1000 == 0:
            await asyncio.sleep(0)  # let acknowledgements and signals through
        self.progress.tick(self.sent, acked=sum(p.acked for p in self.publishers.values()))


async def run_simulation(
    settings: Settings,
    params: SimulationParams,
    *,
    truth_path: Path | None = None,
    progress: bool = False,
    stop: asyncio.Event | None = None,
) -> SimulationResult:
    """Publish the history, then live events, until ``events``/``duration``/``stop``.

    Returns once everything sent is acknowledged; the truth (also written to ``truth_path``)
    covers exactly what was published, even when stopped early.
    """
    params = params.resolved()
    scenario = build_scenario(params)
    lender_ids = [lender.lender_id for lender in scenario.lenders]
    for lid in lender_ids:
        await ensure_lender_topics(settings, lid)
    truth = TruthBuilder(
        params.to_json(),
        params.now_ms or 0,
        lender_ids,
        {b.borrower_id: b.profile.value for b in scenario.borrowers},
    )
    stop = stop or asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        publishers = {
            lid: await stack.enter_async_context(LenderPublisher(settings, lid))
            for lid in lender_ids
        }
        player = _Player(publishers, truth, params, Progress("simulate", enabled=progress), stop)
        player.set_rate(params.rate)
        history = await player.play(scenario.items)
        complete = history == len(scenario.items)
        live = 0
        if complete and not player.done():
            # rate 0 means unlimited; live data without an --events bound gets a sane pace
            player.set_rate(params.rate or (0.0 if params.events else LIVE_DEFAULT_RATE))
            batch = max(1, int(player.rate / 5)) if player.rate else CHUNK_ITEMS
            while not player.done():
                live += await player.play(live_items(scenario, int(time.time() * 1000), batch))
        await asyncio.gather(*(p.flush() for p in publishers.values()))
        sent = sum(p.sent for p in publishers.values())
        acked = sum(p.acked for p in publishers.values())
    result = truth.build()
    if truth_path is not None:
        result.write(truth_path)
    return SimulationResult(
        result, sent, acked, history, live, complete, time.monotonic() - player.started
    )


# --- command line --------------------------------------------------------------------------


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _rfc3339_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 timestamp") from exc
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs an offset, e.g. Z or +08:00")
    return int(moment.timestamp() * 1000)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "simulate",
        help="publish a reproducible simulated loan history, then live events",
        description="Seeded: the same seed, arguments and --now give the same events.",
    )
    add = parser.add_argument
    add("--seed", type=int, default=1)
    add("--lenders", type=_positive_int, default=5, help="number of lenders (default 5)")
    add("--borrowers", type=_positive_int, default=1000, help="number of borrowers")
    add(
        "--rate",
        type=float,
        default=0.0,
        help=f"events/s, 0 = unlimited (live without --events: {LIVE_DEFAULT_RATE:g})",
    )
    add("--duration", type=float, default=None, help="stop after S seconds")
    add("--events", type=_positive_int, default=None, help="stop after N loan records")
    add("--days", type=_positive_int, default=30, help="history length in days (default 30)")
    add("--consent-rate", type=_share, default=0.3, help="share of (borrower, lender) consents")
    add("--duplicate-rate", type=_share, default=0.01)
    add("--late-rate", type=_share, default=0.02)
    add("--malformed-rate", type=_share, default=0.005)
    add("--now", type=_rfc3339_ms, default=None, help="end of the history (default: now)")
    add("--truth", type=Path, default=None, help="write the expected outcome as JSON here")
    add("--quiet", action="store_true", help="no progress lines")
    return parser


def run(args: argparse.Namespace) -> int:
    params = SimulationParams(
        seed=args.seed,
        lenders=args.lenders,
        borrowers=args.borrowers,
        rate=args.rate,
        duration_s=args.duration,
        events=args.events,
        days=args.days,
        consent_rate=args.consent_rate,
        duplicate_rate=args.duplicate_rate,
        late_rate=args.late_rate,
        malformed_rate=args.malformed_rate,
        now_ms=args.now,
    )
    return asyncio.run(_run(get_settings(), params, args.truth, not args.quiet))


async def _run(settings: Settings, params: SimulationParams, truth: Path | None, loud: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        result = await run_simulation(settings, params, truth_path=truth, progress=loud, stop=stop)
    except (TopicAdminError, PublisherError) as exc:
        print(f"registry simulate: {exc}", file=sys.stderr)
        return 2
    t = result.truth
    print(
        f"simulate: published {t.published['loans']:,} loan events, {t.published['consent']:,}"
        f" consent records, {t.published['raw']:,} malformed records for {len(t.lenders)} "
        f"lenders in {result.elapsed_s:.1f}s ({result.acked:,} acknowledged); expected "
        f"{len(t.admitted):,} admitted, {t.rejected_total():,} rejected"
        + (f"; truth in {truth}" if truth else ""),
        file=sys.stderr,
    )
    return 0
