"""Consumer status from a window of offset samples, in the spirit of LinkedIn Burrow's rules.

A threshold on lag ("alert above 10 000 messages") is wrong both ways: a busy partition is
healthy at 50 000 messages behind if it keeps catching up, and a quiet one is broken at 3 if
nobody will ever read them. Like Burrow, we judge the *shape* of recent samples instead. This
module is pure: it sees samples, never a broker, so the rules are unit-tested on hand-written
offset histories.

Each sample of one (group, topic, partition) is ``(sampled_at_ms, committed_offset or None,
log_end_offset, lag)``. ``evaluate_partition`` judges the trend on the last ``window`` samples
and measures "commits have not moved" over every sample it is given (the monitor passes its
recent history), together with the group's current member count.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

#: Operator-facing description of the rules, ready for the README.
STATUS_RULES = """\
The lag monitor samples every consumer group of the registry every `LAG_POLL_SECONDS` and
judges each partition on its recent samples (committed offset, log-end offset, lag), the way
LinkedIn's Burrow does: by the trend, not by a lag threshold. Rules, first match wins:

- ERROR: no sample for the partition yet (no data; shown grey, not an alarm by itself).
- STOPPED: lag > 0, the group has NO members, and the committed offset has not moved for at
  least `stopped_after_s` (default 60 s): the worker is gone.
- OK: lag was 0 at some sample of the window: the consumer keeps up.
- OK: fewer than 3 samples in the window: too early to judge a trend.
- STALLED: lag > 0 throughout and the committed offset did not move across the window while
  the group HAS members: the worker is alive but not progressing (stuck on a record, blocked
  sink, endless rebalance).
- WARN: as STALLED, but the group has no members and `stopped_after_s` has not passed yet (a
  restart or rebalance in progress).
- WARN: the committed offset advances, but lag never shrinks across the window and ends
  higher than it started: the consumer is slower than the producers.
- OK: otherwise: the consumer commits and lag does not grow (catching up, or steady).

A group's status is its worst partition status (OK < ERROR < WARN < STALLED < STOPPED).
"Worker gone" and "worker stuck" look alike in offsets alone (no commits, growing log end);
the group's membership is what tells them apart, so STOPPED requires an empty group and
STALLED a live one.
"""

#: Trend window: the last this many samples (Burrow's default is 10 offsets).
DEFAULT_WINDOW = 10
#: Fewer samples than this in the window is "too early to tell".
MIN_SAMPLES = 3
#: An empty group whose commits have not moved this long is STOPPED.
DEFAULT_STOPPED_AFTER_S = 60.0


class LagStatus(enum.StrEnum):
    """Health of one partition (or, as the worst of them, of one group)."""

    OK = "OK"
    ERROR = "ERROR"
    WARN = "WARN"
    STALLED = "STALLED"
    STOPPED = "STOPPED"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {
    LagStatus.OK: 0,
    LagStatus.ERROR: 1,
    LagStatus.WARN: 2,
    LagStatus.STALLED: 3,
    LagStatus.STOPPED: 4,
}


def first_unconsumed(committed: int | None, log_start: int) -> int:
    """Offset of the oldest record the group still has to read that EXISTS: the committed
    offset, unless retention (or a ``DeleteRecords``) already removed it, then the partition's
    log-start offset. A group that never committed starts at the log start too."""
    return log_start if committed is None else max(committed, log_start)


def partition_lag(committed: int | None, log_start: int, end: int) -> int:
    """Lag in messages: ``end - max(committed, log_start)``, never below 0.

    Records deleted by retention before the group read them are gone; counting them
    (``end - committed``) would report a lag that can never shrink to 0, so the partition
    could never be judged OK again. Offsets are Kafka offsets (``end`` = log-end offset).
    """
    return max(0, end - first_unconsumed(committed, log_start))


@dataclass(frozen=True, slots=True)
class LagSample:
    """One observation of one partition for one group."""

    sampled_at_ms: int
    committed: int | None
    end: int
    lag: int


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """What one sample saw for one (group, topic, partition), judged."""

    group: str
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int
    lag_seconds: float | None
    status: LagStatus
    sampled_at_ms: int


@dataclass(frozen=True, slots=True)
class GroupLag:
    """One consumer group in one sample; ``members`` is None when it could not be read."""

    group: str
    state: str
    members: int | None
    status: LagStatus
    partitions: tuple[PartitionLag, ...]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


@dataclass(frozen=True, slots=True)
class LagSnapshot:
    """One complete sample of every watched group plus lender freshness (seconds)."""

    sampled_at_ms: int
    groups: dict[str, GroupLag]
    freshness: dict[str, float | None] = field(default_factory=dict)

    def partition(self, group: str, topic: str, partition: int) -> PartitionLag | None:
        for p in self.groups[group].partitions if group in self.groups else ():
            if p.topic == topic and p.partition == partition:
                return p
        return None


def _samples(raw: Iterable[LagSample | tuple[int, int | None, int, int]]) -> list[LagSample]:
    return [s if isinstance(s, LagSample) else LagSample(*s) for s in raw]


def evaluate_partition(
    samples: Sequence[LagSample | tuple[int, int | None, int, int]],
    *,
    members: int | None,
    now_ms: int | None = None,
    stopped_after_s: float = DEFAULT_STOPPED_AFTER_S,
    window: int = DEFAULT_WINDOW,
) -> LagStatus:
    """Judge one partition by the rules in :data:`STATUS_RULES`.

    ``samples`` are in time order (oldest first) and may be longer than ``window``: the extra
    history only lengthens the measured time without commit movement. ``members`` is the
    group's current member count, or None when it could not be read (then STOPPED is never
    claimed and a non-moving consumer is reported STALLED). ``now_ms`` defaults to the time of
    the newest sample.
    """
    history = _samples(samples)
    if not history:
        return LagStatus.ERROR
    latest = history[-1]
    now = latest.sampled_at_ms if now_ms is None else now_ms

    if latest.lag > 0 and members == 0:
        idle_s = (now - _committed_since_ms(history)) / 1000.0
        if idle_s >= stopped_after_s:
            return LagStatus.STOPPED

    recent = history[-window:]
    if any(s.lag == 0 for s in recent):
        return LagStatus.OK
    if len(recent) < MIN_SAMPLES:
        return LagStatus.OK

    first = recent[0]
    if all(s.committed == first.committed for s in recent):
        return LagStatus.WARN if members == 0 else LagStatus.STALLED

    lags = [s.lag for s in recent]
    never_shrinks = all(b >= a for a, b in pairwise(lags))
    if never_shrinks and lags[-1] > lags[0]:
        return LagStatus.WARN
    return LagStatus.OK


def _committed_since_ms(history: Sequence[LagSample]) -> int:
    """Time of the oldest sample since which the committed offset has stayed the same.

    A lower bound on how long commits have not moved: Kafka does not tell us when the commit
    was made, only what we saw.
    """
    committed = history[-1].committed
    since = history[-1].sampled_at_ms
    for sample in reversed(history):
        if sample.committed != committed:
            break
        since = sample.sampled_at_ms
    return since


def worst(statuses: Iterable[LagStatus]) -> LagStatus:
    """The group-level status: the worst of its partitions; ERROR (no data) if none."""
    found = list(statuses)
    if not found:
        return LagStatus.ERROR
    return max(found, key=lambda s: s.severity)
