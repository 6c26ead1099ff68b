"""``as_of``: the earliest of the sink's part and every stream partition's completeness."""

from __future__ import annotations

from consumers.lag.status import GroupLag, LagSnapshot, LagStatus, PartitionLag
from consumers.risk.watermark import complete_until_ms

T = 1_800_000_000_000
SINK = "reg-sink"


def _group(name: str, *parts: tuple[int, float | None]) -> GroupLag:
    partitions = tuple(
        PartitionLag(name, "topic", i, 10, 10 + lag, lag, lag_s, LagStatus.OK, T)
        for i, (lag, lag_s) in enumerate(parts))
    return GroupLag(name, "Stable", 1, LagStatus.OK, partitions)


def _snapshot(*groups: GroupLag) -> LagSnapshot:
    return LagSnapshot(T, {g.group: g for g in groups})


def test_unknown_parts_give_none() -> None:
    assert complete_until_ms(None, _snapshot(_group("reg", (0, 0.0))), SINK) is None
    assert complete_until_ms(T, None, SINK) is None
    assert complete_until_ms(T, _snapshot(_group("reg", (0, 0.0), (4, None))), SINK) is None


def test_caught_up_stream_leaves_the_sink_figure() -> None:
    snap = _snapshot(_group("reg", (0, 0.0), (0, None)), _group("reg-consent", (0, 0.0)))
    assert complete_until_ms(T - 1500, snap, SINK) == T - 1500


def test_a_stream_partition_behind_holds_as_of_back() -> None:
    snap = _snapshot(_group("reg", (0, 0.0), (120, 7.5)), _group("reg-consent", (3, 2.0)))
    # the idle sink says "now", but the stream still holds records appended 7.5 s ago
    assert complete_until_ms(T + 200, snap, SINK) == T - 7500


def test_the_sink_groups_own_lag_sample_is_ignored() -> None:
    snap = _snapshot(_group("reg", (0, 0.0)), _group(SINK, (50, 30.0)))
    assert complete_until_ms(T - 10, snap, SINK) == T - 10
