"""ClickHouse itself parses every statement the migrations generate for a cluster.

The embedded engine has no cluster, so the statements are not run: ``formatQuery`` parses each
one with the real ClickHouse parser (a syntax error raises) and gives it back normalised, and
the normalised text must still name the replicated engine, the cluster and the sharding key.
Running them on a real two-shard cluster is left to the Docker ``cluster`` profile
(README, "ClickHouse cluster").
"""

from __future__ import annotations

import uuid

import pytest

from consumers.clickhouse.client import ClickHouse, connect
from consumers.clickhouse.migrations import MIGRATIONS_DIR, render_for_cluster, split_statements
from streams.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ClickHouse:
    """The suite's ``clickhouse`` fixture when it exists, else one embedded chDB per module."""
    try:
        return request.getfixturevalue("clickhouse")
    except pytest.FixtureLookupError:
        pass
    return connect(Settings(registry_data_dir=tmp_path_factory.mktemp("ddl"),
                            clickhouse_database="t_" + uuid.uuid4().hex[:12]))


def test_clickhouse_parses_every_generated_cluster_statement(ch: ClickHouse) -> None:
    statements = [sql for path in sorted(MIGRATIONS_DIR.glob("*.sql"))
                  for statement in split_statements(path.read_text())
                  for sql in render_for_cluster(statement, "two_shards", "registry")]
    assert statements
    for sql in statements:
        formatted = ch.query("SELECT formatQuery({q:String})", {"q": sql})[0][0]
        assert "ON CLUSTER two_shards" in formatted, formatted
        if formatted.startswith("CREATE TABLE") and formatted.split(" ON CLUSTER")[0].endswith(
                "_local"):
            assert "ENGINE = Replicated" in formatted, formatted
            assert "replicated_deduplication_window" in formatted, formatted
    daily = [sql for sql in statements
             if sql.startswith("CREATE TABLE IF NOT EXISTS borrower_daily ")]
    formatted = ch.query("SELECT formatQuery({q:String})", {"q": daily[0]})[0][0]
    assert formatted.endswith(
        "ENGINE = Distributed(two_shards, registry, borrower_daily_local, cityHash64(borrower))")
