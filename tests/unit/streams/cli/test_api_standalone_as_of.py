"""``as_of`` of the standalone risk API (``registry api``): from lag samples alone, the sink's
group counted like every other group (no sink runs in that process)."""

from __future__ import annotations

from types import SimpleNamespace

from consumers.lag.status import GroupLag, LagSnapshot, LagStatus, PartitionLag
from streams.cli.api import as_of_from_samples

T = 1_800_000_000_000


def _group(name: str, *parts: tuple[int, float | None]) -> GroupLag:
    partitions = tuple(
        PartitionLag(name, "topic", i, 10, 10 + lag, lag, lag_s, LagStatus.OK, T)
        for i, (lag, lag_s) in enumerate(parts))
    return GroupLag(name, "Stable", 1, LagStatus.OK, partitions)


def _as_of(*groups: GroupLag) -> int | None:
    monitor = SimpleNamespace(last=LagSnapshot(T, {g.group: g for g in groups}))
    return as_of_from_samples(monitor)  # type: ignore[arg-type]


def test_no_sample_yet_is_unknown() -> None:
    assert as_of_from_samples(SimpleNamespace(last=None)) is None  # type: ignore[arg-type]


def test_everything_caught_up_is_complete_to_the_sample() -> None:
    assert _as_of(_group("reg", (0, 0.0)), _group("reg-sink", (0, None))) == T


def test_a_sink_partition_behind_holds_as_of_back() -> None:
    assert _as_of(_group("reg", (0, 0.0)), _group("reg-sink", (0, 0.0), (50, 3.25))) == T - 3250


def test_an_unknown_lag_in_seconds_is_unknown() -> None:
    assert _as_of(_group("reg", (0, 0.0)), _group("reg-sink", (7, None))) is None
