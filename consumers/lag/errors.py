"""Errors of the lag room: sampling consumer lag and keeping its history.

Both are retriable (:class:`schemas.errors.RegistryError`): the next sample or write may work.
"""

from __future__ import annotations

from schemas.errors import RegistryError


class LagMonitorError(RegistryError, RuntimeError):
    """One sample could not be taken (broker unreachable, request failed or timed out)."""

    retriable = True


class LagHistoryError(RegistryError, RuntimeError):
    """Writing lag history failed; the rows stay buffered for the next attempt."""

    retriable = True
