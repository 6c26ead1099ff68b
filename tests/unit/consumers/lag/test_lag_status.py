"""Status rules on hand-written offset histories, one sample every 2 s."""

from __future__ import annotations

import pytest

from consumers.lag.status import (
    LagSample,
    LagStatus,
    evaluate_partition,
    first_unconsumed,
    partition_lag,
    worst,
)

STEP_MS = 2000


def history(rows: list[tuple[int | None, int]], start_ms: int = 1_000_000) -> list[LagSample]:
    """Samples from (committed, end) pairs, lag = end - committed."""
    assert all(e >= (c or 0) for c, e in rows), "a committed offset beyond the log end"
    return [
        LagSample(start_ms + i * STEP_MS, c, e, e - (c or 0)) for i, (c, e) in enumerate(rows)
    ]


def test_no_samples_is_error() -> None:
    assert evaluate_partition([], members=1) is LagStatus.ERROR


def test_steady_zero_lag_is_ok() -> None:
    samples = history([(100 + 10 * i, 100 + 10 * i) for i in range(10)])
    assert evaluate_partition(samples, members=1) is LagStatus.OK


def test_catching_up_is_ok() -> None:
    # A backlog of 5000 shrinking by ~400 per sample while producers keep writing.
    samples = history([(1000 + 500 * i, 6000 + 100 * i) for i in range(10)])
    assert all(s.lag > 0 for s in samples)
    assert evaluate_partition(samples, members=2) is LagStatus.OK


def test_slow_consumer_is_warn() -> None:
    # Commits advance by 50 per sample, producers write 80: lag grows every step.
    samples = history([(1000 + 50 * i, 1100 + 80 * i) for i in range(10)])
    assert evaluate_partition(samples, members=1) is LagStatus.WARN


def test_lag_that_dips_once_is_not_warn() -> None:
    lags = [10, 20, 30, 25, 40, 50, 60, 70, 80, 90]
    samples = [LagSample(i * STEP_MS, 1000 + i, 1000 + i + lag, lag) for i, lag in enumerate(lags)]
    assert evaluate_partition(samples, members=1) is LagStatus.OK


def test_zero_lag_anywhere_in_window_is_ok() -> None:
    samples = history([(100, 100)] + [(100 + 10 * i, 120 + 20 * i) for i in range(1, 10)])
    assert evaluate_partition(samples, members=1) is LagStatus.OK


def test_stalled_consumer_with_members() -> None:
    # Group alive (1 member) but the committed offset is frozen while the log end moves on.
    samples = history([(500, 600 + 30 * i) for i in range(10)])
    assert evaluate_partition(samples, members=1) is LagStatus.STALLED


def test_stalled_with_unknown_membership_is_still_stalled() -> None:
    samples = history([(500, 600 + 30 * i) for i in range(10)])
    assert evaluate_partition(samples, members=None, stopped_after_s=1) is LagStatus.STALLED


def test_stopped_when_group_empty_and_commits_frozen_long_enough() -> None:
    # 45 samples * 2 s = 88 s without commit movement, no members, lag > 0.
    samples = history([(500, 600 + 30 * i) for i in range(45)])
    assert evaluate_partition(samples, members=0, stopped_after_s=60) is LagStatus.STOPPED


def test_empty_group_not_yet_stopped_is_warn() -> None:
    # Frozen for 18 s only: a restart or rebalance, not (yet) a dead worker.
    samples = history([(500, 600 + 30 * i) for i in range(10)])
    assert evaluate_partition(samples, members=0, stopped_after_s=60) is LagStatus.WARN


def test_stopped_uses_now_beyond_last_sample() -> None:
    samples = history([(500, 600 + 30 * i) for i in range(10)])
    now = samples[-1].sampled_at_ms + 120_000
    assert evaluate_partition(samples, members=0, now_ms=now) is LagStatus.STOPPED


def test_stopped_even_if_lag_was_zero_earlier() -> None:
    # The worker died when it was caught up; events kept arriving for 80 s.
    rows = [(500, 500)] + [(500, 500 + 10 * i) for i in range(1, 41)]
    assert evaluate_partition(history(rows), members=0, stopped_after_s=60) is LagStatus.STOPPED


def test_idle_empty_group_with_zero_lag_is_ok() -> None:
    samples = history([(500, 500)] * 60)
    assert evaluate_partition(samples, members=0, stopped_after_s=60) is LagStatus.OK


