"""The root of every registry error (:class:`RegistryError`) and the ``schemas`` family.

Callers branch on attributes, not on lists of classes: ``err.retriable`` says whether trying the
same input again can succeed (never, for a schema or validation problem: the bytes will not get
better), and ``err.reason`` is the :class:`RejectReason` to count and to write into the
dead-letter notice when the error is about one input record.
"""

from __future__ import annotations

from schemas.reasons import RejectReason


class RegistryError(Exception):
    """The root of every error the registry's own code raises (schemas, streams, consumers).

    ``retriable``: whether trying the same operation again, unchanged, can succeed (a service
    that was down may come back; bad input never gets better). Every family below sets it for
    itself and its branches, so a caller chooses between retrying and giving up with one
    attribute (the model is aiokafka's ``KafkaError.retriable``). Third-party errors are
    classified into a family at the boundary where they are caught, keeping their code.
    """

    retriable: bool = False


class SchemaError(RegistryError):
    """Base class: a record, a schema or a value that breaks the lender contract."""

    #: Re-trying the same input cannot succeed; send it to the dead-letter topic instead.
    retriable: bool = False
    #: Why the record is rejected, when the error is about one input record.
    reason: RejectReason | None = None
