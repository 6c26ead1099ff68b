"""Velocity alerts: rule semantics, replays, and the borrower-state schema upgrade (no services)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastavro import parse_schema, schemaless_writer

from schemas.calendar import HOUR_MS, Calendar
from schemas.codec import MAGIC, codec_for, fingerprint
from streams.aggregation import Aggregator, StateCodec
from streams.alerts import ALERT_SCHEMA, DAY_MS, DRAWS_24H, LENDERS_7D, AlertRules, alert_id
from streams.buckets import BorrowerState, BucketPolicy, event_key

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_790_000_000_000  # 2026-09-21, any instant will do
BORROWER = "b" * 64
GRACE_MS = 72 * HOUR_MS
_seq = iter(range(10**9))


def draw(at_ms: int, lender: str = "lender-a", event_id: str | None = None,
         kind: str = "draw") -> dict[str, Any]:
    return {
        "borrower": BORROWER, "lender_id": lender, "event_id": event_id or f"ev-{next(_seq)}",
        "loan_id": "loan-1", "event_type": kind, "amount_minor": 100_00, "currency": "CNY",
        "occurred_at_ms": at_ms, "product": None, "admitted_at_ms": at_ms,
    }  # fmt: skip


def aggregator(draws_24h: int = 5, lenders_7d: int = 3) -> Aggregator:
    policy = BucketPolicy(Calendar(ZoneInfo("Asia/Shanghai")), GRACE_MS, 48 * HOUR_MS)
    return Aggregator(policy, AlertRules.standard(draws_24h, lenders_7d, GRACE_MS))


class Run:
    """Feeds single-event batches through one aggregator and one stored state."""

    def __init__(self, agg: Aggregator | None = None) -> None:
        self.agg = agg or aggregator()
        self.codec = StateCodec()
        self.stored: bytes | None = None
        self.offset = 0

    def feed(self, *events: dict[str, Any]) -> list[Any]:
        alerts = []
        for ev in events:
            out = self.agg.process(0, self.offset, [ev], lambda _b: self.codec.load(self.stored))
            self.offset += 1
            self.stored = self.codec.dump(out.states[BORROWER])
            alerts.extend(out.alerts)
        return alerts


def ten_a_month() -> list[dict[str, Any]]:
    """One draw every three days for a month, one lender."""
    return [draw(T0 + i * 3 * DAY_MS) for i in range(10)]


def test_five_draws_in_three_hours_fire_draws_24h_exactly_once() -> None:
    run = Run()
    assert run.feed(*ten_a_month()[:5]) == []
    burst_start = T0 + 14 * DAY_MS + HOUR_MS  # between two of the regular draws
    burst = [draw(burst_start + i * 45 * 60_000) for i in range(5)]  # 3 h 0 min
    alerts = run.feed(*burst, *ten_a_month()[5:])
    assert [a.rule for a in alerts] == [DRAWS_24H]
    (alert,) = alerts
    fifth = burst[4]
    assert alert.alert_id == alert_id(BORROWER, DRAWS_24H,
                                      event_key(fifth["lender_id"], fifth["event_id"]))
    assert (alert.count, alert.threshold) == (5, 5)
    assert alert.triggered_at_ms == alert.window_end_ms == fifth["occurred_at_ms"]
    assert alert.window_start_ms == fifth["occurred_at_ms"] - DAY_MS + 1
    assert alert.lenders == ("lender-a",)
    assert not alert.reemitted


def test_seven_draws_fire_once_and_again_after_the_window_slid() -> None:
    run = Run()
    first = run.feed(*(draw(T0 + i * 10 * 60_000) for i in range(7)))
    assert len(first) == 1 and first[0].count == 5
    # 20 h later: the earlier alert is still inside the trailing 24 h -> no second alert
    assert run.feed(*(draw(T0 + 20 * HOUR_MS + i * 60_000) for i in range(5))) == []
    # two days later the window has slid past the alert: a new crossing fires again
    again = run.feed(*(draw(T0 + 2 * DAY_MS + i * 60_000) for i in range(5)))
    assert [a.count for a in again] == [5]


def test_four_draws_in_24_hours_do_not_fire() -> None:
    run = Run()
    assert run.feed(*(draw(T0 + i * 6 * HOUR_MS) for i in range(4))) == []
    # a fifth draw 24 h after the first one is outside that window: still four
    assert run.feed(draw(T0 + DAY_MS)) == []


def test_three_lenders_within_seven_days_fire_lenders_7d() -> None:
    run = Run()
    events = [draw(T0, "lender-a"), draw(T0 + 2 * DAY_MS, "lender-b"),
              draw(T0 + 3 * DAY_MS, "lender-a"), draw(T0 + 6 * DAY_MS, "lender-c")]
    alerts = run.feed(*events)
    assert [(a.rule, a.count, a.lenders) for a in alerts] == [
        (LENDERS_7D, 3, ("lender-a", "lender-b", "lender-c"))]
    assert alerts[0].triggered_at_ms == T0 + 6 * DAY_MS


def test_three_lenders_spread_over_more_than_seven_days_do_not_fire() -> None:
    run = Run()
    assert run.feed(draw(T0, "lender-a"), draw(T0 + 4 * DAY_MS, "lender-b"),
                    draw(T0 + 7 * DAY_MS, "lender-c")) == []


def test_replaying_the_same_events_raises_nothing_new() -> None:
    run = Run()
    events = [draw(T0 + i * HOUR_MS, lender) for i, lender in
              enumerate(["lender-a", "lender-b", "lender-c", "lender-a", "lender-b"])]
    first = run.feed(*events)
    assert sorted(a.rule for a in first) == [DRAWS_24H, LENDERS_7D]
    replayed = run.feed(*events)
    # re-emissions only: the same ids again, nothing new
    assert all(a.reemitted for a in replayed)
    assert {a.alert_id for a in replayed} == {a.alert_id for a in first}
    assert run.feed(draw(T0 + 5 * HOUR_MS, "lender-c")) == []  # still inside both windows


def test_replay_with_lost_state_raises_the_same_ids() -> None:
    events = [draw(T0 + i * HOUR_MS) for i in range(6)]
    first, again = Run().feed(*events), Run().feed(*events)
    assert [a.alert_id for a in first] == [a.alert_id for a in again]
    assert len(first) == 1


def test_out_of_order_arrival_still_fires() -> None:
    run = Run()
    times = [T0 + i * 10 * 60_000 for i in range(5)]
    alerts = run.feed(*(draw(t) for t in [times[4], times[0], times[2], times[1], times[3]]))
    assert [(a.rule, a.count, a.triggered_at_ms) for a in alerts] == [(DRAWS_24H, 5, times[4])]


def test_repayments_do_not_count_and_a_zero_threshold_switches_a_rule_off() -> None:
    run = Run(aggregator(draws_24h=0))
    events = [draw(T0 + i * 60_000, f"lender-{i % 3}") for i in range(6)]
    assert [a.rule for a in run.feed(*events)] == [LENDERS_7D]
    run = Run()
    assert run.feed(*(draw(T0 + i * 60_000, kind="repayment") for i in range(6))) == []


def test_draws_older_than_the_retention_are_not_judged() -> None:
    run = Run()
    run.feed(draw(T0 + 30 * DAY_MS))  # stream time moves on
    stale = [draw(T0 + i * 60_000) for i in range(5)]  # 30 days late: correction path
    assert run.feed(*stale) == []
    state = run.codec.load(run.stored)
    assert [d.at_ms for d in state.recent_draws] == [T0 + 30 * DAY_MS]
    assert state.draws_evicted_through_ms == T0 + 30 * DAY_MS - 7 * DAY_MS - GRACE_MS


def test_late_draws_within_grace_take_the_correction_path_but_still_count() -> None:
    run = Run()
    run.feed(draw(T0 + 5 * DAY_MS + 20 * HOUR_MS))  # T0's day is past its grace period
    late = [draw(T0 + i * 60_000) for i in range(5)]
    out = run.agg.process(0, run.offset, late, lambda _b: run.codec.load(run.stored))
    assert any(fix["daily"] for fix in out.activity["recomputes"])  # the correction path
    assert [a.rule for a in out.alerts] == [DRAWS_24H]


def test_alert_record_round_trips_through_the_codec() -> None:
    run = Run()
    (alert,) = run.feed(*(draw(T0 + i * 60_000) for i in range(5)))
    codec = codec_for(ALERT_SCHEMA)
    record = codec.decode(codec.encode(alert.to_avro(emitted_at_ms=T0 + 1)))
    assert record == alert.to_avro(emitted_at_ms=T0 + 1)


def test_v1_borrower_state_decodes_with_the_v2_codec() -> None:
    v1 = json.loads((ROOT / "schemas/avro/borrower_state.v1.avsc").read_text())
    bucket = {"daily": True, "bucket": 20_000, "version": 7, "draws": 1,
              "draw_amount_minor": 100, "repayments": 0, "repaid_amount_minor": 0,
              "defaults": 0, "lenders": ["lender-a"], "last_draw_at_ms": T0, "seen": [42]}
    buf = io.BytesIO()
    buf.write(MAGIC + fingerprint(v1))
    schemaless_writer(buf, parse_schema(v1, {}), {
        "hours_evicted_through": 5, "days_evicted_through": 6, "buckets": [bucket]})
    codec = StateCodec()
    assert codec._codec.fingerprint != fingerprint(v1)  # the codec writes v2
    state = codec.load(buf.getvalue())
    assert state.recent_draws == [] and state.draws_evicted_through_ms == -(2**62)
    assert (state.hours_evicted_through, state.days_evicted_through) == (5, 6)
    assert state.days[20_000].seen == {42}
    again = codec.load(codec.dump(state))
    assert again.to_avro() == state.to_avro() and isinstance(again, BorrowerState)
