"""Faust commits only offsets whose records the agent processed, none it skipped.

faust-streaming 0.15 computes the offset to commit from the offsets its agents acknowledged
(the consumer's ``_new_offset``) and bends that rule in two places:

* a fetched offset that jumps ahead of the last one read is recorded as a "gap"
  (``_drain_messages`` -> ``_add_gap``) and the gap is later counted as acknowledged, so the
  commit moves past records that were never delivered; the copies fetched afterwards are below
  the read offset and dropped;
* the head check (``min(acked) - committed > 1``) lets exactly one unprocessed record at the
  committed offset be committed over, and is skipped when the committed offset is 0 or unknown.

Gaps are legitimate on compacted or transactional topics; ``registry.validated`` is neither. A
jump there happens when a seek (recovery after a rebalance) races the fetcher: the rebalance
test lost 16 of 10,072 admitted events that way (CI run of 2026-11-29). With the rule below a
skipped record holds its partition's commit back, and the stream's liveness check delivers it
again (``streams.app``), so the record is processed late, never lost.

Where the contiguous run must start is the committed offset. Faust knows it only after it
committed or sought there itself, and stores 0 as None; taking the lowest processed offset
instead (as Faust does) commits over records skipped at the very start of an assignment. The
kill test lost 4,000-8,000 of 48,985 admitted events that way on 2026-11-29 (skips right
after a worker's first assignment, before anything was committed). So when Faust does not
know it, the start is asked of the broker once per partition (:func:`group_start`: the group's
committed offset, else the earliest offset), and nothing is committed until it is known.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from streams.kafka.faust_internals import (
    committed_offset,
    group_start,
    pending_acks,
    replace_commit_rule,
)

log = logging.getLogger(__name__)


def next_commit(acked: list[int], acked_index: set[int], committed: int) -> int | None:
    """The offset to commit, from the offsets processed since the last commit.

    ``acked``: processed offsets not yet committed (any order; sorted in place, and the run
    that is committed is removed from it and from ``acked_index``). ``committed``: the
    partition's committed offset, i.e. the next offset to process, or None when the group has
    none (or it is 0, which Faust stores as None): then the lowest processed offset is taken
    as the start, as Faust does. Returns one past the end of the contiguous run that starts at
    ``committed``, or None when the record at ``committed`` is not processed yet.
    """
    acked.sort()
    if committed is not None:
        # offsets below the committed one are re-deliveries of committed work: done
        done = bisect_left(acked, committed)
        acked_index.difference_update(acked[:done])
        del acked[:done]
    if not acked or (committed is not None and acked[0] != committed):
        return None
    run = 1
    while run < len(acked) and acked[run] == acked[0] + run:
        run += 1
    end = acked[run - 1]
    acked_index.difference_update(acked[:run])
    del acked[:run]
    return end + 1


def commit_only_processed(consumer: Any) -> Callable[[Any], int | None]:
    """Install :func:`next_commit` on a Faust consumer and stop it recording gaps.

    Returns ``start_of(tp)``: the offset the partition's contiguous run starts at (Faust's
    committed offset, else the start learned from the broker), None while not known yet."""
    starts: dict[Any, int] = {}
    asking: dict[Any, asyncio.Task[None]] = {}

    async def learn_start(tp: Any) -> None:
        try:
            starts[tp] = await group_start(consumer, tp)
        except Exception as exc:  # asked again at the next commit
            log.warning("%s[%d]: cannot learn the group's start offset yet (%r)",
                        tp.topic, tp.partition, exc)
        finally:
            asking.pop(tp, None)

    def start_of(tp: Any) -> int | None:
        committed = committed_offset(consumer, tp)
        if committed is None:
            committed = starts.get(tp)
            if committed is None and tp not in asking:
                asking[tp] = asyncio.ensure_future(learn_start(tp))
        return committed

    def new_offset(tp: Any) -> int | None:
        acked, acked_index = pending_acks(consumer, tp)
        start = start_of(tp)
        return None if start is None else next_commit(acked, acked_index, start)

    async def refuse_gap(tp: Any, offset_from: int, offset_to: int) -> None:
        log.warning("%s[%d]: the fetcher skipped offsets %d..%d; the commit waits for them",
                    tp.topic, tp.partition, offset_from, offset_to - 1)

    replace_commit_rule(consumer, new_offset, refuse_gap)
    return start_of
