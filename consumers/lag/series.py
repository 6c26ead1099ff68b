"""The lag monitor's memory: a ring buffer of samples per partition, and its JSON view.

The buffers (``history_s`` of samples, 30 minutes by default) are the status rules' input
(:mod:`~consumers.lag.status`) and the dashboard's chart data; :func:`snapshot_json` renders the
latest sample with each partition's thinned history for ``GET /api/v1/lag``. Nothing here talks
to Kafka, so the view can be read and changed without the sampling code.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import TypeVar

from consumers.lag.status import GroupLag, LagSample, LagSnapshot, PartitionLag, worst

_T = TypeVar("_T")

#: The trend of a group's total lag compares its newest total with the one this long ago.
TREND_SPAN_MS = 60_000


class PartitionSeries:
    """Ring buffer of one partition's samples (status input and chart data)."""

    __slots__ = ("lag_seconds", "samples")

    def __init__(self) -> None:
        self.samples: deque[LagSample] = deque()
        self.lag_seconds: deque[float | None] = deque()

    def add(self, sample: LagSample, lag_seconds: float | None, keep_after_ms: int) -> None:
        self.samples.append(sample)
        self.lag_seconds.append(lag_seconds)
        while self.samples and self.samples[0].sampled_at_ms < keep_after_ms:
            self.samples.popleft()
            self.lag_seconds.popleft()


def snapshot_json(
    last: LagSnapshot | None,
    series_of: dict[tuple[str, str, int], PartitionSeries],
    *,
    poll_seconds: float,
    error: str | None,
    max_points: int,
    lender_of: Callable[[str], str | None] = lambda _topic: None,
) -> dict[str, object]:
    """JSON-ready view for ``/api/v1/lag``: current state plus downsampled history series.

    Each partition carries ``history`` = ``{"t": [ms...], "lag": [...], "lag_seconds":
    [...]}`` covering the ring buffer, thinned to at most ``max_points`` points. Each group
    carries the same for its totals (``lag`` summed over its partitions, ``lag_seconds`` the
    oldest unconsumed message's age, their maximum), its current ``lag_seconds``, a ``trend``
    of the total over the last minute and ``lenders``: its partitions rolled up per lender
    (``lender_of(topic)``; a topic outside ``lenders.*`` is a row of its own, ``lender`` null).
    """
    groups: dict[str, object] = {}
    for name, group in (last.groups.items() if last else ()):
        totals = _group_totals(group, series_of)
        groups[name] = {
            "group": name,
            "state": group.state,
            "members": group.members,
            "status": str(group.status),
            "lag": group.lag,
            "lag_seconds": _max_seconds(p.lag_seconds for p in group.partitions),
            "trend": _trend(totals),
            "history": {
                "t": [t for t, _, _ in _thin(totals, max_points)],
                "lag": [lag for _, lag, _ in _thin(totals, max_points)],
                "lag_seconds": [secs for _, _, secs in _thin(totals, max_points)],
            },
            "lenders": _lenders_json(group, lender_of),
            "partitions": [_partition_json(p, series_of, max_points) for p in group.partitions],
        }
    return {
        "ready": last is not None,
        "sampled_at": last.sampled_at_ms if last else None,
        "poll_seconds": poll_seconds,
        "error": error,
        "groups": groups,
        "freshness": [
            {"lender": lender, "seconds": seconds}
            for lender, seconds in (last.freshness.items() if last else ())
        ],
    }


def _partition_json(
    p: PartitionLag,
    series_of: dict[tuple[str, str, int], PartitionSeries],
    max_points: int,
) -> dict[str, object]:
    series = series_of.get((p.group, p.topic, p.partition))
    points = list(zip(series.samples, series.lag_seconds, strict=True)) if series else []
    return {
        "topic": p.topic,
        "partition": p.partition,
        "committed": p.committed,
        "end": p.end,
        "lag": p.lag,
        "lag_seconds": p.lag_seconds,
        "status": str(p.status),
        "history": {
            "t": [s.sampled_at_ms for s, _ in _thin(points, max_points)],
            "lag": [s.lag for s, _ in _thin(points, max_points)],
            "lag_seconds": [secs for _, secs in _thin(points, max_points)],
        },
    }


def _max_seconds(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _group_totals(
    group: GroupLag, series_of: dict[tuple[str, str, int], PartitionSeries]
) -> list[tuple[int, int, float | None]]:
    """``(t, total lag, max lag seconds)`` per sample time of the group's partitions.

    The sampler stamps every partition of one sample with the same time, so summing by time
    gives the group's total at each sample.
    """
    lag_at: dict[int, int] = {}
    seconds_at: dict[int, list[float | None]] = {}
    for p in group.partitions:
        series = series_of.get((p.group, p.topic, p.partition))
        if series is None:
            continue
        for sample, secs in zip(series.samples, series.lag_seconds, strict=True):
            t = sample.sampled_at_ms
            lag_at[t] = lag_at.get(t, 0) + sample.lag
            seconds_at.setdefault(t, []).append(secs)
    return [(t, lag_at[t], _max_seconds(seconds_at[t])) for t in sorted(lag_at)]


def _trend(totals: list[tuple[int, int, float | None]]) -> dict[str, object]:
    """Direction of the total lag: newest total against the oldest within ``TREND_SPAN_MS``."""
    if len(totals) < 2:
        return {"direction": "unknown", "delta": 0, "span_seconds": 0.0}
    newest_t, newest_lag, _ = totals[-1]
    base_t, base_lag, _ = next(x for x in totals if x[0] >= newest_t - TREND_SPAN_MS)
    if base_t == newest_t:
        base_t, base_lag, _ = totals[-2]
    delta = newest_lag - base_lag
    direction = "rising" if delta > 0 else "falling" if delta < 0 else "steady"
    return {"direction": direction, "delta": delta,
            "span_seconds": round((newest_t - base_t) / 1000.0, 3)}


def _lenders_json(
    group: GroupLag, lender_of: Callable[[str], str | None]
) -> list[dict[str, object]]:
    """The group's partitions rolled up per lender, most lag first."""
    rolled: dict[tuple[str | None, str], list[PartitionLag]] = {}
    for p in group.partitions:
        lender = lender_of(p.topic)
        rolled.setdefault((lender, lender if lender is not None else p.topic), []).append(p)
    ordered = sorted(rolled.items(), key=lambda item: (
        -sum(p.lag for p in item[1]), item[0][0] is None, item[0][1]))
    return [
        {
            "lender": lender,
            "name": name,
            "topics": sorted({p.topic for p in parts}),
            "partitions": len(parts),
            "lag": sum(p.lag for p in parts),
            "lag_seconds": _max_seconds(p.lag_seconds for p in parts),
            "status": str(worst(p.status for p in parts)),
        }
        for (lender, name), parts in ordered
    ]


def _thin(points: list[_T], max_points: int) -> list[_T]:
    """Every k-th point so that at most ``max_points`` remain, always keeping the newest."""
    if len(points) <= max_points:
        return points
    step = -(-len(points) // max_points)
    return points[::-1][::step][::-1]
