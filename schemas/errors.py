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


class InvalidNationalId(RegistryError, ValueError):
    """Not a valid resident id after normalisation. The message never repeats the value."""

    retriable = False


class InvalidLenderId(RegistryError, ValueError):
    """A lender id that cannot name topics."""

    retriable = False


class ValidationError(SchemaError):
    """One field breaks the contract. ``str(err)`` names the field and the problem."""

    def __init__(self, reason: RejectReason, field: str, message: str) -> None:
        super().__init__(message)
        self.reason: RejectReason = reason
        self.field = field


class CodecError(SchemaError):
    """Bytes or a record that the codec cannot handle."""


class UnknownSchemaError(CodecError):
    """A single-object header whose fingerprint is no known version of the family."""

    reason = RejectReason.UNKNOWN_SCHEMA


class MalformedRecordError(CodecError):
    """No single-object marker, a truncated record, or a body that is not valid Avro."""

    reason = RejectReason.MALFORMED


class UnknownRecordNameError(CodecError, KeyError):
    """No schema file (and no registered schema) defines this record full name."""

    reason = RejectReason.UNKNOWN_SCHEMA

    def __str__(self) -> str:  # KeyError would print the repr of the argument
        return str(self.args[0]) if self.args else ""


class EncodeError(CodecError):
    """A record that does not match the writer schema (a bug on the producing side)."""
