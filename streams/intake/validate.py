"""From a lender's raw bytes to a validated, pseudonymised event, or a reason.

Each lender message goes through, in this order (the order decides which reason a bad event
gets, so it is part of the contract):

1. size, decode (single-object Avro)      -> OVERSIZED, MALFORMED, UNKNOWN_SCHEMA
2. field validation                       -> MISSING_FIELD ... FUTURE_TIMESTAMP
3. lender binding: payload ``lender_id`` must be the lender owning the topic -> LENDER_MISMATCH
4. pseudonymisation: the national id is replaced by its keyed HMAC; it goes nowhere after this

De-duplication and consent come after, in the stream agent (:mod:`streams.admission`), on the
partition that owns the borrower. A rejection never carries borrower data: reason code, field
name, source coordinates and the lender's own event id only. Pure and synchronous: no I/O.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.codec import LOAN_EVENT, codec_for
from schemas.errors import CodecError, ValidationError
from schemas.pseudonym import Pseudonymiser, partition_of
from schemas.reasons import RejectReason
from schemas.records import Incoming, Rejection, rejection
from schemas.topics import TopicNames
from schemas.validation import ValidationLimits, check_loan_record


@dataclass(slots=True)
class IntakeResult:
    """The outcome of one bulk read."""

    #: registry partition -> ``ValidatedEvent`` dicts, in input order
    validated: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    rejections: list[Rejection] = field(default_factory=list)
    #: lender -> messages read
    events_in: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class Validator:
    """Validates bulk reads of lender loan topics. Stateless apart from its configuration."""

    def __init__(self, *, topics: TopicNames, limits: ValidationLimits, max_record_bytes: int,
                 partitions: int, pseudonymise: Pseudonymiser,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self._topics = topics
        self._limits = limits
        self._max_bytes = max_record_bytes
        self._partitions = partitions
        self._pseudonymise = pseudonymise
        self._clock_ms = clock_ms
        self._codec = codec_for(LOAN_EVENT)
        self._lender_of: dict[str, str | None] = {}

    def _lender(self, topic: str) -> str:
        lender = self._lender_of.get(topic)
        if lender is None:
            lender = self._lender_of[topic] = self._topics.lender_of(topic)
        if lender is None:  # not a lender topic: a subscription bug, never silently drop
            raise ValueError(f"message from non-lender topic {topic!r}")
        return lender

    def validate(self, batch: Sequence[Incoming]) -> IntakeResult:
        """Decide every message of ``batch``; see :class:`IntakeResult`."""
        result = IntakeResult()
        now_ms = self._clock_ms()
        decode, limits, max_bytes = self._codec.decode, self._limits, self._max_bytes
        for msg in batch:
            lender_id = self._lender(msg.topic)
            result.events_in[lender_id] += 1
            value = msg.value
            reason: RejectReason | None = None
            event_id: str | None = None
            if not value:
                reason, detail = RejectReason.MALFORMED, "empty message"
            elif len(value) > max_bytes:
                reason, detail = RejectReason.OVERSIZED, f"{len(value)} bytes > {max_bytes}"
            else:
                try:
                    record = decode(value)
                except CodecError as exc:
                    reason, detail = exc.reason or RejectReason.MALFORMED, type(exc).__name__
                else:
                    try:
                        ev = check_loan_record(record, lender_id=lender_id, now_ms=now_ms,
                                               limits=limits)
                    except ValidationError as exc:
                        reason, detail = exc.reason, f"field {exc.field}"
                        raw_id = record.get("event_id")
                        event_id = raw_id if isinstance(raw_id, str) else None
            if reason is not None:
                result.rejections.append(rejection(msg.topic, msg.partition, msg.offset,
                                                   lender_id, reason, detail, event_id, now_ms))
                continue
            pseudonym = self._pseudonymise(ev.borrower_id)
            result.validated[partition_of(pseudonym, self._partitions)].append({
                "borrower": pseudonym,
                "lender_id": ev.lender_id,
                "event_id": ev.event_id,
                "loan_id": ev.loan_id,
                "event_type": ev.event_type.value,
                "amount_minor": ev.amount_minor,
                "currency": ev.currency,
                "occurred_at_ms": ev.occurred_at_ms,
                "product": ev.product,
                "cancels_event_id": ev.cancels_event_id,
                "appended_at_ms": msg.timestamp_ms,
                "source_topic": msg.topic,
                "source_partition": msg.partition,
                "source_offset": msg.offset,
                "consented": True,  # until the consent gate finds otherwise
            })
        return result
