"""The ClickHouse sink: exact inserts of the registry's activity into ClickHouse.

Owns the sink loop, its batches, insert tokens and commit protocol (:mod:`consumers.sink.loop`),
the row layout of each table (:mod:`consumers.sink.rows`) and the correction path that rebuilds,
from the ledger, the buckets late events reach after they left stream state
(:mod:`consumers.sink.recompute`). May import ``schemas``, :mod:`consumers.clickhouse`,
:mod:`streams.settings` and :mod:`streams.runtime`.
"""
