"""``/api/v1/lag``'s per-group view: totals over time, trend and the per-lender roll-up."""

from __future__ import annotations

from consumers.lag.series import PartitionSeries, snapshot_json
from consumers.lag.status import GroupLag, LagSample, LagSnapshot, LagStatus, PartitionLag
from schemas.topics import TopicNames


def _world() -> tuple[LagSnapshot, dict[tuple[str, str, int], PartitionSeries]]:
    series: dict[tuple[str, str, int], PartitionSeries] = {}
    rows = []
    status = {("lenders.bank-a.loans", 1): LagStatus.WARN}
    for topic in ("lenders.bank-a.loans", "lenders.bank-b.loans", "registry.admitted"):
        weight = {"lenders.bank-a.loans": 3, "lenders.bank-b.loans": 1}.get(topic, 0)
        for partition in (0, 1):
            s = PartitionSeries()
            for i in range(10):  # samples at 0, 10, ..., 90 s
                lag = i * weight * partition
                s.add(LagSample(i * 10_000, 0, lag, lag), float(lag), 0)
            series[("g", topic, partition)] = s
            lag = 9 * weight * partition
            rows.append(PartitionLag("g", topic, partition, 0, lag, lag, float(lag),
                                     status.get((topic, partition), LagStatus.OK), 90_000))
    group = GroupLag("g", "Stable", 2, LagStatus.WARN, tuple(rows))
    return LagSnapshot(90_000, {"g": group}, {}), series


def test_group_totals_trend_and_lenders() -> None:
    snapshot, series = _world()
    view = snapshot_json(snapshot, series, poll_seconds=1.0, error=None, max_points=4,
                         lender_of=TopicNames().lender_of)
    group = view["groups"]["g"]  # type: ignore[index]
    assert group["lag"] == 36 and group["lag_seconds"] == 27.0
    # every k-th total, newest kept: totals are 4*i at t = 10 s * i
    assert group["history"] == {"t": [0, 30_000, 60_000, 90_000], "lag": [0, 12, 24, 36],
                                "lag_seconds": [0.0, 9.0, 18.0, 27.0]}
    assert group["trend"] == {"direction": "rising", "delta": 24, "span_seconds": 60.0}
    assert [(r["name"], r["lender"], r["partitions"], r["lag"], r["lag_seconds"], r["status"])
            for r in group["lenders"]] == [
        ("bank-a", "bank-a", 2, 27, 27.0, "WARN"),
        ("bank-b", "bank-b", 2, 9, 9.0, "OK"),
        ("registry.admitted", None, 2, 0, 0.0, "OK"),
    ]
    assert group["lenders"][0]["topics"] == ["lenders.bank-a.loans"]
    assert len(group["partitions"]) == 6  # the drill-down keeps every partition


def test_trend_needs_two_samples_and_sees_a_flat_line() -> None:
    one = PartitionSeries()
    one.add(LagSample(1_000, 5, 5, 0), 0.0, 0)
    row = PartitionLag("g", "t", 0, 5, 5, 0, 0.0, LagStatus.OK, 1_000)
    snapshot = LagSnapshot(1_000, {"g": GroupLag("g", "Stable", 1, LagStatus.OK, (row,))}, {})
    view = snapshot_json(snapshot, {("g", "t", 0): one}, poll_seconds=1.0, error=None,
                         max_points=10)
    assert view["groups"]["g"]["trend"] == {  # type: ignore[index]
        "direction": "unknown", "delta": 0, "span_seconds": 0.0}
    one.add(LagSample(2_000, 5, 5, 0), 0.0, 0)
    view = snapshot_json(snapshot, {("g", "t", 0): one}, poll_seconds=1.0, error=None,
                         max_points=10)
    assert view["groups"]["g"]["trend"] == {  # type: ignore[index]
        "direction": "steady", "delta": 0, "span_seconds": 1.0}
    assert view["groups"]["g"]["lenders"][0]["lender"] is None  # type: ignore[index]
