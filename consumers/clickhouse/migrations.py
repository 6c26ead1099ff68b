"""Ordered, idempotent DDL migrations from ``infra/clickhouse/migrations/NNNN_name.sql``.

Every statement is written to be re-runnable (``IF NOT EXISTS``); applied files are also
recorded in ``schema_migrations`` so operators can see what ran. Statements are separated by a
line that ends with ``;``. Table names are unqualified: the client is bound to the registry
database (``CLICKHOUSE_DATABASE``).

Cluster mode (``CLICKHOUSE_CLUSTER`` names a cluster of the servers' ``remote_servers``): the
same files are rendered for a sharded, replicated registry by :func:`render_for_cluster`.

* ``CREATE TABLE t (...) ENGINE = XMergeTree(args) ...`` becomes two tables, both
  ``ON CLUSTER``: ``t_local`` with ``ReplicatedXMergeTree('/clickhouse/tables/{shard}/<db>/
  t_local', '{replica}', args)`` (``{shard}``/``{replica}`` are the servers' macros) and
  ``non_replicated_deduplication_window`` turned into ``replicated_deduplication_window``
  (1000 when the file sets none), and ``t`` itself as ``Distributed(cluster, db, t_local,
  key)``. Readers and writers keep using ``t``.
* The sharding key keeps a borrower on one shard: ``cityHash64(borrower)`` for every table with
  a ``borrower`` column, so a borrower's rows, their ``argMax``/``FINAL`` collapsing and the
  risk API's point reads stay on one shard (``optimize_skip_unused_shards`` then asks only
  that shard). Tables without a borrower hash their ``ORDER BY`` key, so a retried insert
  lands on the shard that holds the row it repeats (replacing and deduplication are per
  shard).
* ``CREATE VIEW`` gets ``ON CLUSTER``; ``ALTER TABLE t`` is applied to ``t_local`` and ``t``,
  ``ON CLUSTER``, except ``ALTER TABLE t MODIFY SETTING``: storage settings belong to the
  MergeTree tables, so it goes to ``t_local`` only (the Distributed ``t`` has none of them).
  Any other statement is refused (:class:`MigrationError`): a migration that cannot be
  rendered must say so rather than create a table on one server only.

Without a cluster the statements run exactly as written (the embedded path).
"""

from __future__ import annotations

import re
from pathlib import Path

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.errors import ClickHouseError, MigrationError
from streams.settings import REPO_ROOT

MIGRATIONS_DIR = REPO_ROOT / "infra" / "clickhouse" / "migrations"

#: Deduplication window of the replicated tables when a migration sets none (inserts
#: remembered per table for retries carrying the same ``insert_deduplication_token``).
REPLICATED_DEDUP_WINDOW = 1000

_SCHEMA_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
    "ENGINE = ReplacingMergeTree ORDER BY name"
)

_CREATE_TABLE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS\s+(?P<name>\w+)\s*\((?P<columns>.*)\)\s*"
    r"ENGINE\s*=\s*(?P<engine>\w*MergeTree)(?:\s*\((?P<args>[^)]*)\))?(?P<tail>.*)$",
    re.DOTALL | re.IGNORECASE,
)
_CREATE_VIEW = re.compile(r"^CREATE VIEW IF NOT EXISTS\s+(?P<name>\w+)\s+(?P<rest>AS\b.*)$",
                          re.DOTALL | re.IGNORECASE)
_ALTER_TABLE = re.compile(r"^ALTER TABLE\s+(?P<name>\w+)\s+(?P<rest>.*)$",
                          re.DOTALL | re.IGNORECASE)
_MODIFY_SETTING = re.compile(r"^MODIFY\s+SETTING\b", re.IGNORECASE)
_ORDER_BY = re.compile(r"\bORDER BY\s+(?P<key>\([^)]*\)|[\w]+)", re.IGNORECASE)
_NON_REPLICATED = re.compile(r"\bnon_replicated_deduplication_window\s*=", re.IGNORECASE)
_SETTINGS = re.compile(r"\bSETTINGS\b", re.IGNORECASE)


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


