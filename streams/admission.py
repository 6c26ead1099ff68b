"""Admission: the stream agent's decision on validated events (de-duplication, consent).

Bulk intake (:mod:`streams.intake`) has already decoded, validated, bound and pseudonymised
each event, and checked consent after the consent barrier (an event without consent arrives
redacted, ``consented`` false: :mod:`streams.intake.consent_gate`). Decided here, per batch
record, on the partition that owns the borrower, for each event in this order (the order
decides the reason):

5. de-duplication of (lender, event_id), crash-safe (see :mod:`streams.dedup`) -> DUPLICATE
6. consent in force at ``occurred_at``, as intake found it -> NO_CONSENT

(1-4, size to pseudonymisation, are :mod:`streams.intake.validate`.) De-duplication is one
server-side Redis script call per batch. If Redis is down it waits (fail closed): nothing is
admitted nor rejected without a decision. A rejection never carries borrower data.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.reasons import RejectReason
from schemas.records import Rejection, rejection
from streams.dedup import DedupStore, Seen
from streams.runtime.redis_client import until_redis_answers


@dataclass(slots=True)
class Decided:
    """The outcome of one batch record."""

    #: ``(index in the batch, event)`` of every admitted event, in input order; the index keeps
    #: an event's version independent of what else the batch admitted
    admitted: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    admitted_by_lender: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class Admission:
    """Decides batches of validated events. Stateless apart from the injected stores."""

    def __init__(
        self,
        *,
        dedup: DedupStore,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        dedup_enabled: bool = True,
    ) -> None:
        self._dedup = dedup
        self._clock_ms = clock_ms
        self._dedup_enabled = dedup_enabled  # False only as a test's negative control
        #: called while waiting for Redis (the worker's liveness check counts it as progress)
        self.on_wait: Callable[[], None] | None = None

    def _reject(self, out: Decided, ev: dict[str, Any], reason: RejectReason, detail: str,
                now_ms: int) -> None:
        out.rejections.append(rejection(ev["source_topic"], ev["source_partition"],
                                        ev["source_offset"], ev["lender_id"], reason, detail,
                                        ev["event_id"], now_ms))

    async def decide(self, events: Sequence[dict[str, Any]]) -> Decided:
        """De-duplicate, then apply intake's consent decision; see :class:`Decided`.

        Each admitted event gains ``admitted_at_ms`` (the decision time); an admitted cancel
        also ``target_received``: whether the event it names had reached the registry before
        it (:meth:`streams.dedup.DedupStore.check_and_mark_cancels`)."""
        out = Decided()
        if not events:
            return out
        now_ms = self._clock_ms()
        if self._dedup_enabled:
            seen, received = await until_redis_answers(
                lambda: self._dedup.check_and_mark_cancels(
                    [(ev["lender_id"], ev["event_id"], ev["source_partition"],
                      ev["source_offset"]) for ev in events],
                    [ev.get("cancels_event_id") for ev in events]),
                what="de-duplication", on_wait=self.on_wait)
        else:
            seen, received = [Seen.FIRST] * len(events), [False] * len(events)
        for index, (ev, s) in enumerate(zip(events, seen, strict=True)):
            if s is Seen.DUPLICATE:
                self._reject(out, ev, RejectReason.DUPLICATE, "event_id already received",
                             now_ms)
            elif not ev["consented"]:
                self._reject(out, ev, RejectReason.NO_CONSENT,
                             "no consent in force at occurred_at", now_ms)
            else:
                ev["admitted_at_ms"] = now_ms
                if ev.get("cancels_event_id") is not None:
                    ev["target_received"] = received[index]
                out.admitted.append((index, ev))
                out.admitted_by_lender[ev["lender_id"]] += 1
        return out
