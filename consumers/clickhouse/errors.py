"""ClickHouse failures as types the sink can act on (back off, or give up)."""

from __future__ import annotations


class ClickHouseError(Exception):
    """Base of ClickHouse failures seen by the registry."""

    retriable: bool = False


class ClickHouseUnavailable(ClickHouseError):
    """The server or embedded engine did not take the request; trying again may work."""

    retriable = True


class MigrationError(ClickHouseError):
    """A migration file could not be applied; start-up stops here."""
