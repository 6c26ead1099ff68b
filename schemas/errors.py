"""The root of every error raised by the ``schemas`` package.

Callers branch on attributes, not on lists of classes: ``err.retriable`` says whether trying the
same input again can succeed (never, for a schema or validation problem: the bytes will not get
better), and ``err.reason`` is the :class:`RejectReason` to count and to write into the
dead-letter notice when the error is about one input record.
"""

from __future__ import annotations

from schemas.reasons import RejectReason


class SchemaError(Exception):
    """Base class: a record, a schema or a value that breaks the lender contract."""

    #: Re-trying the same input cannot succeed; send it to the dead-letter topic instead.
    retriable: bool = False
    #: Why the record is rejected, when the error is about one input record.
    reason: RejectReason | None = None
