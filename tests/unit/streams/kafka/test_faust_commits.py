"""The commit rule installed on Faust's consumer: never past a record that was not processed."""

from __future__ import annotations

from streams.kafka.faust_commits import next_commit


def _commit(acked: list[int], committed: int) -> tuple[int | None, list[int], set[int]]:
    index = set(acked)
    result = next_commit(acked, index, committed)
    return result, acked, index


def test_contiguous_run_from_the_committed_offset_is_committed() -> None:
    assert _commit([12, 10, 11, 14], 10) == (13, [14], {14})


def test_a_skipped_record_at_the_committed_offset_holds_the_commit() -> None:
    # Faust's own head check lets exactly this one through (min(acked) - committed == 1)
    assert _commit([11, 12, 13], 10) == (None, [11, 12, 13], {11, 12, 13})


def test_a_skipped_record_in_the_middle_stops_the_run_before_it() -> None:
    assert _commit([10, 11, 13, 14], 10) == (12, [13, 14], {13, 14})


def test_offsets_below_the_committed_one_are_dropped_as_done() -> None:
    assert _commit([7, 8, 10, 11], 10) == (12, [], set())


def test_records_skipped_at_the_start_of_a_partition_hold_the_commit() -> None:
    # the start is the group's committed offset or the earliest offset (0 here), never the
    # lowest processed one: 0..4 were skipped
    assert _commit([5, 6, 8], 0) == (None, [5, 6, 8], {5, 6, 8})


def test_nothing_processed_commits_nothing() -> None:
    assert _commit([], 10) == (None, [], set())
