"""The bucket policy of :mod:`streams.buckets`, as a pure function of (state, event, stream time):
a day bucket counts each event once, an event for a day or hour that left state asks the sink to
rebuild it from the ledger instead of starting a half-empty bucket, and eviction drops a bucket
exactly when its lateness allowance has passed, never lowering the eviction marks.

The registry's time zone here is Asia/Shanghai (UTC+8, no daylight saving time); local day
2025-03-14 is day 20161 since 1970-01-01 and starts at 2025-03-13T16:00Z.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from schemas.calendar import HOUR_MS, Calendar
from streams.buckets import BorrowerState, BucketPolicy

DAY = 20161  # 2025-03-14 in Asia/Shanghai
DAY_END_MS = 1_741_968_000_000  # 2025-03-15T00:00+08:00 = 2025-03-14T16:00Z
GRACE_MS = 72 * HOUR_MS
HOURLY_STATE_MS = 48 * HOUR_MS


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


AT = ms("2025-03-14T09:30:00+08:00")  # 01:30Z
HOUR = ms("2025-03-14T01:00:00+00:00")


def policy(dedup: bool = True) -> BucketPolicy:
    return BucketPolicy(Calendar(ZoneInfo("Asia/Shanghai")), GRACE_MS, HOURLY_STATE_MS,
                        dedup=dedup)


def event(event_id: str = "e-1", *, lender: str = "lender-a", kind: str = "draw",
          amount_minor: int = 125_000, currency: str = "CNY", at_ms: int = AT) -> dict[str, Any]:
    return {"lender_id": lender, "event_id": event_id, "event_type": kind,
            "amount_minor": amount_minor, "currency": currency, "occurred_at_ms": at_ms}


def test_the_fixed_points_of_these_tests_are_what_they_claim() -> None:
    calendar = Calendar(ZoneInfo("Asia/Shanghai"))
    assert calendar.day_of(AT) == DAY
    assert calendar.day_end_ms(DAY) == DAY_END_MS
    assert HOUR == AT - 30 * 60_000


def test_an_event_is_counted_in_its_local_day_and_its_utc_hour() -> None:
    state = BorrowerState()
    out = policy().apply(state, event(), version=7)
    assert not out.duplicate
    assert out.recompute_day is None and out.recompute_hour is None
    assert out.day is state.days[DAY] and out.hour is state.hours[HOUR]
    for bucket in (out.day, out.hour):
        assert (bucket.draws, bucket.draw_amount_minor, bucket.version) == (1, 125_000, 7)
        assert bucket.lenders == {"lender-a"} and bucket.last_draw_at_ms == AT
    assert out.day.daily and out.day.bucket == DAY
    assert not out.hour.daily and out.hour.bucket == HOUR


def test_a_second_delivery_of_an_event_is_a_duplicate_and_counts_nothing() -> None:
    state = BorrowerState()
    bucket_policy = policy()
    bucket_policy.apply(state, event(), version=7)
    again = bucket_policy.apply(state, event(), version=9)
    assert again.duplicate
    # the current absolute state is re-emitted, unchanged (version included)
    assert again.day is state.days[DAY] and again.hour is state.hours[HOUR]
    for bucket in (again.day, again.hour):
        assert (bucket.draws, bucket.draw_amount_minor, bucket.version) == (1, 125_000, 7)
    assert again.recompute_day is None and again.recompute_hour is None


def test_a_duplicate_whose_hour_left_state_re_emits_the_day_and_recomputes_the_hour() -> None:
    state = BorrowerState()
    bucket_policy = policy()
    bucket_policy.apply(state, event(), version=7)
    del state.hours[HOUR]
    state.hours_evicted_through = HOUR + HOUR_MS
    again = bucket_policy.apply(state, event(), version=9)
    assert again.duplicate
    assert again.day is state.days[DAY] and again.day.draws == 1
    assert again.hour is None and again.recompute_hour == HOUR
    assert state.hours == {}


def test_the_same_event_id_from_another_lender_is_another_event() -> None:
    state = BorrowerState()
    bucket_policy = policy()
    bucket_policy.apply(state, event("e-1", lender="lender-a"), version=7)
    out = bucket_policy.apply(state, event("e-1", lender="lender-b"), version=8)
    assert not out.duplicate
    assert (out.day.draws, out.day.draw_amount_minor) == (2, 250_000)
    assert out.day.lenders == {"lender-a", "lender-b"}
    assert len(out.day.seen) == 2


def test_with_dedup_off_a_replay_is_counted_again() -> None:
    """The negative control the exactness tests rely on: without dedup the replay shows."""
    state = BorrowerState()
    bucket_policy = policy(dedup=False)
    bucket_policy.apply(state, event(), version=7)
    again = bucket_policy.apply(state, event(), version=9)
    assert not again.duplicate
    assert (again.day.draws, again.day.draw_amount_minor, again.day.version) == (2, 250_000, 9)


def test_each_kind_counts_in_its_own_column_and_a_foreign_currency_adds_no_amount() -> None:
    state = BorrowerState()
    bucket_policy = policy()
    later = AT + 600_000
    bucket_policy.apply(state, event("d-1", at_ms=AT), version=1)
    bucket_policy.apply(state, event("d-2", amount_minor=999, currency="USD", at_ms=later),
                        version=2)
    bucket_policy.apply(state, event("r-1", kind="repayment", amount_minor=40_050), version=3)
    bucket_policy.apply(state, event("r-2", kind="repayment", amount_minor=5, currency="USD"),
                        version=4)
    out = bucket_policy.apply(state, event("x-1", kind="default", amount_minor=1), version=5)
    day = out.day
    assert (day.draws, day.draw_amount_minor) == (2, 125_000)
    assert (day.repayments, day.repaid_amount_minor) == (2, 40_050)
    assert day.defaults == 1
    assert day.last_draw_at_ms == later
    assert day.version == 5


def test_days_are_local_days_of_the_registry_time_zone() -> None:
    state = BorrowerState()
    bucket_policy = policy()
    # 23:30 and 00:30 local are one UTC day (15:30Z, 16:30Z) but two local days
    late = bucket_policy.apply(state, event("e-1", at_ms=ms("2025-03-14T23:30:00+08:00")), 1)
    early = bucket_policy.apply(state, event("e-2", at_ms=ms("2025-03-15T00:30:00+08:00")), 2)
    assert (late.day.bucket, early.day.bucket) == (DAY, DAY + 1)
    assert (late.hour.bucket, early.hour.bucket) == (ms("2025-03-14T15:00:00+00:00"),
                                                     ms("2025-03-14T16:00:00+00:00"))


def test_an_event_for_an_evicted_day_asks_to_rebuild_its_day_and_hour_and_keeps_nothing() -> None:
    state = BorrowerState(days_evicted_through=DAY + 1)
    out = policy().apply(state, event(), version=7)
    assert (out.recompute_day, out.recompute_hour) == (DAY, HOUR)
    assert out.day is None and out.hour is None and not out.duplicate
    assert state.days == {} and state.hours == {}


def test_an_event_for_an_evicted_hour_of_a_live_day_counts_the_day_and_rebuilds_the_hour() -> None:
    state = BorrowerState(hours_evicted_through=HOUR + HOUR_MS)
    out = policy().apply(state, event(), version=7)
    assert out.day is state.days[DAY] and out.day.draws == 1
    assert out.hour is None and out.recompute_hour == HOUR and out.recompute_day is None
    assert state.hours == {}


def test_a_day_is_evicted_exactly_when_its_grace_has_passed() -> None:
    state = BorrowerState()
    bucket_policy = policy()
    bucket_policy.apply(state, event(), version=7)
    bucket_policy.evict(state, DAY_END_MS + GRACE_MS - 1)
    assert list(state.days) == [DAY]
    assert state.days_evicted_through == -(2**31)
    bucket_policy.evict(state, DAY_END_MS + GRACE_MS)
    assert state.days == {}
    assert state.days_evicted_through == DAY + 1


def test_an_hour_is_evicted_exactly_when_its_state_allowance_has_passed() -> None:
    state = BorrowerState()
    bucket_policy = policy()
    bucket_policy.apply(state, event(), version=7)
    hour_end = HOUR + HOUR_MS
    bucket_policy.evict(state, hour_end + HOURLY_STATE_MS - 1)
    assert list(state.hours) == [HOUR]
    assert state.hours_evicted_through == -(2**62)
    bucket_policy.evict(state, hour_end + HOURLY_STATE_MS)
    assert state.hours == {}
    assert state.hours_evicted_through == hour_end
    # the day (72 h of grace) outlives its hours (48 h of state)
    assert list(state.days) == [DAY]


def test_eviction_never_lowers_the_marks() -> None:
    state = BorrowerState()
    bucket_policy = policy()
    bucket_policy.apply(state, event(), version=7)
    state.days_evicted_through = DAY + 10
    state.hours_evicted_through = HOUR + 10 * HOUR_MS
    bucket_policy.evict(state, DAY_END_MS + GRACE_MS)
    assert state.days == {} and state.hours == {}
    assert state.days_evicted_through == DAY + 10
    assert state.hours_evicted_through == HOUR + 10 * HOUR_MS


def test_eviction_keeps_the_buckets_still_inside_their_allowance() -> None:
    state = BorrowerState()
    bucket_policy = policy()
    next_day_at = ms("2025-03-15T09:30:00+08:00")
    bucket_policy.apply(state, event("e-1"), version=1)
    bucket_policy.apply(state, event("e-2", at_ms=next_day_at), version=2)
    bucket_policy.evict(state, DAY_END_MS + GRACE_MS)
    assert list(state.days) == [DAY + 1]
    assert state.days_evicted_through == DAY + 1
    # an event of the evicted day now takes the rebuild path, one of the next day counts
    assert policy().apply(state, event("e-3"), version=3).recompute_day == DAY
    assert bucket_policy.apply(state, event("e-4", at_ms=next_day_at), 4).day.draws == 2
