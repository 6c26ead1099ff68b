"""Aggregation: one admitted batch -> activity items for the sink + updated borrower states.

Runs per batch record of ``registry.validated`` (validated events of one partition from one
bulk read), on the events admission admitted. For each event, in order: advance the
partition's stream time, evict the borrower's expired buckets, apply the event
(:mod:`streams.buckets`). The output for the batch is, in this order: every event as a
ledger row, then each touched bucket's final absolute state once, then the recomputes. Ledger
rows come first because a recompute reads them back from ClickHouse. After the buckets, each
event is shown to the velocity-alert rules (:mod:`streams.alerts`); the alerts it raises are
returned beside the items, in event order.

Cancels (README, Corrections; the state side is :mod:`streams.buckets`): a cancel is a ledger
row (with ``cancels_event_id``) and nothing else; it takes its event out of state, or is kept
pending until its event arrives. Pending cancels expire in event time: each partition keeps an
index of the borrowers holding them (``pending_index``: borrower -> earliest expiry), so an
expired one is handled when the partition's stream time passes it, even if its borrower is
never seen again; the expired cancels that must be reported come back in
:attr:`Processed.unmatched`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from schemas.codec import codec_for
from streams.alerts import Alert, AlertRules
from streams.buckets import (
    CANCEL,
    DRAW,
    BorrowerState,
    Bucket,
    BucketPolicy,
    PendingCancel,
    event_key,
)

STATE_SCHEMA = "registry.internal.BorrowerState"
#: versions are ``offset * VERSION_STRIDE + index``; an admitted batch never holds more events
VERSION_STRIDE = 65536
#: versions of the ``registry.validated`` era start here, above every version written from
#: ``registry.admitted`` offsets before bulk intake existed, so a migrated deployment's new
#: rows outrank its old ones (offsets stay below 2**40 for any real topic)
VERSION_BASE = 1 << 56

_LEDGER_FIELDS = ("lender_id", "event_id", "loan_id", "event_type", "amount_minor", "currency",
                  "occurred_at_ms", "product", "admitted_at_ms", "cancels_event_id")


def bucket_row(borrower: str, b: Bucket) -> dict[str, Any]:
    """A ``registry.internal.BucketRow``: the absolute state of one bucket."""
    return {
        "daily": b.daily,
        "borrower": borrower,
        "bucket": b.bucket,
        "version": b.version,
        "draws": b.draws,
        "draw_amount_minor": b.draw_amount_minor,
        "repayments": b.repayments,
        "repaid_amount_minor": b.repaid_amount_minor,
        "defaults": b.defaults,
        "lenders": sorted(b.lenders),
        "last_draw_at_ms": b.last_draw_at_ms,
    }


def activity_record(ledger: list[dict[str, Any]], buckets: list[dict[str, Any]],
                    recomputes: list[dict[str, Any]],
                    erasures: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A ``registry.internal.ActivityBatch`` (v3: typed arrays; the legacy ``items`` empty)."""
    return {"items": [], "ledger": ledger, "buckets": buckets, "recomputes": recomputes,
            "erasures": erasures or []}


class StateCodec:
    """Borrower state <-> bytes for the Faust table's changelog (Avro, evolvable)."""

    def __init__(self) -> None:
        self._codec = codec_for(STATE_SCHEMA)

    def load(self, raw: bytes | None) -> BorrowerState:
        return BorrowerState() if raw is None else BorrowerState.from_avro(self._codec.decode(raw))

    def dump(self, state: BorrowerState) -> bytes:
        return self._codec.encode(state.to_avro())


def _arrived(state: BorrowerState, key: int) -> bool:
    """The event ``key`` arrived: drop the pending cancels naming it; True if there were."""
    pending = state.pending_cancels
    kept = [c for c in pending if c.target != key]
    if len(kept) == len(pending):
        return False
    state.pending_cancels = kept
    return True


class Processed(NamedTuple):
    """The outcome of one admitted batch."""

    #: the ``registry.activity`` record (:func:`activity_record`): ledger rows, bucket
    #: states, recomputes
    activity: dict[str, Any]
    #: every borrower state the batch touched; store them all
    states: dict[str, BorrowerState]
    #: alerts for ``registry.alerts``: new ones and re-emissions (``Alert.reemitted``)
    alerts: list[Alert]
    #: cancels whose event never came within the horizon: report each (CANCEL_UNMATCHED)
    unmatched: list[PendingCancel]
    #: whether ``pending_index`` changed (store it with the states)
    index_changed: bool


