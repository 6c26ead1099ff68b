"""Publishing a lag sample to the Prometheus gauges of :mod:`streams.runtime.metrics`.

Per partition the lag in messages and in seconds, per group one status gauge per
:class:`~consumers.lag.status.LagStatus` (1 for the current one), per lender the freshness.
Series of partitions and groups gone from the sample are removed, but only those of groups the
monitor watches (``owns``): the gauges may also carry other groups' series.
"""

from __future__ import annotations

from collections.abc import Callable

from consumers.lag.status import LagSnapshot, LagStatus
from streams.runtime.metrics import Metrics


def publish_metrics(metrics: Metrics, snapshot: LagSnapshot, owns: Callable[[str], bool]) -> None:
    """Set the gauges from ``snapshot``; ``owns(group)`` says whose stale series to remove."""
    m = metrics
    live_partitions: set[tuple[str, str, str]] = set()
    for group in snapshot.groups.values():
        for p in group.partitions:
            labels = (p.group, p.topic, str(p.partition))
            live_partitions.add(labels)
            m.consumer_lag_messages.set(p.lag, *labels)
            if p.lag_seconds is not None:
                m.consumer_lag_seconds.set(p.lag_seconds, *labels)
        for status in LagStatus:
            m.consumer_status.set(1.0 if status is group.status else 0.0, group.group, status)
    for gauge in (m.consumer_lag_messages, m.consumer_lag_seconds):
        for series in gauge.series():
            if series not in live_partitions and owns(series[0]):
                gauge.remove(*series)
    for series in m.consumer_status.series():
        if series[0] not in snapshot.groups and owns(series[0]):
            m.consumer_status.remove(*series)
    for lender, seconds in snapshot.freshness.items():
        if seconds is None:
            m.lender_freshness_seconds.remove(lender)
        else:
            m.lender_freshness_seconds.set(seconds, lender)
