"""``as_of``: the instant up to which a frequency answer is complete.

An event reaches ClickHouse through two stages: the stream (consent + admission + aggregation,
the registry's Faust and consent groups) and the sink. The sink knows its own part: the newest
admission time it has written, or "now" while it has nothing left to read. That alone would
overstate freshness while the stream is behind (the sink is idle because nothing reaches it),
so the stream's part comes from the lag monitor's latest sample: a partition at lag 0 is
complete up to the sample's time; a partition behind is complete up to the append time of its
oldest unconsumed record (the sample time minus its lag in seconds). ``as_of`` is the earliest
of them all, and None (unknown) when any part is unknown.
"""

from __future__ import annotations

from consumers.lag.status import LagSnapshot


def complete_until_ms(sink_as_of_ms: int | None, snapshot: LagSnapshot | None,
                      sink_group: str) -> int | None:
    """The freshness watermark (epoch ms) from the sink's and the stream's parts; None if
    either is unknown."""
    if sink_as_of_ms is None or snapshot is None:
        return None
    watermark = sink_as_of_ms
    for name, group in snapshot.groups.items():
        if name == sink_group:
            continue  # the sink's own figure is exact; its lag sample is older
        for p in group.partitions:
            if p.lag <= 0:
                upto = snapshot.sampled_at_ms
            elif p.lag_seconds is None:
                return None
            else:
                upto = snapshot.sampled_at_ms - int(p.lag_seconds * 1000)
            watermark = min(watermark, upto)
    return watermark
