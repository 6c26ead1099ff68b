"""ClickHouse errors are classified at the boundary: outage, refused data, refused statement.

The first test provokes real errors in embedded ClickHouse (chDB, in a subprocess: chDB allows
one data folder per process) through the registry's own facade and migrations; the others pin
the rules on the driver's exception classes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from clickhouse_connect.driver import exceptions as driver

from consumers.clickhouse.errors import (
    ClickHouseDataRefused,
    ClickHouseError,
    ClickHouseRefused,
    ClickHouseUnavailable,
    classify,
)

REPO = Path(__file__).resolve().parents[4]

_PROBE = r"""
import datetime, json, sys
from consumers.clickhouse.client import connect
from consumers.clickhouse.errors import ClickHouseError
from consumers.clickhouse.migrations import apply_migrations
from consumers.sink.rows import TABLE_COLUMNS
from streams.settings import Settings

ch = connect(Settings(registry_data_dir=sys.argv[1], clickhouse_url="",
                      clickhouse_database="probe"))
apply_migrations(ch)
now = datetime.datetime.now(datetime.UTC)
good = ["0" * 32, "bank", "e1", "l1", "draw", 100, "CNY", now, "", now, 1, ""]
cases = {
    "constraint": lambda: ch.insert("admitted_events", [good, ["110101199003074514", *good[1:]]],
                                    TABLE_COLUMNS["admitted_events"], dedup_token="t"),
    "encoding": lambda: ch.insert("admitted_events", [[*good[:5], "abc", *good[6:]]],
                                  TABLE_COLUMNS["admitted_events"]),
    "unknown_table": lambda: ch.insert("nope", [good], TABLE_COLUMNS["admitted_events"]),
    "syntax": lambda: ch.command("SELEC 1"),
    "stored": lambda: ch.query("SELECT count() FROM admitted_events")[0][0],
    "memory": lambda: ch.command("SELECT count() FROM numbers(10000000) GROUP BY number % "
                                 "1000000 SETTINGS max_memory_usage=1000000"),
    "timeout": lambda: ch.command("SELECT sleepEachRow(1) FROM numbers(3) "
                                  "SETTINGS max_execution_time=1"),
}
out = {}
for name, call in cases.items():
    try:
        out[name] = call()
    except ClickHouseError as exc:
        out[name] = [type(exc).__name__, exc.code, exc.name, exc.retriable,
                     type(exc.__cause__).__name__, "110101199003074514" in str(exc)]
print(json.dumps(out))
"""


def test_real_embedded_clickhouse_errors_are_classified(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path / "data")], cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["constraint"] == ["ClickHouseDataRefused", 469, "VIOLATED_CONSTRAINT", False,
                                 "DatabaseError", True]
    assert got["encoding"][:4] == ["ClickHouseDataRefused", None, "ValueError", False]
    assert got["unknown_table"][:4] == ["ClickHouseRefused", 60, "UNKNOWN_TABLE", False]
    assert got["syntax"][:4] == ["ClickHouseRefused", 62, "SYNTAX_ERROR", False]
    assert got["memory"][:4] == ["ClickHouseUnavailable", 241, "MEMORY_LIMIT_EXCEEDED", True]
    assert got["timeout"][:4] == ["ClickHouseUnavailable", 159, "TIMEOUT_EXCEEDED", True]
    assert got["stored"] == 0  # the refused block was refused whole: the good row is not in


@pytest.mark.parametrize(("code", "kind"), [
    (3, ClickHouseUnavailable), (159, ClickHouseUnavailable), (202, ClickHouseUnavailable),
    (209, ClickHouseUnavailable), (210, ClickHouseUnavailable), (241, ClickHouseUnavailable),
    (242, ClickHouseUnavailable), (252, ClickHouseUnavailable), (319, ClickHouseUnavailable),
    (999, ClickHouseUnavailable),
    (6, ClickHouseDataRefused), (27, ClickHouseDataRefused), (53, ClickHouseDataRefused),
    (70, ClickHouseDataRefused), (321, ClickHouseDataRefused), (349, ClickHouseDataRefused),
    (469, ClickHouseDataRefused),
    (16, ClickHouseRefused), (47, ClickHouseRefused), (60, ClickHouseRefused),
    (62, ClickHouseRefused), (81, ClickHouseRefused), (497, ClickHouseRefused),
    (516, ClickHouseRefused),
    (4242, ClickHouseUnavailable),  # unknown code: the conservative side (stall, lose nothing)
])
def test_server_codes_decide(code: int, kind: type[ClickHouseError]) -> None:
    err = classify(driver.DatabaseError(f"Code: {code}. DB::Exception: x", code=code))
    assert type(err) is kind
    assert err.code == code
    assert err.retriable is (kind is ClickHouseUnavailable)
    assert err.name is not None or code == 4242


def test_the_server_name_is_kept_and_the_message_too() -> None:
    err = classify(driver.DatabaseError("Code: 469. Constraint violated (VIOLATED_CONSTRAINT)",
                                        code=469, name="VIOLATED_CONSTRAINT"))
    assert (err.code, err.name, err.label) == (469, "VIOLATED_CONSTRAINT",
                                               "469 VIOLATED_CONSTRAINT")
    assert "Constraint violated" in str(err)


def test_too_many_partitions_in_one_block_is_the_data_but_too_many_parts_an_outage() -> None:
    shape = classify(driver.DatabaseError(
        "Code: 252. DB::Exception: Too many partitions for single INSERT block (more than 100)",
        code=252))
    load = classify(driver.DatabaseError(
        "Code: 252. DB::Exception: Too many parts (3001) in partition", code=252))
    assert type(shape) is ClickHouseDataRefused
    assert type(load) is ClickHouseUnavailable and load.name == "TOO_MANY_PARTS"


def test_driver_classes_without_a_code() -> None:
    assert type(classify(driver.OperationalError("Network Error"))) is ClickHouseUnavailable
    assert type(classify(ConnectionRefusedError(111, "refused"))) is ClickHouseUnavailable
    assert type(classify(TimeoutError("read timed out"))) is ClickHouseUnavailable
    assert type(classify(driver.DataError("Unable to create native array"))) is \
        ClickHouseDataRefused
    assert type(classify(driver.ProgrammingError("Unrecognized column"))) is ClickHouseRefused
    # a value the driver cannot encode is the data's fault only when inserting
    assert type(classify(ValueError("bad"), inserting=True)) is ClickHouseDataRefused
    assert type(classify(TypeError("bad"), inserting=True)) is ClickHouseDataRefused
    assert type(classify(ValueError("bad"))) is ClickHouseRefused
    already = ClickHouseRefused("x", code=60)
    assert classify(already) is already
