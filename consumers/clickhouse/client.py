"""The one way the registry opens ClickHouse.

``CLICKHOUSE_URL`` empty selects the embedded engine (chDB through clickhouse-connect) in
``<REGISTRY_DATA_DIR>/clickhouse``; an ``http(s)://`` URL selects a server. chDB allows one
process per data folder, so in embedded mode the sink and the risk queries share the single
client of the worker process; the client is guarded by a lock because the embedded engine is
not safe for concurrent use from several threads.

Test-only fault (``FAULT_CLICKHOUSE_DOWN_AFTER_S`` / ``FAULT_CLICKHOUSE_DOWN_FOR_S``, refused in
production mode): inserts and commands raise :class:`ClickHouseUnavailable` during
``[created + after, created + after + for)``, measured from the facade's creation. The failure
is injected here, at the boundary, so everything above it (sink back-off, lag, API) sees exactly
what a real outage produces. Queries are left alone.

Errors: every driver failure leaves this module as one of the types of
:mod:`consumers.clickhouse.errors` (outage: retriable; refused data; refused statement), made
by :func:`~consumers.clickhouse.errors.classify` with the server's error code and name, and
chained to the driver's exception (``raise ... from``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, cast

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from consumers.clickhouse.errors import ClickHouseUnavailable, classify
from streams.settings import Settings


class ClickHouse:
    """A thread-safe facade over one clickhouse-connect client bound to the registry database."""

    def __init__(self, client: Client, database: str, *, down_after_s: float = 0,
                 down_for_s: float = 0) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.database = database
        created = time.monotonic()
        self._down = ((created + down_after_s, created + down_after_s + down_for_s)
                      if down_for_s > 0 else None)

    def _injected_outage(self) -> None:
        """Test-only: fail like an unreachable server inside the configured window."""
        if self._down is not None and self._down[0] <= time.monotonic() < self._down[1]:
            raise ClickHouseUnavailable("fault injection: ClickHouse is down")

    def command(self, sql: str, parameters: dict[str, Any] | None = None, *,
                settings: dict[str, Any] | None = None) -> Any:
        self._injected_outage()
        with self._lock:
            try:
                return self._client.command(sql, parameters=parameters, settings=settings)
            except Exception as exc:  # driver errors are classified at this boundary
                raise classify(exc) from exc

    def query(self, sql: str, parameters: dict[str, Any] | None = None, *,
              settings: dict[str, Any] | None = None) -> list[tuple]:
        """Rows of ``sql``; ``settings``: per-query ClickHouse settings (``max_threads``...)."""
        with self._lock:
            try:
                rows = self._client.query(sql, parameters=parameters,
                                          settings=settings).result_rows
                # clickhouse-connect builds a list of tuples; it annotates a wider Sequence
                return cast("list[tuple]", rows)
            except Exception as exc:
                raise classify(exc) from exc

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        *,
        dedup_token: str | None = None,
    ) -> None:
        """Insert rows; a repeated ``dedup_token`` makes ClickHouse ignore the repeat.

        The insert is one block: taken whole or refused whole. A refusal of the rows (including
        a value the driver cannot encode for the column type) raises
        :class:`~consumers.clickhouse.errors.ClickHouseDataRefused`.
        """
        self._injected_outage()
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        with self._lock:
            try:
                self._client.insert(
                    table, rows, column_names=list(column_names), settings=settings
                )
            except Exception as exc:
                raise classify(exc, inserting=True) from exc

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
        cause = classify(exc)
        raise ClickHouseUnavailable(f"cannot open ClickHouse at {_safe(dsn)}: {exc}",
                                    code=cause.code, name=cause.name) from exc
    return ClickHouse(client, settings.clickhouse_database,
                      down_after_s=settings.faults.clickhouse_down_after_s,
                      down_for_s=settings.faults.clickhouse_down_for_s)


def _safe(dsn: str) -> str:
    """The DSN without a password, for messages."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return dsn
