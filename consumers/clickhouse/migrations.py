"""Ordered, idempotent DDL migrations from ``infra/clickhouse/migrations/NNNN_name.sql``.

Every statement is written to be re-runnable (``IF NOT EXISTS``); applied files are also
recorded in ``schema_migrations`` so operators can see what ran. Statements are separated by a
line that ends with ``;``. Table names are unqualified: the client is bound to the registry
database (``CLICKHOUSE_DATABASE``).
"""

from __future__ import annotations

from pathlib import Path

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.errors import ClickHouseError, MigrationError
from streams.settings import REPO_ROOT

MIGRATIONS_DIR = REPO_ROOT / "infra" / "clickhouse" / "migrations"


def split_statements(sql: str) -> list[str]:
    """Split a migration file into statements, dropping ``--`` comment lines."""
    statements, current = [], []
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statement = "\n".join(current).strip().rstrip(";").strip()
            if statement:
                statements.append(statement)
            current = []
    tail = "\n".join(current).strip()
    if tail:
        statements.append(tail)
    return statements


def apply_migrations(ch: ClickHouse, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every migration in name order; return the names applied now (not before)."""
    ch.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY name"
    )
    done = {row[0] for row in ch.query("SELECT name FROM schema_migrations")}
    applied = []
    for path in sorted(directory.glob("*.sql")):
        for statement in split_statements(path.read_text()):
            try:
                ch.command(statement)
            except ClickHouseError as exc:
                raise MigrationError(f"{path.name}: {exc}") from exc
        if path.name not in done:
            ch.insert("schema_migrations", [[path.name]], ["name"])
            applied.append(path.name)
    return applied
