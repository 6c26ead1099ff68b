"""Test-only fault switches: refused in production, and the ClickHouse outage window."""

from __future__ import annotations

import time

import pytest

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.errors import ClickHouseUnavailable
from streams.settings import FaultSwitches, Settings


@pytest.mark.parametrize("switch", [{"clickhouse_down_after_s": 5},
                                    {"clickhouse_down_for_s": 30},
                                    {"kill_after_insert_cycles": 3},
                                    {"kill_during_erasure": True},
                                    {"sink_poison_event_id": "e-1"},
                                    {"disable_dedup": True}])
def test_production_refuses_test_switches(switch: dict) -> None:
    with pytest.raises(ValueError, match="test-only switches"):
        Settings(registry_mode="production", pseudonym_key="k" * 32,
                 faults=FaultSwitches(**switch))


def test_switches_are_read_from_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAULT_KILL_AFTER_INSERT_CYCLES", "4")
    monkeypatch.setenv("TEST_DISABLE_DEDUP", "1")
    faults = Settings().faults
    assert (faults.kill_after_insert_cycles, faults.disable_dedup) == (4, True)
    assert faults.any_set() and not FaultSwitches().model_copy(
        update={"kill_after_insert_cycles": 0, "disable_dedup": False}).any_set()
    assert [FaultSwitches.env_name(n) for n in ("disable_dedup", "kill_during_erasure")] == [
        "TEST_DISABLE_DEDUP", "FAULT_KILL_DURING_ERASURE"]


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


def test_a_subprocess_environment_rebuilds_the_same_settings(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    original = Settings(kafka_bootstrap="b1:9092,b2:9092", registry_partitions=3,
                        registry_data_dir=tmp_path, lag_poll_seconds=0.2,
                        pseudonym_key="p" * 32, max_amount="1234.50",
                        faults=FaultSwitches(kill_after_insert_cycles=2))
    for name in Settings.env_names():
        monkeypatch.delenv(name, raising=False)
    env = original.to_env()
    assert env["FAULT_KILL_AFTER_INSERT_CYCLES"] == "2"
    assert "FAULT_KILL_DURING_ERASURE" not in env  # switches only when set
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings().model_dump() == original.model_dump()
