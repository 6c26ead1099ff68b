"""Admission: from a lender's raw bytes to an admitted, pseudonymised event — or a reason.

One batch of lender messages goes through, in this order (the order is part of the contract,
because it decides which reason a bad event gets):

1. size, decode (single-object Avro)      -> OVERSIZED, MALFORMED, UNKNOWN_SCHEMA
2. field validation                       -> MISSING_FIELD ... FUTURE_TIMESTAMP
3. lender binding: payload ``lender_id`` must be the lender owning the topic -> LENDER_MISMATCH
   (quarantined to that topic owner's dead-letter topic and counted as a security event)
4. pseudonymisation: the national id is replaced by its keyed HMAC; it goes nowhere after this
5. de-duplication of (lender, event_id), crash-safe (see :mod:`streams.dedup`) -> DUPLICATE
6. consent in force at ``occurred_at`` (after the consent barrier) -> NO_CONSENT

Redis steps run once per batch, pipelined. If Redis is down they wait (fail closed).
A rejection never carries borrower data: reason code, field name, source coordinates and the
lender's own event id only.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.codec import LOAN_EVENT, CodecError, codec_for
from schemas.reasons import RejectReason
from schemas.records import Rejection
from schemas.topics import TopicNames
from schemas.validation import ValidationError, ValidationLimits, check_loan_record
from streams.consent_barrier import ConsentBarrier
from streams.consent_store import ConsentStore
from streams.dedup import DedupStore, Seen
from streams.pseudonym import Pseudonymiser, partition_of
from streams.redis_client import until_redis_answers


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message from a lender topic, with its coordinates."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes | None


@dataclass(slots=True)
class AdmissionResult:
    #: target partition of ``registry.admitted`` -> AdmittedEvent dicts, in input order
    admitted: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    rejections: list[Rejection] = field(default_factory=list)
    events_in: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    admitted_by_lender: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass(slots=True)
class _Valid:
    msg: Incoming
    lender_id: str
    event: Any  # schemas.records.LoanEvent
    pseudonym: str


class Admission:
    """Decides batches of lender messages. Stateless apart from the injected stores."""

    def __init__(
        self,
        *,
        topics: TopicNames,
        limits: ValidationLimits,
        max_record_bytes: int,
        partitions: int,
        pseudonymise: Pseudonymiser,
        dedup: DedupStore,
        consent: ConsentStore,
        barrier: ConsentBarrier,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        dedup_enabled: bool = True,
    ) -> None:
        self._topics = topics
        self._limits = limits
        self._max_bytes = max_record_bytes
        self._partitions = partitions
        self._pseudonymise = pseudonymise
        self._dedup = dedup
        self._consent = consent
        self._barrier = barrier
        self._clock_ms = clock_ms
        self._dedup_enabled = dedup_enabled  # False only as a test's negative control
        #: called while waiting for Redis (the worker's liveness check counts it as progress)
        self.on_wait: Callable[[], None] | None = None
        self._codec = codec_for(LOAN_EVENT)

    def _reject(
        self,
        result: AdmissionResult,
        msg: Incoming,
        lender_id: str,
        reason: RejectReason,
        detail: str,
        event_id: str | None = None,
    ) -> None:
        result.rejections.append(
            Rejection(
                lender_id=lender_id,
                reason=reason,
                detail=detail,
                source_topic=msg.topic,
                source_partition=msg.partition,
                source_offset=msg.offset,
                event_id=event_id,
                rejected_at_ms=self._clock_ms(),
            )
        )

    def _validate(self, msg: Incoming, lender_id: str, now_ms: int, result: AdmissionResult
                  ) -> _Valid | None:
        value = msg.value
        if value is None or len(value) == 0:
            self._reject(result, msg, lender_id, RejectReason.MALFORMED, "empty message")
            return None
        if len(value) > self._max_bytes:
            self._reject(result, msg, lender_id, RejectReason.OVERSIZED,
                         f"{len(value)} bytes > {self._max_bytes}")
            return None
        try:
            record = self._codec.decode(value)
        except CodecError as exc:
            self._reject(result, msg, lender_id, exc.reason, type(exc).__name__)
            return None
        try:
            event = check_loan_record(record, lender_id=lender_id, now_ms=now_ms,
                                      limits=self._limits)
        except ValidationError as exc:
            event_id = record.get("event_id") if isinstance(record.get("event_id"), str) else None
            self._reject(result, msg, lender_id, exc.reason, f"field {exc.field}",
                         event_id=event_id[:64] if event_id else None)
            return None
        return _Valid(msg, lender_id, event, self._pseudonymise(event.borrower_id))

    async def decide(self, batch: Sequence[Incoming]) -> AdmissionResult:
        result = AdmissionResult()
        now_ms = self._clock_ms()
        valid: list[_Valid] = []
        for msg in batch:
            lender_id = self._topics.lender_of(msg.topic)
            if lender_id is None:  # not a lender topic: subscription bug, never silently drop
                raise ValueError(f"message from non-lender topic {msg.topic!r}")
            result.events_in[lender_id] += 1
            ok = self._validate(msg, lender_id, now_ms, result)
            if ok is not None:
                valid.append(ok)
        if not valid:
            return result

        if self._dedup_enabled:
            seen = await until_redis_answers(
                lambda: self._dedup.check_and_mark(
                    [(v.lender_id, v.event.event_id, v.msg.partition, v.msg.offset)
                     for v in valid]
                ),
                what="de-duplication", on_wait=self.on_wait,
            )
        else:
            seen = [Seen.FIRST] * len(valid)
        fresh = []
        for v, s in zip(valid, seen, strict=True):
            if s is Seen.DUPLICATE:
                self._reject(result, v.msg, v.lender_id, RejectReason.DUPLICATE,
                             "event_id already received", event_id=v.event.event_id)
            else:
                fresh.append(v)
        if not fresh:
            return result

        await self._barrier.wait(
            {v.lender_id for v in fresh}, max(v.msg.timestamp_ms for v in fresh)
        )
        decisions = await until_redis_answers(
            lambda: self._consent.in_force(
                [(v.pseudonym, v.lender_id, v.event.occurred_at_ms) for v in fresh]
            ),
            what="consent look-up", on_wait=self.on_wait,
        )
        for v, in_force in zip(fresh, decisions, strict=True):
            if not in_force:
                self._reject(result, v.msg, v.lender_id, RejectReason.NO_CONSENT,
                             "no consent in force at occurred_at", event_id=v.event.event_id)
                continue
            ev = v.event
            result.admitted[partition_of(v.pseudonym, self._partitions)].append(
                {
                    "borrower": v.pseudonym,
                    "lender_id": ev.lender_id,
                    "event_id": ev.event_id,
                    "loan_id": ev.loan_id,
                    "event_type": str(ev.event_type),
                    "amount_minor": ev.amount_minor,
                    "currency": ev.currency,
                    "occurred_at_ms": ev.occurred_at_ms,
                    "product": ev.product,
                    "admitted_at_ms": now_ms,
                    "source_topic": v.msg.topic,
                    "source_partition": v.msg.partition,
                    "source_offset": v.msg.offset,
                }
            )
            result.admitted_by_lender[v.lender_id] += 1
        return result
