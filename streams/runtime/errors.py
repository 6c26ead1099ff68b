"""Errors of the runtime room (metrics exposition).

They descend from :class:`schemas.errors.RegistryError`.
"""

from __future__ import annotations

from schemas.errors import RegistryError


class MetricsError(RegistryError, ValueError):
    """A metric used against its declaration (wrong label count, bad name or buckets)."""

    retriable = False
