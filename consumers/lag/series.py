"""The lag monitor's memory: a ring buffer of samples per partition, and its JSON view.

The buffers (``history_s`` of samples, 30 minutes by default) are the status rules' input
(:mod:`~consumers.lag.status`) and the dashboard's chart data; :func:`snapshot_json` renders the
latest sample with each partition's thinned history for ``GET /api/v1/lag``. Nothing here talks
to Kafka, so the view can be read and changed without the sampling code.
"""

from __future__ import annotations

from collections import deque
from typing import TypeVar

from consumers.lag.status import LagSample, LagSnapshot, PartitionLag

_T = TypeVar("_T")


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
) -> dict[str, object]:
    """JSON-ready view for ``/api/v1/lag``: current state plus downsampled history series.

    Each partition carries ``history`` = ``{"t": [ms...], "lag": [...], "lag_seconds":
    [...]}`` covering the ring buffer, thinned to at most ``max_points`` points.
    """
    groups: dict[str, object] = {}
    for name, group in (last.groups.items() if last else ()):
        groups[name] = {
            "group": name,
            "state": group.state,
            "members": group.members,
            "status": str(group.status),
            "lag": group.lag,
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


def _thin(points: list[_T], max_points: int) -> list[_T]:
    """Every k-th point so that at most ``max_points`` remain, always keeping the newest."""
    if len(points) <= max_points:
        return points
    step = -(-len(points) // max_points)
    return points[::-1][::step][::-1]