def test_too_few_samples_is_ok_unless_stopped() -> None:
    samples = history([(500, 600), (500, 700)])
    assert evaluate_partition(samples, members=1) is LagStatus.OK


def test_transition_back_to_ok_after_recovery() -> None:
    stalled = [(500, 600 + 30 * i) for i in range(10)]
    assert evaluate_partition(history(stalled), members=1) is LagStatus.STALLED
    # The consumer resumes and drains the backlog: commits move and lag shrinks.
    recovering = stalled + [(500 + 60 * i, 870 + 10 * i) for i in range(1, 6)]
    samples = history(recovering)
    assert [s.lag for s in samples[-5:]] == [320, 270, 220, 170, 120]
    assert evaluate_partition(samples, members=1) is LagStatus.OK
    caught_up = recovering + [(930 + 10 * i, 930 + 10 * i) for i in range(3)]
    assert evaluate_partition(history(caught_up), members=1) is LagStatus.OK


def test_stopped_recovers_when_a_worker_rejoins_and_commits() -> None:
    dead = [(500, 600 + 30 * i) for i in range(45)]
    assert evaluate_partition(history(dead), members=0) is LagStatus.STOPPED
    resumed = dead + [(500 + 150 * i, 1920 + 20 * i) for i in range(1, 11)]
    assert evaluate_partition(history(resumed), members=1) is LagStatus.OK


def test_tuples_are_accepted() -> None:
    samples = [(i * STEP_MS, 500, 600 + i, 100 + i) for i in range(5)]
    assert evaluate_partition(samples, members=1) is LagStatus.STALLED


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], LagStatus.ERROR),
        ([LagStatus.OK, LagStatus.OK], LagStatus.OK),
        ([LagStatus.OK, LagStatus.ERROR], LagStatus.ERROR),
        ([LagStatus.WARN, LagStatus.ERROR, LagStatus.OK], LagStatus.WARN),
        ([LagStatus.WARN, LagStatus.STALLED], LagStatus.STALLED),
        ([LagStatus.STOPPED, LagStatus.STALLED, LagStatus.OK], LagStatus.STOPPED),
    ],
)
def test_group_status_is_worst_partition(
    statuses: list[LagStatus], expected: LagStatus
) -> None:
    assert worst(statuses) is expected


# --- lag after retention (issue 13, input 10) ---------------------------------------------------

#: A recorded offset history of one partition, as (committed, log start, log end): the group
#: is caught up at 500; its worker stops while producers write 200 more; retention then
#: deletes everything up to 900 (log start 900 = end: nothing is left to read); the worker
#: is back (one member) but has nothing to consume, so it commits nothing new.
RECORDED = (
    [(500, 0, 500)] * 3
    + [(500, 0, 500 + 50 * i) for i in range(1, 5)]
    + [(500, 900, 900)] * 12
)


def test_lag_counts_only_records_that_still_exist() -> None:
    assert partition_lag(500, 0, 700) == 200  # nothing deleted: end - committed
    assert partition_lag(500, 900, 900) == 0  # every unread record was deleted
    assert partition_lag(500, 700, 900) == 200  # end - log start, not end - committed (400)
    assert partition_lag(None, 700, 900) == 200  # never committed: from the log start
    assert partition_lag(950, 900, 900) == 0  # never negative
    assert (first_unconsumed(500, 700), first_unconsumed(800, 700)) == (700, 800)


def test_status_returns_to_ok_after_retention_on_the_recorded_history() -> None:
    samples = [
        LagSample(1_000_000 + i * STEP_MS, c, e, partition_lag(c, start, e))
        for i, (c, start, e) in enumerate(RECORDED)
    ]
    assert [s.lag for s in samples] == [0] * 3 + [50, 100, 150, 200] + [0] * 12
    assert evaluate_partition(samples[:7], members=0, stopped_after_s=5.0) is (
        LagStatus.STOPPED)
    assert evaluate_partition(samples, members=1) is LagStatus.OK
    # The old rule (end - committed) keeps 400 phantom messages and never recovers:
    old = [LagSample(s.sampled_at_ms, s.committed, s.end, s.end - 500) for s in samples]
    assert old[-1].lag == 400
    assert evaluate_partition(old, members=1) is LagStatus.STALLED
