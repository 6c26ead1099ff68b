"""Errors of the lender room: the publisher lenders use.

All descend from :class:`schemas.errors.RegistryError`; ``retriable`` says whether publishing
again can succeed (an unavailable broker, unacknowledged records) or not (unsafe settings, a
record of another lender).
"""

from __future__ import annotations

from schemas.errors import RegistryError


class PublisherError(RegistryError, RuntimeError):
    """Base of the publisher's errors."""

    retriable = False


class UnsafePublisherSettings(PublisherError):
    """The publisher was asked to run without acks=all or without idempotence."""

    retriable = False


class WrongLender(PublisherError):
    """A record names another lender than the one this publisher publishes as."""

    retriable = False


class PublisherUnavailable(PublisherError):
    """The producer could not connect to any broker."""

    retriable = True


class PublishError(PublisherError):
    """A record was not acknowledged by the broker."""

    retriable = True

    def __init__(self, message: str, *, topic: str | None = None) -> None:
        super().__init__(message)
        self.topic = topic
