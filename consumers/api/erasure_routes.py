"""Data-subject erasure: ``POST /api/v1/erasure``.

Request: ``Authorization: Bearer <token>`` and a JSON body ``{"borrower_id": "..."}``. The
national id travels only in the body; it is pseudonymised at once and never logged nor echoed.

What one request does, in this order:

1. delete the borrower's consent intervals in Redis (:meth:`ConsentStore.erase`). From then
   on every event of this borrower is rejected as ``NO_CONSENT`` and stored nowhere;
2. count the borrower's rows in every ClickHouse table that has a ``borrower`` column
   (found in ``system.columns``: today ``admitted_events``, ``borrower_daily``,
   ``borrower_hourly``, ``consent_audit``, ``inquiries``);
3. delete them with ``ALTER TABLE ... DELETE`` and ``mutations_sync=2``: the parts are
   rewritten without the rows before the answer, not just masked;
4. append an audit row to ``erasures``: time, request id, institution, tables, rows before, and
   ``borrower_hash = sha256(pseudonym)``, so neither the id nor the pseudonym is kept.

Answers: 200 ``{"request_id", "tables", "rows_before", "consent_keys"}``; 400
``{"error": "invalid_borrower_id" | "invalid_json", "detail": ...}`` (body rules, including
unknown fields and nesting: :mod:`consumers.api.body`); 401 without a known token; 503 when
ClickHouse or Redis did not answer. The request is idempotent: repeat it after a 503.

Not covered, and why:

* de-duplication marks hold hashed ``(lender, event id)`` pairs and source positions, no
  borrower data;
* the stream's borrower state (Faust table and its changelog topic) belongs to the stream
  workers and cannot be edited from this process. Keyed by the pseudonym, it holds per-bucket
  counts and amounts, 64-bit event keys and recent draw times, no national id. Buckets are
  evicted when the borrower's next event arrives after their grace period; with consent gone
  there is no next event, so the entry stays until a stream-side tombstone (future work);
* ``registry.admitted`` and ``registry.activity`` records carry the pseudonym until topic
  retention removes them;
* an event of the borrower already admitted but not yet in ClickHouse when the request runs
  lands afterwards: repeat the erasure once the pipeline has drained (both audit rows stay).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from consumers.api.body import BodyError, parse_erasure_body
from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.errors import ClickHouseError
from streams.consent_store import ConsentStore
from streams.pseudonym import Pseudonymiser
from streams.redis_client import connect_redis
from streams.settings import Settings

log = logging.getLogger(__name__)

_TABLES_SQL = (
    "SELECT c.table FROM system.columns AS c "
    "INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table "
    "WHERE c.database = currentDatabase() AND c.name = 'borrower' "
    "AND t.engine LIKE '%MergeTree' ORDER BY c.table"
)
AUDIT_COLUMNS = ("erased_at", "request_id", "borrower_hash", "institution", "tables",
                 "rows_before")


def erase_clickhouse(ch: ClickHouse, borrower: str, *, request_id: str, institution: str
                     ) -> tuple[list[str], int]:
    """Delete ``borrower``'s rows everywhere, record the audit row; (tables, rows before)."""
    tables = [row[0] for row in ch.query(_TABLES_SQL)]
    params = {"b": borrower}
    rows_before = 0
    for table in tables:
        rows_before += ch.query(f"SELECT count() FROM `{table}` WHERE borrower = {{b:String}}",
                                params)[0][0]
    for table in tables:
        ch.command(f"ALTER TABLE `{table}` DELETE WHERE borrower = {{b:String}}", params,
                   settings={"mutations_sync": 2})
    borrower_hash = hashlib.sha256(borrower.encode()).hexdigest()
    ch.insert("erasures", [[datetime.now(UTC), request_id, borrower_hash, institution, tables,
                            rows_before]], AUDIT_COLUMNS)
    return tables, rows_before


class ErasureHandler:
    def __init__(self, settings: Settings, ch: ClickHouse) -> None:
        self._settings = settings
        self._ch = ch
        self._pseudonymise = Pseudonymiser(settings.pseudonym_key_bytes)
        self._redis: Any = None

    def _consent(self) -> ConsentStore:
        if self._redis is None:
            self._redis = connect_redis(self._settings)
        return ConsentStore(self._redis, self._settings.redis_prefix)

    async def close(self, _app: web.Application) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def handle(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        institution = (self._settings.institution_tokens.get(token.strip())
                       if scheme.lower() == "bearer" else None)
        if institution is None:
            return web.json_response({"error": "unauthorized"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        try:
            borrower = self._pseudonymise(parse_erasure_body(await request.read()))
        except BodyError as problem:
            return web.json_response({"error": str(problem.code), "detail": problem.detail},
                                     status=400)
        request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
        try:
            consent_keys = await self._consent().erase(borrower)
            tables, rows_before = await asyncio.to_thread(
                erase_clickhouse, self._ch, borrower, request_id=request_id,
                institution=institution)
        except ClickHouseError as exc:
            log.warning("erasure %s failed in ClickHouse: %s", request_id, exc)
            return web.json_response({"error": "clickhouse_unavailable"}, status=503)
        except (RedisError, OSError) as exc:
            log.warning("erasure %s failed in Redis: %s", request_id, type(exc).__name__)
            return web.json_response({"error": "redis_unavailable"}, status=503)
        log.info("erasure %s by %s: %d rows in %s, %d consent keys", request_id, institution,
                 rows_before, ",".join(tables), consent_keys)
        return web.json_response({"request_id": request_id, "tables": tables,
                                  "rows_before": rows_before, "consent_keys": consent_keys},
                                 headers={"Cache-Control": "no-store"})


def add_erasure_routes(app: web.Application, *, settings: Settings, ch: ClickHouse) -> None:
    """Register ``POST /api/v1/erasure`` on ``app``."""
    handler = ErasureHandler(settings, ch)
    app.on_cleanup.append(handler.close)
    app.router.add_post("/api/v1/erasure", handler.handle)
