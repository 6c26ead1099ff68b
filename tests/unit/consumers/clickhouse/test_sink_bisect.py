"""Bisection of a refused insert: the refused rows are found, every other row lands once.

The fake ClickHouse below behaves like a ReplacingMergeTree insert with
``insert_deduplication_token``: a block is taken whole or refused whole (a row is refused when
its value is negative), a repeated token is ignored, and it can be switched into an outage.
"""

from __future__ import annotations

import json
import random

import pytest

from consumers.clickhouse.bisect import insert_isolating, range_token
from consumers.clickhouse.errors import (
    ClickHouseDataRefused,
    ClickHouseRefused,
    ClickHouseUnavailable,
)
from consumers.sink.loop import REDACTED, _redacted


class FakeTable:
    def __init__(self) -> None:
        self.rows: list[int] = []
        self.tokens: set[str] = set()
        self.calls = 0
        self.outage_after: int | None = None  # calls before an outage starts
        self.refuse_statement = False

    def insert(self, block, token: str) -> None:
        self.calls += 1
        if self.outage_after is not None and self.calls > self.outage_after:
            raise ClickHouseUnavailable("down", code=210, name="NETWORK_ERROR")
        if self.refuse_statement:
            raise ClickHouseRefused("no table", code=60, name="UNKNOWN_TABLE")
        bad = [row[0] for row in block if row[0] < 0]
        if bad:
            raise ClickHouseDataRefused(f"violated at value {bad[0]}", code=469,
                                        name="VIOLATED_CONSTRAINT")
        if token in self.tokens:
            return
        self.tokens.add(token)
        self.rows += [row[0] for row in block]


def _batch(n: int, bad: set[int]) -> list[list[int]]:
    return [[-i - 1 if i in bad else i] for i in range(n)]


def test_clean_batch_is_one_insert_with_the_batch_token() -> None:
    table = FakeTable()
    assert insert_isolating(table.insert, _batch(5000, set()), "t") == []
    assert table.calls == 1 and table.tokens == {"t"}
    assert sorted(table.rows) == list(range(5000))


@pytest.mark.parametrize("bad", [{0}, {4999}, {2500}, {17, 18}, {3, 1000, 4242, 4998}])
def test_refused_rows_are_isolated_and_the_rest_inserted(bad: set[int]) -> None:
    table = FakeTable()
    refused = insert_isolating(table.insert, _batch(5000, bad), "t")
    assert [r.index for r in refused] == sorted(bad)
    assert all(r.error.code == 469 and r.error.name == "VIOLATED_CONSTRAINT" for r in refused)
    assert sorted(table.rows) == sorted(set(range(5000)) - bad)  # each good row exactly once
    assert table.calls <= 1 + 2 * len(bad) * 13  # ~2 k log2(n)


def test_one_bad_row_in_twenty_thousand_costs_about_thirty_inserts() -> None:
    table = FakeTable()
    refused = insert_isolating(table.insert, _batch(20_000, {12_345}), "t")
    assert [r.index for r in refused] == [12_345]
    assert len(table.rows) == 19_999
    assert table.calls <= 1 + 2 * 15  # 20 000 rows: at most 15 levels, two inserts each


def test_every_row_refused_is_every_row_dead_lettered() -> None:
    table = FakeTable()
    refused = insert_isolating(table.insert, _batch(8, set(range(8))), "t")
    assert [r.index for r in refused] == list(range(8)) and table.rows == []


def test_a_retry_after_an_outage_mid_bisection_is_idempotent() -> None:
    rng = random.Random(7)
    for _ in range(30):
        bad = set(rng.sample(range(3000), rng.randint(1, 4)))
        rows = _batch(3000, bad)
        table = FakeTable()
        table.outage_after = rng.randint(1, 20)
        with pytest.raises(ClickHouseUnavailable):
            insert_isolating(table.insert, rows, "t")
        table.outage_after = None
        refused = insert_isolating(table.insert, rows, "t")  # same batch, same tokens
        assert [r.index for r in refused] == sorted(bad)
        assert sorted(table.rows) == sorted(set(range(3000)) - bad)  # nothing twice


def test_a_refused_statement_is_not_bisected() -> None:
    table = FakeTable()
    table.refuse_statement = True
    with pytest.raises(ClickHouseRefused) as caught:
        insert_isolating(table.insert, _batch(100, {5}), "t")
    assert type(caught.value) is ClickHouseRefused and table.calls == 1


def test_range_tokens_are_stable_and_distinct() -> None:
    assert range_token("t", 0, 10, 10) == "t"
    assert range_token("t", 0, 5, 10) == "t/0-5"
    assert range_token("t", 5, 10, 10) == "t/5-10"


def test_a_borrower_that_is_not_a_pseudonym_is_redacted_in_the_dead_letter() -> None:
    raw = "110101199003074514"
    text, message = _redacted(("borrower", "event_id"), [raw, "e-1"],
                              f"Constraint violated. Column values: borrower = '{raw}'")
    assert raw not in text and raw not in message
    assert json.loads(text) == {"borrower": REDACTED, "event_id": "e-1"}
    pseudonym = "0123456789abcdef0123456789abcdef"
    text, _ = _redacted(("borrower", "event_id"), [pseudonym, "e-2"], "m")
    assert json.loads(text) == {"borrower": pseudonym, "event_id": "e-2"}


def test_production_refuses_the_poison_switch() -> None:
    from streams.settings import FaultSwitches, Settings

    with pytest.raises(ValueError, match="test-only switches"):
        Settings(registry_mode="production", pseudonym_key="k" * 32,
                 faults=FaultSwitches(sink_poison_event_id="e-1"))
