"""Errors of the Kafka room: topic administration and security (ACLs, SCRAM).

All descend from :class:`schemas.errors.RegistryError`; ``retriable`` says whether trying again
can succeed (a broker that was unreachable may come back; a refused replication plan will not).
"""

from __future__ import annotations

from schemas.errors import RegistryError


class SecurityAdminError(RegistryError, RuntimeError):
    """Credentials or ACLs could not be created."""

    retriable = False


class AuthorizerMissing(SecurityAdminError):
    """The broker has no authorizer configured, so ACLs cannot be stored."""

    retriable = False


class TopicAdminError(RegistryError, RuntimeError):
    """Topics could not be created or confirmed."""

    retriable = False


class BrokerUnavailable(TopicAdminError):
    """No broker answered at the configured bootstrap address."""

    retriable = True


class TopicsNotReady(TopicAdminError):
    """Topics were requested but did not appear in the metadata before the deadline."""

    retriable = True


class ReplicationRefused(TopicAdminError):
    """The configured replication would lose data on a broker loss, or cannot be created."""

    retriable = False
