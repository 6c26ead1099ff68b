"""Keyed pseudonyms for national ids.

The admission agent replaces the borrower's national id with ``HMAC-SHA256(key, id)`` as its
very first act after validation; nothing downstream (topics, Redis, ClickHouse, logs) ever sees
the raw id. A keyed HMAC rather than a plain hash because national ids have a small, structured
space (region, birth date, sequence): an unkeyed hash could be reversed by enumeration, a keyed
one only by whoever holds ``PSEUDONYM_KEY``.

Rotation: pseudonyms change with the key, so a rotation is a re-keying of stored data, not a
flag day. Run the new key alongside (``PSEUDONYM_KEY`` new, old kept by operators), re-ingest or
re-map stored pseudonyms with a one-off job that knows both keys, then drop the old key.
The key itself is a ``SecretStr`` in settings and is never printed.
"""

from __future__ import annotations

import hmac

#: 128 bits of the HMAC, as hex: collision-free at registry scale, half the storage.
PSEUDONYM_HEX_CHARS = 32


class Pseudonymiser:
    """Maps a normalised national id to its stable pseudonym."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the pseudonymisation key must be at least 16 bytes")
        self._key = key

    def __call__(self, national_id: str) -> str:
        digest = hmac.digest(self._key, national_id.encode(), "sha256")
        return digest.hex()[:PSEUDONYM_HEX_CHARS]

    def __repr__(self) -> str:  # never show the key
        return "Pseudonymiser(<key hidden>)"


def partition_of(pseudonym: str, partitions: int) -> int:
    """The registry partition of a borrower: stable for a fixed partition count."""
    return int(pseudonym[:8], 16) % partitions
