"""Topic names. A lender owns exactly the topics under ``lenders.<lender_id>.``.

Per-lender input topics let broker ACLs bind a lender's identity to what it may write; the
admission agent binds the payload's ``lender_id`` to the topic it arrived on. Every name can
carry a namespace prefix (``KAFKA_NAMESPACE``) so that several registries, or several tests,
share one broker without seeing each other's data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.errors import InvalidLenderId

LENDER_ID_PATTERN = r"[a-z0-9][a-z0-9_-]{0,47}"
_LENDER_ID = re.compile(LENDER_ID_PATTERN)


def check_lender_id(lender_id: str) -> str:
    if not _LENDER_ID.fullmatch(lender_id):
        raise InvalidLenderId(
            f"lender id {lender_id!r} must match {LENDER_ID_PATTERN} (lower case, digits, - _)"
        )
    return lender_id


@dataclass(frozen=True, slots=True)
class TopicNames:
    """All topic names of one registry deployment."""

    namespace: str = ""

    # --- lender-owned topics ---------------------------------------------------------------
    def loans(self, lender_id: str) -> str:
        return f"{self.namespace}lenders.{check_lender_id(lender_id)}.loans"

    def consent(self, lender_id: str) -> str:
        return f"{self.namespace}lenders.{check_lender_id(lender_id)}.consent"

    def rejected(self, lender_id: str) -> str:
        return f"{self.namespace}lenders.{check_lender_id(lender_id)}.rejected"

    def _pattern(self, kind: str) -> str:
        return rf"^{re.escape(self.namespace)}lenders\.{LENDER_ID_PATTERN}\.{kind}$"

    @property
    def loans_pattern(self) -> str:
        return self._pattern("loans")

    @property
    def consent_pattern(self) -> str:
        return self._pattern("consent")

    @property
    def rejected_pattern(self) -> str:
        return self._pattern("rejected")

    def lender_of(self, topic: str) -> str | None:
        """The lender that owns ``topic``, or None for a topic outside ``lenders.*``."""
        if not topic.startswith(self.namespace):
            return None
        parts = topic[len(self.namespace) :].split(".")
        if len(parts) == 3 and parts[0] == "lenders" and _LENDER_ID.fullmatch(parts[1]):
            return parts[1]
        return None

    # --- registry-internal topics (keyed by borrower pseudonym) ----------------------------
    @property
    def validated(self) -> str:
        """Validated, pseudonymised loan events in batches (bulk intake -> stream agent), and
        erasure commands; partitioned by borrower pseudonym."""
        return f"{self.namespace}registry.validated"

    @property
    def activity(self) -> str:
        """Ledger rows, absolute bucket states and corrections for the ClickHouse sink."""
        return f"{self.namespace}registry.activity"

    @property
    def consent_audit(self) -> str:
        """Pseudonymised consent changes for the audit trail."""
        return f"{self.namespace}registry.consent-audit"

    @property
    def alerts(self) -> str:
        """Velocity alerts for risk teams."""
        return f"{self.namespace}registry.alerts"
