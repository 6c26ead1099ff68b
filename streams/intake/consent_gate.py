"""Consent at the door: nothing of a borrower without consent reaches an internal topic.

The registry promises that data of a borrower without consent in force at the event's time is
stored nowhere, internal topics included (the privacy test scans every topic for the
pseudonym). So bulk intake checks consent BEFORE it writes ``registry.validated``: after the
consent barrier (every consent record appended before the loan event is applied,
:mod:`streams.consent.barrier`), one Redis script call per bulk read asks whether consent was
in force at each event's ``occurred_at`` (:meth:`ConsentStore.in_force`). An event without it
is REDACTED in place: borrower, loan, amount, currency and product are blanked and
``consented`` is false; it still travels, on its borrower's partition, so that the stream
agent de-duplicates it and rejects it (``NO_CONSENT``) in order with the other events, exactly
as the reason order says (a re-sent event is a ``DUPLICATE`` whatever its consent).

Redis down: the gate waits (fail closed), and so does the intake; nothing is decided or
committed meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streams.consent.barrier import ConsentBarrier
from streams.consent.store import ConsentStore
from streams.intake.validate import IntakeResult
from streams.runtime.redis_client import until_redis_answers


def redact(ev: dict[str, Any]) -> None:
    """Blank everything of ``ev`` that describes the borrower or the loan, in place."""
    ev.update(borrower="", loan_id="", event_type="", amount_minor=0, currency="",
              product=None, cancels_event_id=None, consented=False)


class ConsentGate:
    """Redacts the events of a bulk read that have no consent in force at ``occurred_at``."""

    def __init__(self, consent: ConsentStore, barrier: ConsentBarrier,
                 on_wait: Callable[[], None] | None = None) -> None:
        self._consent = consent
        self._barrier = barrier
        self.on_wait = on_wait

    async def redact_unconsented(self, result: IntakeResult) -> int:
        """Check every validated event of ``result``; returns how many were redacted."""
        events = [ev for evs in result.validated.values() for ev in evs]
        if not events:
            return 0
        await self._barrier.wait({ev["lender_id"] for ev in events},
                                 max(ev["appended_at_ms"] for ev in events))
        flags = await until_redis_answers(
            lambda: self._consent.in_force(
                [(ev["borrower"], ev["lender_id"], ev["occurred_at_ms"]) for ev in events]),
            what="consent look-up (intake)", on_wait=self.on_wait)
        redacted = 0
        for ev, in_force in zip(events, flags, strict=True):
            if in_force:
                ev["consented"] = True
            else:
                redact(ev)
                redacted += 1
        return redacted