class Aggregator:
    def __init__(self, policy: BucketPolicy, rules: AlertRules | None = None,
                 pending_ms: int = 90 * 86_400_000) -> None:
        """``pending_ms``: how long (event time) a cancel waits for an event the registry
        never received before it is reported: the de-duplication horizon, DEDUP_TTL_DAYS."""
        self._policy = policy
        self._rules = rules if rules is not None else AlertRules((), 0)
        self._pending_ms = pending_ms
        #: per partition: the largest event time this worker processed. Kept on purpose when
        #: the partition is revoked (one entry per partition): should it come back, the events
        #: behind the value are in the partition's state already; a value that lags the
        #: partition's real stream time (as the 0 of a restarted worker does) only delays
        #: eviction and alert pruning.
        self._stream_time: dict[int, int] = {}

    def process(
        self,
        partition: int,
        offset: int,
        events: Sequence[dict[str, Any]],
        load: Callable[[str], BorrowerState],
        indices: Sequence[int] | None = None,
        pending_index: dict[str, int] | None = None,
    ) -> Processed:
        """Apply one admitted batch; see :class:`Processed` for what comes back.

        ``indices`` are the events' positions in the batch record they came from (default
        0, 1, ...): an event's version is ``offset * VERSION_STRIDE + index``, so it does not
        depend on which other events of the record were admitted. ``pending_index`` is the
        partition's index of pending cancels (module docstring), updated in place.
        """
        index = {} if pending_index is None else pending_index
        states: dict[str, BorrowerState] = {}
        ledger: list[dict[str, Any]] = []
        buckets: dict[tuple[str, bool, int], Bucket] = {}
        recomputes: dict[tuple[str, str, int], int] = {}
        alerts: list[Alert] = []
        stream_time = self._stream_time.get(partition, 0)
        for n, ev in enumerate(events):
            position = n if indices is None else indices[n]
            borrower = ev["borrower"]
            stream_time = max(stream_time, ev["occurred_at_ms"])
            state = states.get(borrower)
            if state is None:
                state = states[borrower] = load(borrower)
            # the record's position, or one above the borrower's newest row if that is higher
            # (older records re-delivered after newer ones must still produce newer rows)
            version = max(VERSION_BASE + offset * VERSION_STRIDE + position,
                          state.last_version + 1)
            state.last_version = version
            self._policy.evict(state, stream_time)
            row = {f: ev.get(f) for f in _LEDGER_FIELDS}
            row["borrower"] = borrower
            row["version"] = version
            ledger.append(row)
            key = event_key(ev["lender_id"], ev["event_id"])
            counts = not state.pending_cancels or not _arrived(state, key)
            if ev["event_type"] == CANCEL:
                self._cancel(state, ev)
                continue
            out = self._policy.apply(state, ev, version, counts, key)
            if ev["event_type"] == DRAW and counts:
                alerts.extend(self._rules.observe(
                    state, ev, key, stream_time_ms=stream_time, duplicate=out.duplicate))
            else:
                self._rules.prune(state, stream_time)
            for b in (out.day, out.hour):
                if b is not None:
                    buckets[(borrower, b.daily, b.bucket)] = b
            if out.recompute_day is not None:
                recomputes[(borrower, "recompute_daily", out.recompute_day)] = version
            if out.recompute_hour is not None:
                recomputes[(borrower, "recompute_hourly", out.recompute_hour)] = version
        self._stream_time[partition] = stream_time
        unmatched, index_changed = self._expire(states, index, load, stream_time)
        rows = [bucket_row(borrower, b) for (borrower, _, _), b in buckets.items()]
        fixes = [{"daily": kind == "recompute_daily", "borrower": borrower, "bucket": bucket,
                  "version": version}
                 for (borrower, kind, bucket), version in recomputes.items()]
        return Processed(activity_record(ledger, rows, fixes), states, alerts, unmatched,
                         index_changed)

    def _cancel(self, state: BorrowerState, ev: dict[str, Any]) -> None:
        """An admitted cancel: out of state if its event is there, else pending."""
        target = event_key(ev["lender_id"], ev["cancels_event_id"])
        self._rules.forget(state, target)
        if self._policy.cancel(state, target):
            return
        if any(c.target == target for c in state.pending_cancels):
            return  # a second cancel of it, or this one again (a replay)
        report = not ev.get("target_received", False)
        wait = self._pending_ms if report else self._policy.grace_ms
        state.pending_cancels.append(PendingCancel(
            target, ev["occurred_at_ms"] + wait, ev["lender_id"], ev["event_id"],
            ev["source_topic"], ev["source_partition"], ev["source_offset"], report))

    def _expire(self, states: dict[str, BorrowerState], index: dict[str, int],
                load: Callable[[str], BorrowerState], stream_time: int,
                ) -> tuple[list[PendingCancel], bool]:
        """Drop the pending cancels whose time has come, of the borrowers this batch touched
        and of those the partition's index says are due; keep the index in step."""
        due = [b for b, at in index.items() if at <= stream_time] if index else []
        changed = False
        for borrower in due:
            if borrower not in states:
                state = load(borrower)
                if state.pending_cancels:
                    states[borrower] = state
                else:  # a stale entry (the state was erased): never write a state for it
                    del index[borrower]
                    changed = True
        unmatched: list[PendingCancel] = []
        for borrower, state in states.items():
            pending = state.pending_cancels
            if pending:
                kept = [c for c in pending if c.expires_at_ms > stream_time]
                if len(kept) != len(pending):
                    unmatched.extend(c for c in pending
                                     if c.expires_at_ms <= stream_time and c.report)
                    state.pending_cancels = kept
                if kept:
                    earliest = min(c.expires_at_ms for c in kept)
                    if index.get(borrower) != earliest:
                        index[borrower] = earliest
                        changed = True
                    continue
            if index.pop(borrower, None) is not None:
                changed = True
        return unmatched, changed