def _quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def sharding_key(columns: str, tail: str) -> str:
    """``cityHash64(borrower)`` when the table has a borrower column, else the hash of its
    ``ORDER BY`` key (``rand()`` only for a table ordered by nothing)."""
    if re.search(r"^\s*borrower\s", columns, re.MULTILINE):
        return "cityHash64(borrower)"
    match = _ORDER_BY.search(tail)
    key = match.group("key").strip("() ") if match else ""
    return f"cityHash64({key})" if key and key.lower() != "tuple" else "rand()"


def render_for_cluster(statement: str, cluster: str, database: str) -> list[str]:
    """The statements that apply ``statement`` on ``cluster`` (see the module doc)."""
    on = f"ON CLUSTER {_quote(cluster)}"
    if table := _CREATE_TABLE.match(statement):
        name, columns, tail = table["name"], table["columns"], table["tail"]
        local = f"{name}_local"
        path = f"'/clickhouse/tables/{{shard}}/{database}/{local}'"
        args = ", ".join(a for a in (path, "'{replica}'", (table["args"] or "").strip()) if a)
        if _NON_REPLICATED.search(tail):
            tail = _NON_REPLICATED.sub("replicated_deduplication_window =", tail)
        elif _SETTINGS.search(tail):
            tail = _SETTINGS.sub(
                f"SETTINGS replicated_deduplication_window = {REPLICATED_DEDUP_WINDOW},",
                tail, count=1)
        else:
            tail = (f"{tail.rstrip()}\nSETTINGS replicated_deduplication_window = "
                    f"{REPLICATED_DEDUP_WINDOW}")
        return [
            f"CREATE TABLE IF NOT EXISTS {local} {on} ({columns}) "
            f"ENGINE = Replicated{table['engine']}({args}){tail}",
            f"CREATE TABLE IF NOT EXISTS {name} {on} AS {local} "
            f"ENGINE = Distributed({_quote(cluster)}, {_quote(database)}, {local}, "
            f"{sharding_key(columns, table['tail'])})",
        ]
    if view := _CREATE_VIEW.match(statement):
        return [f"CREATE VIEW IF NOT EXISTS {view['name']} {on} {view['rest']}"]
    if alter := _ALTER_TABLE.match(statement):
        if _MODIFY_SETTING.match(alter["rest"]):
            return [f"ALTER TABLE {alter['name']}_local {on} {alter['rest']}"]
        return [f"ALTER TABLE {alter['name']}_local {on} {alter['rest']}",
                f"ALTER TABLE {alter['name']} {on} {alter['rest']}"]
    raise MigrationError(f"cannot render for cluster {cluster!r}: {statement[:80]!r}")


def rendered(statement: str, cluster: str, database: str) -> list[str]:
    """``statement`` as it runs: unchanged without a cluster, else for the cluster."""
    return render_for_cluster(statement, cluster, database) if cluster else [statement]


def apply_migrations(ch: ClickHouse, directory: Path = MIGRATIONS_DIR, *,
                     cluster: str | None = None) -> list[str]:
    """Apply every migration in name order; return the names applied now (not before).

    ``cluster`` (``Settings.clickhouse_cluster``, i.e. ``CLICKHOUSE_CLUSTER``; None or empty
    means one server or embedded) renders every statement for that cluster."""
    cluster = (cluster or "").strip()
    if cluster:  # connect() created the database on the server it talks to only
        ch.command(f"CREATE DATABASE IF NOT EXISTS {_quote(ch.database)} ON CLUSTER "
                   f"{_quote(cluster)}")
    for statement in rendered(_SCHEMA_MIGRATIONS, cluster, ch.database):
        ch.command(statement)
    done = {row[0] for row in ch.query("SELECT name FROM schema_migrations")}
    applied = []
    for path in sorted(directory.glob("*.sql")):
        for statement in split_statements(path.read_text()):
            for sql in rendered(statement, cluster, ch.database):
                try:
                    ch.command(sql)
                except ClickHouseError as exc:
                    raise MigrationError(f"{path.name}: {exc}") from exc
        if path.name not in done:
            ch.insert("schema_migrations", [[path.name]], ["name"])
            applied.append(path.name)
    return applied
