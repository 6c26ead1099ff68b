"""DDL of the migrations for a ClickHouse cluster (``CLICKHOUSE_CLUSTER``), as generated text.

Checked here: every table of the real migration files becomes a ``Replicated*MergeTree``
``<name>_local`` ``ON CLUSTER`` with ``replicated_deduplication_window`` plus a ``Distributed``
``<name>`` sharded by ``cityHash64(borrower)`` when it has a borrower; views and ALTERs go
``ON CLUSTER``; anything else is refused; without a cluster nothing changes. That ClickHouse
parses every generated statement is checked in ``tests/integration/test_cluster_ddl_parse.py``.
"""

from __future__ import annotations

import re

import pytest

from consumers.clickhouse.errors import MigrationError
from consumers.clickhouse.migrations import (
    MIGRATIONS_DIR,
    render_for_cluster,
    rendered,
    sharding_key,
    split_statements,
)

DAILY = """CREATE TABLE IF NOT EXISTS borrower_daily (
    borrower String,
    day Date,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (borrower, day)
SETTINGS non_replicated_deduplication_window = 1000, index_granularity = 256"""


def _all_statements() -> list[str]:
    return [s for p in sorted(MIGRATIONS_DIR.glob("*.sql"))
            for s in split_statements(p.read_text())]


def test_table_becomes_replicated_local_plus_distributed_by_borrower() -> None:
    local, dist = render_for_cluster(DAILY, "two_shards", "registry")
    assert local == (
        "CREATE TABLE IF NOT EXISTS borrower_daily_local ON CLUSTER `two_shards` (\n"
        "    borrower String,\n    day Date,\n    version UInt64\n"
        ") ENGINE = ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/{shard}/registry/borrower_daily_local', '{replica}', version)\n"
        "PARTITION BY toYYYYMM(day)\nORDER BY (borrower, day)\n"
        "SETTINGS replicated_deduplication_window = 1000, index_granularity = 256")
    assert dist == (
        "CREATE TABLE IF NOT EXISTS borrower_daily ON CLUSTER `two_shards` AS "
        "borrower_daily_local ENGINE = Distributed(`two_shards`, `registry`, "
        "borrower_daily_local, cityHash64(borrower))")


def test_table_without_settings_gets_the_replicated_window() -> None:
    sql = "CREATE TABLE IF NOT EXISTS e (erased_at DateTime) ENGINE = MergeTree\nORDER BY erased_at"
    local, dist = render_for_cluster(sql, "c", "db")
    assert local == ("CREATE TABLE IF NOT EXISTS e_local ON CLUSTER `c` (erased_at DateTime) "
                     "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db/e_local', "
                     "'{replica}')\nORDER BY erased_at\n"
                     "SETTINGS replicated_deduplication_window = 1000")
    assert dist.endswith("Distributed(`c`, `db`, e_local, cityHash64(erased_at))")


def test_sharding_key_without_borrower_hashes_the_sort_key() -> None:
    assert sharding_key("borrower String, day Date", "ORDER BY (day)") == "cityHash64(borrower)"
    assert sharding_key("lender String, day Date", "ORDER BY (day)") == "cityHash64(day)"
    assert sharding_key("\n  borrower String,\n", "ORDER BY x") == "cityHash64(borrower)"
    assert sharding_key("lender String", "ORDER BY (a, b)") == "cityHash64(a, b)"
    assert sharding_key("lender String", "ORDER BY tuple()") == "rand()"
    assert sharding_key("borrower_hash String", "ORDER BY t") == "cityHash64(t)"


def test_every_table_of_the_migrations_is_rendered_for_the_cluster() -> None:
    statements = _all_statements()
    tables = [m.group(1) for s in statements
              if (m := re.match(r"CREATE TABLE IF NOT EXISTS\s+(\w+)", s))]
    assert {"borrower_daily", "inquiries", "admitted_events", "rejections"} <= set(tables)
    out = [sql for s in statements for sql in render_for_cluster(s, "c", "db")]
    for name in tables:
        local = [sql for sql in out if sql.startswith(f"CREATE TABLE IF NOT EXISTS {name}_local ")]
        dist = [sql for sql in out if sql.startswith(f"CREATE TABLE IF NOT EXISTS {name} ")]
        assert len(local) == 1 and len(dist) == 1, name
        assert "ON CLUSTER `c`" in local[0] and "ENGINE = Replicated" in local[0]
        assert "replicated_deduplication_window" in local[0]
        assert "non_replicated_deduplication_window" not in local[0]
        assert f"Distributed(`c`, `db`, {name}_local, " in dist[0]
    for name in ("borrower_daily", "borrower_hourly", "admitted_events", "inquiries",
                 "consent_audit"):
        assert any(sql.endswith(f"{name}_local, cityHash64(borrower))") for sql in out), name
    assert all("ON CLUSTER `c`" in sql for sql in out)


def test_views_and_alters_go_on_cluster_and_others_are_refused() -> None:
    assert render_for_cluster("CREATE VIEW IF NOT EXISTS v AS SELECT 1", "c", "db") == [
        "CREATE VIEW IF NOT EXISTS v ON CLUSTER `c` AS SELECT 1"]
    assert render_for_cluster("ALTER TABLE t ADD COLUMN IF NOT EXISTS x UInt8", "c", "db") == [
        "ALTER TABLE t_local ON CLUSTER `c` ADD COLUMN IF NOT EXISTS x UInt8",
        "ALTER TABLE t ON CLUSTER `c` ADD COLUMN IF NOT EXISTS x UInt8"]
    # storage settings exist on the MergeTree tables only, not on the Distributed one
    assert render_for_cluster("ALTER TABLE t MODIFY SETTING min_compress_block_size = 4096",
                              "c", "db") == [
        "ALTER TABLE t_local ON CLUSTER `c` MODIFY SETTING min_compress_block_size = 4096"]
    with pytest.raises(MigrationError):
        render_for_cluster("INSERT INTO t VALUES (1)", "c", "db")


def test_without_a_cluster_statements_run_as_written() -> None:
    for statement in _all_statements():
        assert rendered(statement, "", "db") == [statement]
