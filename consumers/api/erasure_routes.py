"""Data-subject erasure: ``POST /api/v1/erasure`` and ``GET /api/v1/erasure/{request_id}``.

Request: ``Authorization: Bearer <token>`` and a JSON body ``{"borrower_id": "..."}``. The
national id travels only in the body; it is pseudonymised at once and never logged nor echoed.

What one request does, in this order:

1. delete the borrower's consent intervals in Redis (:meth:`ConsentStore.erase`). From then
   on every event of this borrower is rejected as ``NO_CONSENT`` and stored nowhere;
2. send an erasure command (``acks=all``) to the borrower's partition of
   ``registry.validated``. The stream agent that owns the partition, whichever worker that is,
   deletes the borrower's state (per-bucket counts, seen event keys, recent draws of the
   velocity rules; its changelog gets a tombstone) and forwards the command, behind every
   event of the borrower admitted before it, to the ClickHouse sink;
3. the sink deletes the borrower's rows from every table with a ``borrower`` column and writes
   the audit row (:mod:`consumers.clickhouse.erasure`);
4. the answer waits until that audit row exists (up to ``ERASURE_WAIT_SECONDS``, default
   30 s): 200 with what was erased, or 202 ``{"request_id", "status": "pending"}`` if the
   pipeline is behind; ``GET /api/v1/erasure/{request_id}`` (or ``registry erase --status``)
   follows it.

Answers: 200 ``{"request_id", "status": "done", "tables", "rows_before", "consent_keys"}``, 202
pending; 400 ``{"error": "invalid_borrower_id" | "invalid_json", "detail": ...}`` (body rules,
including unknown fields and nesting: :mod:`consumers.api.body`); 401 without a known token, 403
without scope ``erasure`` (:mod:`consumers.api.auth`; nothing is read nor erased; the status
route needs the same scope); 503 ``redis_unavailable`` / ``kafka_unavailable`` (nothing was
sent: repeat the request, it is idempotent). A command that was sent is never lost: if a worker
dies half-way, the command is replayed from Kafka when the partition is taken over, and deleting
again changes nothing.

Not covered, and why: de-duplication marks hold hashed ``(lender, event id)`` pairs and
source positions, no borrower data; ``registry.validated``, ``registry.activity`` and
``registry.alerts`` records keep the pseudonym, and the lender's own input topics keep the
national id, until their retention deletes them (see the README's privacy section).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from consumers.api.auth import authorizer
from consumers.api.body import parse_erasure_body
from consumers.api.errors import ApiError, BodyError
from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.erasure import erasure_status
from consumers.clickhouse.errors import ClickHouseError
from schemas.codec import codec_for
from schemas.pseudonym import Pseudonymiser, partition_of
from streams.consent.store import ConsentStore
from streams.runtime.redis_client import connect_redis
from streams.settings import Scope, Settings

log = logging.getLogger(__name__)

VALIDATED_BATCH = "registry.internal.ValidatedBatch"
#: how long Redis remembers a request id for ``GET /api/v1/erasure/{id}`` (pending state)
REQUEST_TTL_S = 30 * 86400


class ErasureHandler:
    def __init__(self, settings: Settings, ch: ClickHouse) -> None:
        self._settings = settings
        self._ch = ch
        self._pseudonymise = Pseudonymiser(settings.pseudonym_key_bytes)
        self._redis: Any = None
        self._producer: AIOKafkaProducer | None = None
        self._codec = codec_for(VALIDATED_BATCH)

    def _redis_client(self) -> Any:
        if self._redis is None:
            self._redis = connect_redis(self._settings)
        return self._redis

    def _request_key(self, request_id: str) -> str:
        return f"{self._settings.redis_prefix}erasure:{request_id}"

    async def _send_command(self, borrower: str, request_id: str, institution: str) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(**self._settings.kafka_client_options(), acks="all",
                                        enable_idempotence=True)
            await producer.start()
            self._producer = producer
        command = {"borrower": borrower, "request_id": request_id, "institution": institution,
                   "requested_at_ms": int(time.time() * 1000)}
        await self._producer.send_and_wait(
            self._settings.topics.validated, self._codec.encode({"events": [], "erase": command}),
            partition=partition_of(borrower, self._settings.registry_partitions))

    async def close(self, _app: web.Application) -> None:
        if self._redis is not None:
            await self._redis.aclose()
        if self._producer is not None:
            await self._producer.stop()

    async def _status(self, request_id: str) -> dict[str, Any] | None:
        done = await asyncio.to_thread(erasure_status, self._ch, request_id)
        if done is None:
            return None
        return {"request_id": request_id, "status": "done", "tables": done["tables"],
                "rows_before": done["rows_before"]}

    async def handle(self, request: web.Request) -> web.Response:
        institution = authorizer(self._settings).require(request, Scope.ERASURE)
        try:
            borrower = self._pseudonymise(parse_erasure_body(await request.read()))
        except BodyError as problem:
            return web.json_response({"error": str(problem.code), "detail": problem.detail},
                                     status=400)
        request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
        redis = self._redis_client()
        try:
            consent_keys = await ConsentStore(redis, self._settings.redis_prefix).erase(borrower)
            await redis.set(self._request_key(request_id), str(consent_keys), ex=REQUEST_TTL_S)
        except (RedisError, OSError) as exc:
            log.warning("erasure %s failed in Redis: %s", request_id, type(exc).__name__)
            return web.json_response({"error": ApiError.REDIS_UNAVAILABLE}, status=503)
        try:
            await self._send_command(borrower, request_id, institution)
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("erasure %s: command not sent (%r)", request_id, exc)
            return web.json_response({"error": ApiError.KAFKA_UNAVAILABLE}, status=503)
        log.info("erasure %s by %s: command sent, %d consent keys deleted", request_id,
                 institution, consent_keys)
        deadline = time.monotonic() + self._settings.erasure_wait_seconds
        while True:
            try:
                done = await self._status(request_id)
            except ClickHouseError as exc:
                log.warning("erasure %s: status unavailable (%s)", request_id, exc)
                done = None
            if done is not None:
                return web.json_response(done | {"consent_keys": consent_keys},
                                         headers={"Cache-Control": "no-store"})
            if time.monotonic() >= deadline:
                return web.json_response({"request_id": request_id, "status": "pending",
                                          "consent_keys": consent_keys}, status=202,
                                         headers={"Cache-Control": "no-store"})
            await asyncio.sleep(0.2)

    async def status(self, request: web.Request) -> web.Response:
        authorizer(self._settings).require(request, Scope.ERASURE)
        request_id = request.match_info["request_id"][:64]
        try:
            done = await self._status(request_id)
        except ClickHouseError:
            return web.json_response({"error": ApiError.CLICKHOUSE_UNAVAILABLE}, status=503)
        if done is not None:
            return web.json_response(done, headers={"Cache-Control": "no-store"})
        try:
            known = await self._redis_client().exists(self._request_key(request_id))
        except (RedisError, OSError):
            return web.json_response({"error": ApiError.REDIS_UNAVAILABLE}, status=503)
        if not known:
            return web.json_response({"error": ApiError.UNKNOWN_REQUEST,
                                      "detail": "no erasure with this request id"}, status=404)
        return web.json_response({"request_id": request_id, "status": "pending"}, status=202,
                                 headers={"Cache-Control": "no-store"})


def add_erasure_routes(app: web.Application, *, settings: Settings, ch: ClickHouse) -> None:
    """Register ``POST /api/v1/erasure`` and ``GET /api/v1/erasure/{request_id}`` on ``app``."""
    handler = ErasureHandler(settings, ch)
    app.on_cleanup.append(handler.close)
    app.router.add_post("/api/v1/erasure", handler.handle)
    app.router.add_get("/api/v1/erasure/{request_id}", handler.status)
