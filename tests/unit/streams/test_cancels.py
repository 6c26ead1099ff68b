"""Cancels in the aggregation step (README, Corrections; :mod:`streams.buckets`).

Each test drives :class:`streams.aggregation.Aggregator` batch by batch with the state stored
through its Avro codec between batches (as the Faust table does), so the state's encoding is
exercised too. Grace 72 h, hourly state 48 h, de-duplication horizon 90 days.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from schemas.calendar import HOUR_MS, Calendar
from streams.aggregation import Aggregator, Processed, StateCodec
from streams.alerts import AlertRules
from streams.buckets import BucketPolicy, event_key

T0 = 1_790_000_000_000  # 2026-09-21T14:13:20Z
DAY_MS = 24 * HOUR_MS
ANN, BOB = "a" * 32, "b" * 32
CAL = Calendar(ZoneInfo("Asia/Shanghai"))


def event(event_id: str, at: int, *, borrower: str = ANN, kind: str = "draw",
          lender: str = "lender-a", cancels: str | None = None,
          received: bool = False) -> dict[str, Any]:
    ev = {"borrower": borrower, "lender_id": lender, "event_id": event_id, "loan_id": "l",
          "event_type": kind, "amount_minor": 0 if cancels else 100, "currency": "CNY",
          "occurred_at_ms": at, "product": None, "admitted_at_ms": at,
          "cancels_event_id": cancels, "source_topic": f"lenders.{lender}.loans",
          "source_partition": 0, "source_offset": 7}
    if cancels is not None:
        ev["target_received"] = received
    return ev


def cancel(event_id: str, at: int, target: str, **kw: Any) -> dict[str, Any]:
    return event(event_id, at, kind="cancel", cancels=target, **kw)


class Stream:
    """One partition: the aggregator, the stored states and the pending-cancel index."""

    def __init__(self, rules: AlertRules | None = None) -> None:
        self.agg = Aggregator(BucketPolicy(CAL, 72 * HOUR_MS, 48 * HOUR_MS), rules,
                              pending_ms=90 * DAY_MS)
        self.codec = StateCodec()
        self.stored: dict[str, bytes] = {}
        self.index: dict[str, int] = {}
        self.offset = 0

    def run(self, *events: dict[str, Any]) -> Processed:
        self.offset += 1
        out = self.agg.process(0, self.offset, list(events),
                               lambda b: self.codec.load(self.stored.get(b)),
                               pending_index=self.index)
        for borrower, state in out.states.items():
            self.stored[borrower] = self.codec.dump(state)
        return out

    def state(self, borrower: str = ANN) -> Any:
        return self.codec.load(self.stored.get(borrower))


def daily(out: Processed) -> list[tuple[int, int]]:
    return [(r["bucket"], r["draws"]) for r in out.activity["buckets"] if r["daily"]]


def test_a_cancel_of_an_event_in_state_sends_its_day_to_the_ledger() -> None:
    s = Stream()
    s.run(event("e1", T0), event("e2", T0 + 60_000))
    out = s.run(cancel("c1", T0 + 120_000, "e1"))
    day = CAL.day_of(T0)
    # the cancel is a ledger row naming its event, and touches no bucket itself
    assert [(r["event_type"], r["cancels_event_id"]) for r in out.activity["ledger"]] == [
        ("cancel", "e1")]
    assert out.activity["buckets"] == [] and out.activity["recomputes"] == []
    state = s.state()
    assert day not in state.days and state.hours == {} and state.ledger_days == {day}
    assert state.pending_cancels == []
    # a later event of that day takes the correction path (the sink rebuilds from the ledger)
    later = s.run(event("e3", T0 + 180_000))
    assert later.activity["buckets"] == []
    assert {(r["daily"], r["bucket"]) for r in later.activity["recomputes"]} == {
        (True, day), (False, (T0 + 180_000) // HOUR_MS * HOUR_MS)}
    # and the day leaves the ledger days when its grace ends, like an evicted day
    s.run(event("e4", T0 + 5 * DAY_MS))
    state = s.state()
    assert state.ledger_days == set() and state.days_evicted_through == day + 1


def test_a_cancel_before_its_event_wins_when_the_event_arrives() -> None:
    s = Stream()
    out = s.run(cancel("c1", T0 + 60_000, "e1"))
    assert s.index == {ANN: T0 + 60_000 + 90 * DAY_MS}
    assert [(c.target, c.report) for c in s.state().pending_cancels] == [
        (event_key("lender-a", "e1"), True)]
    out = s.run(event("e1", T0), event("e2", T0 + 1_000))
    assert daily(out) == [(CAL.day_of(T0), 1)]  # e2 only
    assert len(out.activity["ledger"]) == 2  # e1 is kept in the ledger, marked by c1
    state = s.state()
    assert state.pending_cancels == [] and s.index == {}
    assert event_key("lender-a", "e1") in state.days[CAL.day_of(T0)].seen  # replays recognised
    assert not out.unmatched


def test_another_lenders_event_with_the_same_id_is_untouched() -> None:
    s = Stream()
    s.run(cancel("c1", T0, "e1"))
    out = s.run(event("e1", T0, lender="lender-b"))
    assert daily(out) == [(CAL.day_of(T0), 1)]
    assert len(s.state().pending_cancels) == 1


def test_an_unmatched_cancel_is_reported_once_when_its_partition_passes_the_horizon() -> None:
    s = Stream()
    s.run(cancel("c1", T0, "never"))
    assert s.run(event("x", T0 + 89 * DAY_MS, borrower=BOB)).unmatched == []
    # another borrower's event moves the partition's stream time past the horizon: Ann's
    # state is loaded through the index, though Ann is not in the batch
    out = s.run(event("y", T0 + 91 * DAY_MS, borrower=BOB))
    assert [(c.event_id, c.lender_id, c.source_offset) for c in out.unmatched] == [
        ("c1", "lender-a", 7)]
    assert out.index_changed and s.index == {} and s.state().pending_cancels == []
    assert s.run(event("z", T0 + 92 * DAY_MS, borrower=BOB)).unmatched == []


def test_a_cancel_of_an_event_received_before_but_out_of_state_is_not_reported() -> None:
    """Its event reached the registry earlier (its day evicted, or it was refused): the sink
    corrects the ledger's buckets; the entry only guards against a replay of that event and
    goes silently after the grace period."""
    s = Stream()
    s.run(cancel("c1", T0, "old", received=True))
    [pending] = s.state().pending_cancels
    assert not pending.report and pending.expires_at_ms == T0 + 72 * HOUR_MS
    out = s.run(event("x", T0 + 4 * DAY_MS, borrower=BOB))
    assert out.unmatched == [] and s.index == {} and s.state().pending_cancels == []


def test_a_cancel_replayed_or_sent_twice_changes_nothing_more() -> None:
    s = Stream()
    s.run(cancel("c1", T0, "e1"))
    s.run(cancel("c1", T0, "e1"), cancel("c2", T0 + 1, "e1"))
    assert len(s.state().pending_cancels) == 1
    s2 = Stream()
    s2.run(event("e1", T0), event("e2", T0 + 1))
    s2.run(cancel("c1", T0 + 2, "e1"))
    again = s2.run(cancel("c1", T0 + 2, "e1", received=True))
    state = s2.state()
    assert again.activity["buckets"] == [] and state.ledger_days == {CAL.day_of(T0)}
    # the second time the event is no longer in state: kept only as a replay guard
    assert [c.report for c in state.pending_cancels] == [False]


def test_a_cancelled_draw_counts_in_no_later_alert_window() -> None:
    s = Stream(AlertRules.standard(draws_24h=3, lenders_7d=0, grace_ms=72 * HOUR_MS))
    s.run(event("e1", T0), event("e2", T0 + 1_000))
    s.run(cancel("c1", T0 + 2_000, "e1"))
    assert [d.key for d in s.state().recent_draws] == [event_key("lender-a", "e2")]
    assert s.run(event("e3", T0 + 3_000)).alerts == []  # 2 live draws in 24 h, not 3
    assert len(s.run(event("e4", T0 + 4_000)).alerts) == 1
