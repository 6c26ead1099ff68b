"""Finding the rows ClickHouse refuses in a batch, while inserting all the others.

:func:`insert_isolating` promises, for an ``insert(rows, token)`` that takes a block whole or
refuses it whole:

* every row that is not refused on its own has been inserted (exactly once per token: see
  below), and the refused rows are returned, each with the refusal it got alone;
* only :class:`~consumers.clickhouse.errors.ClickHouseDataRefused` starts a split. Any other
  error (an outage, a refused statement) propagates unchanged, possibly after some halves are
  already in;
* the tokens are a pure function of ``token`` and the row range (``<token>/<lo>-<hi>``, the
  whole batch keeps ``token`` itself), so a retry of the same batch after any failure walks
  the same tree with the same tokens: ClickHouse ignores the blocks that already landed
  (``insert_deduplication_token``), and the result is the same.

Cost: one insert when nothing is refused; with ``k`` refused rows among ``n``, at most about
``2 k log2(n)`` more inserts (a single bad row in 20 000: 30 more).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from consumers.clickhouse.errors import ClickHouseDataRefused

Insert = Callable[[Sequence[Sequence[Any]], str], None]


class Refusal(NamedTuple):
    """Row ``index`` of the batch, refused on its own with ``error``."""

    # the field shadows tuple.index() on purpose: callers read ``.index`` and unpack the pair
    index: int  # type: ignore[assignment]
    error: ClickHouseDataRefused


def range_token(token: str, lo: int, hi: int, size: int) -> str:
    """The deduplication token of rows ``[lo, hi)`` of a batch of ``size`` rows."""
    return token if (lo, hi) == (0, size) else f"{token}/{lo}-{hi}"


def insert_isolating(insert: Insert, rows: Sequence[Sequence[Any]], token: str) -> list[Refusal]:
    """Insert ``rows`` with ``token``; bisect a refused block down to the refused rows.

    Returns the refused rows in index order (empty when the whole batch was taken at once).
    """
    refused: list[Refusal] = []
    size = len(rows)

    def attempt(lo: int, hi: int) -> None:
        try:
            insert(rows[lo:hi], range_token(token, lo, hi, size))
        except ClickHouseDataRefused as exc:
            if hi - lo == 1:
                refused.append(Refusal(lo, exc))
                return
            mid = (lo + hi) // 2
            attempt(lo, mid)
            attempt(mid, hi)

    if size:
        attempt(0, size)
    return refused
