"""Why an event was not admitted. Codes, not strings, so they can be counted and alerted on."""

from __future__ import annotations

from enum import StrEnum


class RejectReason(StrEnum):
    # the bytes themselves
    MALFORMED = "MALFORMED"  # not a decodable record of a known schema
    UNKNOWN_SCHEMA = "UNKNOWN_SCHEMA"  # single-object header with an unknown fingerprint
    OVERSIZED = "OVERSIZED"  # larger than MAX_RECORD_BYTES
    # the fields
    MISSING_FIELD = "MISSING_FIELD"  # a required id empty or absent
    FIELD_TOO_LONG = "FIELD_TOO_LONG"  # an id longer than its bound
    INVALID_BORROWER_ID = "INVALID_BORROWER_ID"  # format or check character wrong
    INVALID_AMOUNT = "INVALID_AMOUNT"  # <= 0, more than 2 decimals, above the bound
    INVALID_EVENT_TYPE = "INVALID_EVENT_TYPE"
    INVALID_CURRENCY = "INVALID_CURRENCY"
    INVALID_TIMESTAMP = "INVALID_TIMESTAMP"  # unparseable or without an offset
    FUTURE_TIMESTAMP = "FUTURE_TIMESTAMP"  # beyond the tolerated clock skew
    INVALID_ACTION = "INVALID_ACTION"  # consent action other than grant/revoke
    #: cancels_event_id on an event that is not a cancel, or naming the cancel itself
    INVALID_CANCEL = "INVALID_CANCEL"
    # the lender binding
    LENDER_MISMATCH = "LENDER_MISMATCH"  # payload lender_id differs from the publishing lender
    # the stream's decisions
    DUPLICATE = "DUPLICATE"  # (lender, event_id) already admitted or decided
    NO_CONSENT = "NO_CONSENT"  # no consent in force at occurred_at
    #: an admitted cancel whose event never arrived within the de-duplication horizon (a
    #: report, sent when the horizon passes in event time; the cancel itself was admitted)
    CANCEL_UNMATCHED = "CANCEL_UNMATCHED"


#: Reasons decided by the stream after validation; the rest come from validation.
STREAM_REASONS = frozenset({RejectReason.DUPLICATE, RejectReason.NO_CONSENT,
                            RejectReason.CANCEL_UNMATCHED})
