"""The decoded-state cache of the stream agent: used only while the table holds the very bytes
the agent wrote; any other value (recovery, erasure) is decoded afresh."""

from __future__ import annotations

from streams.aggregation import StateCodec
from streams.buckets import BorrowerState
from streams.state_cache import StateCache


def test_an_entry_is_used_only_while_the_table_holds_the_same_bytes_object() -> None:
    codec, cache = StateCodec(), StateCache(10)
    state = BorrowerState(days_evicted_through=7)
    raw = codec.dump(state)
    cache.store(b"k", raw, state)
    assert cache.load(b"k", raw, codec.load) is state
    assert (cache.hits, cache.misses) == (1, 0)
    # an equal value restored from the changelog is another object: decoded, not trusted
    cache.store(b"k", raw, state)
    restored = bytes(bytearray(raw))
    loaded = cache.load(b"k", restored, codec.load)
    assert loaded is not state and loaded.days_evicted_through == 7
    assert (cache.hits, cache.misses) == (1, 1)


def test_a_loaded_entry_leaves_the_cache_until_stored_again() -> None:
    codec, cache = StateCodec(), StateCache(10)
    state = BorrowerState()
    raw = codec.dump(state)
    cache.store(b"k", raw, state)
    first = cache.load(b"k", raw, codec.load)
    first.days_evicted_through = 99  # applied, then the record failed before the table write
    second = cache.load(b"k", raw, codec.load)
    assert second is not first and second.days_evicted_through == -(2**31)


def test_a_deleted_key_is_a_fresh_state_and_capacity_bounds_the_entries() -> None:
    codec, cache = StateCodec(), StateCache(2)
    state = BorrowerState(days_evicted_through=3)
    cache.store(b"k", codec.dump(state), state)
    assert cache.load(b"k", None, codec.load).days_evicted_through == -(2**31)
    for i in range(3):
        s = BorrowerState()
        cache.store(bytes([i]), codec.dump(s), s)
    assert len(cache._entries) == 1  # emptied at capacity, then the third stored
