"""The one way the registry opens ClickHouse.

``CLICKHOUSE_URL`` empty selects the embedded engine (chDB through clickhouse-connect) in
``<REGISTRY_DATA_DIR>/clickhouse``; an ``http(s)://`` URL selects a server. chDB allows one
process per data folder, so in embedded mode the sink and the risk queries share the single
client of the worker process; the client is guarded by a lock because the embedded engine is
not safe for concurrent use from several threads.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from consumers.clickhouse.errors import ClickHouseUnavailable
from streams.settings import Settings


class ClickHouse:
    """A thread-safe facade over one clickhouse-connect client bound to the registry database."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.database = database

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        with self._lock:
            try:
                return self._client.command(sql, parameters=parameters)
            except Exception as exc:  # driver errors are wrapped at this boundary
                raise ClickHouseUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        with self._lock:
            try:
                return self._client.query(sql, parameters=parameters).result_rows
            except Exception as exc:
                raise ClickHouseUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        *,
        dedup_token: str | None = None,
    ) -> None:
        """Insert rows; a repeated ``dedup_token`` makes ClickHouse ignore the repeat."""
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        with self._lock:
            try:
                self._client.insert(
                    table, rows, column_names=list(column_names), settings=settings
                )
            except Exception as exc:
                raise ClickHouseUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._client.close()


def connect(settings: Settings) -> ClickHouse:
    """Open ClickHouse, create the registry database if needed, and return the facade."""
    dsn = settings.clickhouse_dsn
    try:
        if settings.clickhouse_embedded:
            settings.registry_data_dir.mkdir(parents=True, exist_ok=True)
            client = clickhouse_connect.get_client(dsn=dsn)
        else:
            client = clickhouse_connect.get_client(dsn=dsn, database="default")
        client.command(f"CREATE DATABASE IF NOT EXISTS `{settings.clickhouse_database}`")
        # Unqualified table names in migrations and queries resolve to the registry database.
        client.database = settings.clickhouse_database
    except Exception as exc:
        raise ClickHouseUnavailable(f"cannot open ClickHouse at {_safe(dsn)}: {exc}") from exc
    return ClickHouse(client, settings.clickhouse_database)


def _safe(dsn: str) -> str:
    """The DSN without a password, for messages."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return dsn
