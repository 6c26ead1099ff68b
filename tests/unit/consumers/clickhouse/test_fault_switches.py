"""Test-only fault switches: refused in production, and the ClickHouse outage window."""

from __future__ import annotations

import time

import pytest

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.errors import ClickHouseUnavailable
from streams.settings import Settings


@pytest.mark.parametrize("switch", [{"fault_clickhouse_down_after_s": 5},
                                    {"fault_clickhouse_down_for_s": 30},
                                    {"fault_kill_after_insert_cycles": 3},
                                    {"test_disable_dedup": True}])
def test_production_refuses_test_switches(switch: dict) -> None:
    with pytest.raises(ValueError, match="test-only switches"):
        Settings(registry_mode="production", pseudonym_key="k" * 32, **switch)


class _Client:
    def __init__(self) -> None:
        self.calls = 0

    def command(self, sql, parameters=None, settings=None):
        self.calls += 1
        return 1

    def insert(self, table, rows, column_names=None, settings=None):
        self.calls += 1


def test_clickhouse_fails_only_inside_the_window() -> None:
    client = _Client()
    ch = ClickHouse(client, "db", down_after_s=0.2, down_for_s=0.3)
    ch.command("SELECT 1")
    time.sleep(0.25)
    with pytest.raises(ClickHouseUnavailable):
        ch.insert("t", [[1]], ["a"])
    with pytest.raises(ClickHouseUnavailable):
        ch.command("SELECT 1")
    time.sleep(0.3)
    ch.insert("t", [[1]], ["a"])
    assert client.calls == 2
    assert ClickHouse(client, "db")._down is None
