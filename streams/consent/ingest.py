"""Consent ingestion: lender consent records -> event-time intervals in Redis + audit trail.

Per batch: decode and validate each record, pseudonymise the borrower, then one Redis
transaction stores the intervals together with the per-partition "applied" marks that the
admission agent's consent barrier waits on. A bad record is rejected to the lender's
dead-letter topic like a bad loan event, and still advances the mark (it was decided).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.codec import CONSENT_RECORD, codec_for
from schemas.errors import CodecError, ValidationError
from schemas.pseudonym import Pseudonymiser, partition_of
from schemas.reasons import RejectReason
from schemas.records import ConsentAction, Incoming, Rejection
from schemas.topics import TopicNames
from schemas.validation import ValidationLimits, check_consent_record
from streams.consent.store import ConsentStore
from streams.runtime.redis_client import until_redis_answers


@dataclass(slots=True)
class ConsentResult:
    audit: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    rejections: list[Rejection] = field(default_factory=list)
    recorded: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))


class ConsentIngest:
    def __init__(self, *, topics: TopicNames, limits: ValidationLimits, partitions: int,
                 pseudonymise: Pseudonymiser, store: ConsentStore) -> None:
        self._topics = topics
        self._limits = limits
        self._partitions = partitions
        self._pseudonymise = pseudonymise
        self._store = store
        self._codec = codec_for(CONSENT_RECORD)

    async def ingest(self, batch: Sequence[Incoming]) -> ConsentResult:
        result = ConsentResult()
        now_ms = int(time.time() * 1000)
        changes: list[tuple[str, str, bool, int]] = []
        progress: dict[tuple[str, int], int] = {}
        for msg in batch:
            lender_id = self._topics.lender_of(msg.topic)
            if lender_id is None:
                raise ValueError(f"message from non-lender topic {msg.topic!r}")
            key = (msg.topic, msg.partition)
            progress[key] = max(progress.get(key, -1), msg.offset)
            try:
                if msg.value is None:
                    raise ValueError("empty")
                rec = check_consent_record(self._codec.decode(msg.value), lender_id=lender_id,
                                           limits=self._limits)
            except (CodecError, ValidationError, ValueError) as exc:
                reason = getattr(exc, "reason", RejectReason.MALFORMED)
                detail = f"field {exc.field}" if isinstance(exc, ValidationError) else "consent"
                result.rejections.append(Rejection(
                    lender_id=lender_id, reason=reason, detail=detail, source_topic=msg.topic,
                    source_partition=msg.partition, source_offset=msg.offset, event_id=None,
                    rejected_at_ms=now_ms))
                continue
            pseudonym = self._pseudonymise(rec.borrower_id)
            granted = rec.action == ConsentAction.GRANT
            changes.append((pseudonym, lender_id, granted, rec.effective_at_ms))
            result.recorded[(lender_id, str(rec.action))] += 1
            result.audit[partition_of(pseudonym, self._partitions)].append({
                "borrower": pseudonym, "lender_id": lender_id, "action": str(rec.action),
                "effective_at_ms": rec.effective_at_ms, "reference": rec.reference,
                "recorded_at_ms": now_ms, "source_topic": msg.topic,
                "source_partition": msg.partition, "source_offset": msg.offset,
            })
        await until_redis_answers(lambda: self._store.record(changes, progress),
                                  what="consent materialisation")
        return result
