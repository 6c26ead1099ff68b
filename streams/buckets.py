"""Per-borrower event-time buckets, kept under our own control (not Faust windowed tables).

Why not Faust's windowed tables: their expiry runs on wall-clock time, windows restored after a
restart never expire, and ``on_window_close`` skips windows. Here time is event time only, and
every decision is a pure function of (state, event, stream time), so a replay after a crash
rebuilds exactly the same rows.

The promises this module keeps, which the exactness tests check:

* A bucket present in state is *complete*: it holds every admitted event of that borrower and
  period that was ever applied. Buckets leave state only by eviction, and eviction advances
  ``*_evicted_through``; an event for a period before that mark takes the *correction path*
  (the sink recomputes the bucket from the de-duplicated ledger in ClickHouse), never the
  in-state path, so a half-empty bucket is never created for a period that had events.
* Each day bucket remembers the 64-bit keys of the events applied to it. A second delivery of
  the same event (a replay after a crash, or an upstream re-forward) is recognised and not
  counted again; the bucket's current absolute state is re-emitted instead, which is harmless
  because rows are versioned and ClickHouse keeps the highest version.
* Versions are positions in ``registry.validated`` (``offset * 65536 + index in batch``), raised
  where needed to one above the borrower's ``last_version``, so the row emitted after an event
  always outranks rows emitted before it, even when Faust re-delivers older records of a
  partition after newer ones (seen after a rebalance: records skipped, then re-sought).

Hour buckets leave state ``hourly_state_hours`` after their end (stream time); day buckets
``grace_hours`` after their end. Stream time is the largest event time seen on the partition.

Cancels (README, Corrections). A bucket in state does not know the amounts of the events it
counted, so a cancel cannot subtract its event. When a cancel names an event a day bucket in
state has seen (:meth:`BucketPolicy.cancel`), that day and its hours leave state at once and
the day becomes a *ledger day*: its events take the correction path from then on, and the sink
rebuilds the cancelled event's day and hour from the ledger, where the cancel's own row marks
the event cancelled. A cancel whose event is not in state is kept as a :class:`PendingCancel`:
an event that arrives later and matches it is recorded (its key joins the day's ``seen``) but
counted nowhere (:meth:`BucketPolicy.apply` with ``counts=False``). Cancels count nowhere
themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any

from schemas.calendar import HOUR_MS, Calendar
from schemas.records import REGISTRY_CURRENCY

DRAW, REPAYMENT, DEFAULT, CANCEL = "draw", "repayment", "default", "cancel"


def event_key(lender_id: str, event_id: str) -> int:
    """A signed 64-bit key of an event's identity (fits Avro ``long``)."""
    digest = blake2b(f"{lender_id}\x1f{event_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


class Bucket:
    """Counts of one borrower in one hour or one local day."""

    __slots__ = (
        "bucket",
        "daily",
        "defaults",
        "draw_amount_minor",
        "draws",
        "last_draw_at_ms",
        "lenders",
        "repaid_amount_minor",
        "repayments",
        "seen",
        "version",
    )

    def __init__(self, daily: bool, bucket: int) -> None:
        self.daily = daily
        self.bucket = bucket
        self.version = -1
        self.draws = 0
        self.draw_amount_minor = 0
        self.repayments = 0
        self.repaid_amount_minor = 0
        self.defaults = 0
        self.lenders: set[str] = set()
        self.last_draw_at_ms: int | None = None
        self.seen: set[int] = set()

    def add(self, ev: dict[str, Any], version: int) -> None:
        kind = ev["event_type"]
        amount = ev["amount_minor"] if ev["currency"] == REGISTRY_CURRENCY else 0
        if kind == DRAW:
            self.draws += 1
            self.draw_amount_minor += amount
            at = ev["occurred_at_ms"]
            if self.last_draw_at_ms is None or at > self.last_draw_at_ms:
                self.last_draw_at_ms = at
        elif kind == REPAYMENT:
            self.repayments += 1
            self.repaid_amount_minor += amount
        elif kind == DEFAULT:
            self.defaults += 1
        self.lenders.add(ev["lender_id"])
        self.version = version

    def to_avro(self) -> dict[str, Any]:
        return {
            "daily": self.daily,
            "bucket": self.bucket,
            "version": self.version,
            "draws": self.draws,
            "draw_amount_minor": self.draw_amount_minor,
            "repayments": self.repayments,
            "repaid_amount_minor": self.repaid_amount_minor,
            "defaults": self.defaults,
            "lenders": sorted(self.lenders),
            "last_draw_at_ms": self.last_draw_at_ms,
            "seen": list(self.seen) if self.daily else [],
        }

    @classmethod
    def from_avro(cls, rec: dict[str, Any]) -> Bucket:
        b = cls(rec["daily"], rec["bucket"])
        b.version = rec["version"]
        b.draws = rec["draws"]
        b.draw_amount_minor = rec["draw_amount_minor"]
        b.repayments = rec["repayments"]
        b.repaid_amount_minor = rec["repaid_amount_minor"]
        b.defaults = rec["defaults"]
        b.lenders = set(rec["lenders"])
        b.last_draw_at_ms = rec["last_draw_at_ms"]
        b.seen = set(rec["seen"])
        return b


class RecentDraw:
    """One draw remembered for the velocity-alert rules (:mod:`streams.alerts`)."""

    __slots__ = ("at_ms", "fired", "key", "lender")

    def __init__(self, at_ms: int, lender: str, key: int, fired: list[str] | None = None) -> None:
        self.at_ms = at_ms
        self.lender = lender
        self.key = key
        #: names of the rules that fired AT this draw (each at most once)
        self.fired: list[str] = fired if fired is not None else []

    def to_avro(self) -> dict[str, Any]:
        return {"at_ms": self.at_ms, "lender": self.lender, "key": self.key,
                "fired": list(self.fired)}

    @classmethod
    def from_avro(cls, rec: dict[str, Any]) -> RecentDraw:
        return cls(rec["at_ms"], rec["lender"], rec["key"], list(rec["fired"]))


@dataclass(slots=True)
class PendingCancel:
    """An admitted cancel whose event was not in state when it came.

    ``report``: the event had never reached the registry (no de-duplication mark), so if it
    has not arrived by ``expires_at_ms`` (the cancel's time + the de-duplication horizon, in
    event time) the cancel is reported as CANCEL_UNMATCHED. Otherwise (the event arrived
    before, and its day already left state or it was not admitted) the entry only guards
    against a replay of that event after a crash and expires silently after the grace period.
    Fields as in the Avro record ``PendingCancel`` (``borrower_state.v4.avsc``).
    """

    target: int
    expires_at_ms: int
    lender_id: str
    event_id: str
    source_topic: str
    source_partition: int
    source_offset: int
    report: bool

    def to_avro(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_avro(cls, rec: dict[str, Any]) -> PendingCancel:
        return cls(**rec)


@dataclass(slots=True)
class BorrowerState:
    """Everything the aggregation step knows about one borrower.

    ``recent_draws`` (sorted by ``(at_ms, key)``) and ``draws_evicted_through_ms`` belong to
    :mod:`streams.alerts`; a v1 changelog value decodes with an empty list and the lowest mark.
    """

    hours: dict[int, Bucket] = field(default_factory=dict)
    days: dict[int, Bucket] = field(default_factory=dict)
    hours_evicted_through: int = -(2**62)
    days_evicted_through: int = -(2**31)
    recent_draws: list[RecentDraw] = field(default_factory=list)
    draws_evicted_through_ms: int = -(2**62)
    #: the highest version this borrower's rows were emitted with (see :mod:`streams.aggregation`)
    last_version: int = -1
    #: local days whose buckets left state because a cancel withdrew one of their events
    ledger_days: set[int] = field(default_factory=set)
    pending_cancels: list[PendingCancel] = field(default_factory=list)

    def to_avro(self) -> dict[str, Any]:
        return {
            "hours_evicted_through": self.hours_evicted_through,
            "days_evicted_through": self.days_evicted_through,
            "buckets": [b.to_avro() for b in (*self.hours.values(), *self.days.values())],
            "recent_draws": [d.to_avro() for d in self.recent_draws],
            "draws_evicted_through_ms": self.draws_evicted_through_ms,
            "last_version": self.last_version,
            "ledger_days": sorted(self.ledger_days),
            "pending_cancels": [c.to_avro() for c in self.pending_cancels],
        }

    @classmethod
    def from_avro(cls, rec: dict[str, Any]) -> BorrowerState:
        state = cls(
            hours_evicted_through=rec["hours_evicted_through"],
            days_evicted_through=rec["days_evicted_through"],
            recent_draws=[RecentDraw.from_avro(d) for d in rec.get("recent_draws", ())],
            draws_evicted_through_ms=rec.get("draws_evicted_through_ms", -(2**62)),
            last_version=rec.get("last_version", -1),
            ledger_days=set(rec.get("ledger_days", ())),
            pending_cancels=[PendingCancel.from_avro(c) for c in rec.get("pending_cancels", ())],
        )
        for raw in rec["buckets"]:
            b = Bucket.from_avro(raw)
            (state.days if b.daily else state.hours)[b.bucket] = b
        return state


@dataclass(slots=True)
class Outcome:
    """What one event did to state, for the emitter.

    ``hour``/``day`` is the bucket to (re-)emit as absolute state; ``recompute_hour`` /
    ``recompute_day`` names a bucket the sink must rebuild from the ledger.
    """

    duplicate: bool = False
    hour: Bucket | None = None
    day: Bucket | None = None
    recompute_hour: int | None = None
    recompute_day: int | None = None


@dataclass(slots=True)
class BucketPolicy:
    calendar: Calendar
    grace_ms: int
    hourly_state_ms: int
    #: False only as a test's negative control: replays are then counted again
    dedup: bool = True

    def evict(self, state: BorrowerState, stream_time_ms: int) -> None:
        """Drop buckets whose lateness allowance has passed; remember how far."""
        if state.ledger_days:
            for day in [d for d in state.ledger_days
                        if self.calendar.day_end_ms(d) + self.grace_ms <= stream_time_ms]:
                state.ledger_days.discard(day)
                state.days_evicted_through = max(state.days_evicted_through, day + 1)
        if state.days:
            for day in [d for d in state.days if self.calendar.day_end_ms(d) + self.grace_ms
                        <= stream_time_ms]:
                del state.days[day]
                state.days_evicted_through = max(state.days_evicted_through, day + 1)
        if state.hours:
            limit = stream_time_ms - self.hourly_state_ms - HOUR_MS
            for hour in [h for h in state.hours if h <= limit]:
                del state.hours[hour]
                state.hours_evicted_through = max(state.hours_evicted_through, hour + HOUR_MS)

    def cancel(self, state: BorrowerState, target: int) -> bool:
        """A cancel of the event with key ``target``: if a day bucket in state has seen it,
        that day and its hours leave state and the day becomes a ledger day (see the module
        docstring); returns whether it was found."""
        for day, bucket in state.days.items():
            if target in bucket.seen:
                del state.days[day]
                start, end = self.calendar.day_start_ms(day), self.calendar.day_end_ms(day)
                for hour in [h for h in state.hours if start <= h < end]:
                    del state.hours[hour]
                state.ledger_days.add(day)
                return True
        return False

    def apply(self, state: BorrowerState, ev: dict[str, Any], version: int,
              counts: bool = True, key: int | None = None) -> Outcome:
        """Apply one admitted event. Call :meth:`evict` first with the partition's stream time.

        ``counts=False``: the event was cancelled before it came; it is only recorded as seen
        (or, on the correction path, left to the ledger, where its cancel marks it). ``key``:
        the event's :func:`event_key` if the caller has it already."""
        at = ev["occurred_at_ms"]
        day = self.calendar.day_of(at)
        hour = at - at % HOUR_MS
        out = Outcome()

        day_bucket = state.days.get(day)
        if day_bucket is None and (day < state.days_evicted_through
                                   or day in state.ledger_days):
            # the day left state: both the day and (necessarily) its hour are rebuilt
            out.recompute_day = day
            out.recompute_hour = hour
            return out
        if day_bucket is None:
            day_bucket = state.days[day] = Bucket(True, day)
        if key is None:
            key = event_key(ev["lender_id"], ev["event_id"])
        if self.dedup and key in day_bucket.seen:
            out.duplicate = True
            out.day = day_bucket
            hour_bucket = state.hours.get(hour)
            if hour_bucket is not None:
                out.hour = hour_bucket
            else:
                out.recompute_hour = hour
            return out
        day_bucket.seen.add(key)
        if not counts:
            return out
        day_bucket.add(ev, version)
        out.day = day_bucket

        hour_bucket = state.hours.get(hour)
        if hour_bucket is None and hour < state.hours_evicted_through:
            out.recompute_hour = hour
            return out
        if hour_bucket is None:
            hour_bucket = state.hours[hour] = Bucket(False, hour)
        hour_bucket.add(ev, version)
        out.hour = hour_bucket
        return out
