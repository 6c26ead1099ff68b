"""Decoded borrower states kept between batch records, so a busy borrower is not decoded again
for every record (decoding the Avro table value was about a quarter of the agent's CPU in the
per-stage profile, ``make bench``).

The Faust table stays the only source of truth. An entry remembers the very bytes object the
agent last wrote to the table for that borrower; it is used only while the table still holds
that same object (identity, not equality). Anything else that changes the table (changelog
recovery after a rebalance, an erasure's delete) puts another object there, so the entry is
ignored and the value decoded afresh. Entries of the borrowers a record touches are taken out
before the record is applied and put back only after the new values are in the table, so an
exception half-way can never leave a mutated state behind a stale value. Bounded: when it
holds ``capacity`` entries it is emptied (cheap, and a cold entry costs one decode).
"""

from __future__ import annotations

from collections.abc import Callable

from streams.buckets import BorrowerState


class StateCache:
    """``load`` a borrower's state (from the cache when still valid), ``store`` it back."""

    __slots__ = ("_capacity", "_entries", "hits", "misses")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: dict[bytes, tuple[bytes, BorrowerState]] = {}
        self.hits = self.misses = 0

    def load(self, key: bytes, raw: bytes | None,
             decode: Callable[[bytes | None], BorrowerState]) -> BorrowerState:
        """The state for the table value ``raw`` of ``key``; the entry leaves the cache."""
        entry = self._entries.pop(key, None)
        if entry is not None and raw is not None and entry[0] is raw:
            self.hits += 1
            return entry[1]
        self.misses += 1
        return decode(raw)

    def store(self, key: bytes, raw: bytes, state: BorrowerState) -> None:
        """Remember ``state`` as the decoded form of ``raw``, just written to the table."""
        if self._capacity <= 0:
            return
        if len(self._entries) >= self._capacity:
            self._entries.clear()
        self._entries[key] = (raw, state)

    def forget(self, key: bytes) -> None:
        self._entries.pop(key, None)
