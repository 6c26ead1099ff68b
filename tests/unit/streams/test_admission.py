"""Admission (:mod:`streams.admission`) decides in a fixed order: de-duplication first
(DUPLICATE), then intake's consent decision (NO_CONSENT). An event delivered again from the
same source position (a replay after a crash) is not a duplicate.

The de-duplication store is :class:`InMemoryDedup`, a stand-in with the same
``check_and_mark_cancels`` contract as :class:`streams.dedup.DedupStore` (the first position that
carried an event is its mark; the same position again is a redelivery, any other a duplicate).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from schemas.reasons import RejectReason
from schemas.records import Rejection
from streams.admission import Admission
from streams.dedup import DedupStore, Seen

NOW_MS = 1_741_915_800_000
TOPIC = "lenders.lender-a.loans"


class InMemoryDedup:
    """``DedupStore.check_and_mark_cancels`` over a dict instead of Redis."""

    def __init__(self) -> None:
        self.marks: dict[tuple[str, str], str] = {}
        self.calls = 0

    async def check_and_mark_cancels(self, items: Sequence[tuple[str, str, int, int]],
                                     targets: Sequence[str | None]
                                     ) -> tuple[list[Seen], list[bool]]:
        self.calls += 1
        out, received = [], []
        for (lender_id, event_id, partition, offset), target in zip(items, targets,
                                                                    strict=True):
            position = f"{partition}:{offset}"
            earlier = self.marks.get((lender_id, event_id))
            if earlier is None:
                self.marks[(lender_id, event_id)] = position
                out.append(Seen.FIRST)
            elif earlier == position:
                out.append(Seen.REDELIVERY)
            else:
                out.append(Seen.DUPLICATE)
            received.append(target is not None and (lender_id, target) in self.marks)
        return out, received


def admission(dedup: InMemoryDedup, *, dedup_enabled: bool = True) -> Admission:
    store: DedupStore = dedup  # type: ignore[assignment]  # same check_and_mark_cancels contract
    return Admission(dedup=store, clock_ms=lambda: NOW_MS, dedup_enabled=dedup_enabled)


def event(event_id: str = "e-1", *, offset: int = 10, partition: int = 2,
          lender: str = "lender-a", consented: bool = True) -> dict[str, Any]:
    return {"lender_id": lender, "event_id": event_id, "source_topic": TOPIC,
            "source_partition": partition, "source_offset": offset, "consented": consented,
            "borrower": "b" * 32}


def reasons(rejections: list[Rejection]) -> list[RejectReason]:
    return [r.reason for r in rejections]


async def test_a_resent_event_without_consent_is_rejected_as_duplicate_not_no_consent() -> None:
    dedup = InMemoryDedup()
    first = await admission(dedup).decide([event(offset=10)])
    again = await admission(dedup).decide([event(offset=11, consented=False)])
    assert len(first.admitted) == 1 and first.rejections == []
    assert again.admitted == []
    assert reasons(again.rejections) == [RejectReason.DUPLICATE]


async def test_an_event_without_consent_is_rejected_no_consent_and_its_resend_duplicate() -> None:
    dedup = InMemoryDedup()
    first = await admission(dedup).decide([event(offset=10, consented=False)])
    again = await admission(dedup).decide([event(offset=11, consented=False)])
    assert reasons(first.rejections) == [RejectReason.NO_CONSENT]
    assert reasons(again.rejections) == [RejectReason.DUPLICATE]


async def test_an_event_replayed_from_the_same_source_position_is_admitted_again() -> None:
    dedup = InMemoryDedup()
    first = await admission(dedup).decide([event(offset=10)])
    replay = await admission(dedup).decide([event(offset=10)])
    assert [i for i, _ in first.admitted] == [0]
    assert [i for i, _ in replay.admitted] == [0]
    assert replay.rejections == []


async def test_the_same_event_id_at_another_partition_position_is_a_duplicate() -> None:
    dedup = InMemoryDedup()
    await admission(dedup).decide([event(partition=2, offset=10)])
    moved = await admission(dedup).decide([event(partition=3, offset=10)])
    assert moved.admitted == []
    assert reasons(moved.rejections) == [RejectReason.DUPLICATE]


async def test_within_one_batch_the_later_copy_is_the_duplicate() -> None:
    dedup = InMemoryDedup()
    out = await admission(dedup).decide([event(offset=10), event(offset=11)])
    assert [(i, ev["source_offset"]) for i, ev in out.admitted] == [(0, 10)]
    assert [(r.reason, r.source_offset) for r in out.rejections] == [(RejectReason.DUPLICATE, 11)]


async def test_the_same_event_id_at_another_lender_is_another_event() -> None:
    dedup = InMemoryDedup()
    out = await admission(dedup).decide([event("e-1", lender="lender-a"),
                                         event("e-1", lender="lender-b", offset=11)])
    assert [ev["lender_id"] for _, ev in out.admitted] == ["lender-a", "lender-b"]
    assert out.rejections == []


async def test_admitted_events_keep_their_batch_index_and_gain_the_decision_time() -> None:
    dedup = InMemoryDedup()
    await admission(dedup).decide([event("seen", offset=1)])
    batch = [event("a", offset=2), event("seen", offset=3), event("b", offset=4),
             event("c", offset=5, consented=False), event("d", offset=6, lender="lender-b")]
    out = await admission(dedup).decide(batch)
    assert [(i, ev["event_id"]) for i, ev in out.admitted] == [(0, "a"), (2, "b"), (4, "d")]
    assert all(ev["admitted_at_ms"] == NOW_MS for _, ev in out.admitted)
    assert "admitted_at_ms" not in batch[1] and "admitted_at_ms" not in batch[3]
    assert dict(out.admitted_by_lender) == {"lender-a": 2, "lender-b": 1}
    assert reasons(out.rejections) == [RejectReason.DUPLICATE, RejectReason.NO_CONSENT]


async def test_a_rejection_names_the_source_position_and_the_event_and_nothing_of_the_borrower(
) -> None:
    dedup = InMemoryDedup()
    out = await admission(dedup).decide([event("e-9", partition=4, offset=77, consented=False)])
    assert out.rejections == [Rejection(
        lender_id="lender-a", reason=RejectReason.NO_CONSENT,
        detail="no consent in force at occurred_at", source_topic=TOPIC, source_partition=4,
        source_offset=77, event_id="e-9", rejected_at_ms=NOW_MS)]


async def test_one_batch_is_one_dedup_call_and_an_empty_batch_none() -> None:
    dedup = InMemoryDedup()
    empty = await admission(dedup).decide([])
    assert dedup.calls == 0 and empty.admitted == [] and empty.rejections == []
    await admission(dedup).decide([event("a", offset=1), event("b", offset=2)])
    assert dedup.calls == 1


async def test_with_dedup_off_a_resent_event_is_admitted_and_the_store_not_asked() -> None:
    """The negative control: without de-duplication the resend goes through."""
    dedup = InMemoryDedup()
    out = await admission(dedup, dedup_enabled=False).decide([event(offset=10),
                                                               event(offset=11)])
    assert [i for i, _ in out.admitted] == [0, 1]
    assert dedup.calls == 0
