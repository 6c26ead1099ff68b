"""Broker security, end to end: SCRAM identities, per-lender ACLs, and lender binding.

Against the test broker's SASL_PLAINTEXT listener (SCRAM-SHA-512, StandardAuthorizer, nothing
allowed without an ACL); lenders are provisioned exactly as an operator would, through
``registry lender add`` (its CLI once, its function otherwise).

(a) lender A writing into lender B's topic is refused on every attempt; its own topic works;
(b) no credentials or a wrong password: no connection at all;
(c) A putting B's id into A's own topic (which the ACLs allow) is quarantined by the worker as
    LENDER_MISMATCH for A, counted by the security metric, and nothing is attributed to B. The
    worker itself connects as a ``registry lender init-worker`` principal over SASL, which shows
    the worker's ACLs are sufficient.
"""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from schemas import national_id
from schemas.codec import LOAN_EVENT, codec_for
from schemas.records import EventType, LoanEvent
from streams.cli.lender import add_lender, init_worker
from streams.kafka.topics import ensure_lender_topics
from streams.lender.publisher import LenderPublisher
from streams.settings import Settings
from tests.support.pipeline import dump_clickhouse, wait_drained
from tests.support.services import REPO, settings_env

pytestmark = pytest.mark.integration


def _lender(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _producer(bootstrap: str, user: str | None, password: str = "") -> AIOKafkaProducer:
    auth = {} if user is None else {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": user, "sasl_plain_password": password}
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                            request_timeout_ms=10_000, **auth)


async def test_a_lender_writes_only_its_own_topics(settings: Settings,
                                                   kafka_sasl_bootstrap: str) -> None:
    a, b = _lender("a"), _lender("b")
    await add_lender(settings, a, "secret-of-a")
    await add_lender(settings, b, "secret-of-b")
    topics = settings.topics
    producer = _producer(kafka_sasl_bootstrap, a, "secret-of-a")
    await producer.start()
    try:
        for attempt in range(3):
            with pytest.raises(TopicAuthorizationFailedError):
                await producer.send_and_wait(topics.loans(b), b"forged", key=f"k{attempt}".encode())
        with pytest.raises(TopicAuthorizationFailedError):  # READ-only, even its own
            await producer.send_and_wait(topics.rejected(a), b"x")
        own = await producer.send_and_wait(topics.loans(a), b"mine", key=b"k")
        assert own.topic == topics.loans(a) and own.offset >= 0
    finally:
        await producer.stop()


async def test_no_or_wrong_credentials_are_refused(settings: Settings,
                                                   kafka_sasl_bootstrap: str) -> None:
    lender = _lender("c")
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "streams.cli", "lender", "add", lender],
        env=settings_env(settings), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    password = re.search(r"password \(shown once.*\): (\S+)", done.stdout).group(1)

    for user, secret in ((None, ""), (lender, password + "x"), ("nobody", password)):
        producer = _producer(kafka_sasl_bootstrap, user, secret)
        with pytest.raises(KafkaConnectionError):
            await producer.start()
        await producer.stop()

    producer = _producer(kafka_sasl_bootstrap, lender, password)  # the printed one works
    await producer.start()
    try:
        await producer.send_and_wait(settings.topics.loans(lender), b"ok", key=b"k")
    finally:
        await producer.stop()


async def test_another_lenders_id_in_own_topic_is_quarantined(settings: Settings, services,
                                                              worker_factory) -> None:
    a, b = "honest-a", "victim-b"
    await ensure_lender_topics(settings, a)
    worker_env: dict[str, str] = {}
    if services.kafka_sasl_bootstrap:  # the worker runs as its own principal, under ACLs
        user = _lender("worker")
        await init_worker(settings, "secret-of-worker", user)
        worker_env = {"KAFKA_BOOTSTRAP": services.kafka_sasl_bootstrap,
                      "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": user,
                      "KAFKA_SASL_PASSWORD": "secret-of-worker"}
    borrower = national_id.generate(random.Random(3))
    forged = LoanEvent("forged-1", b, borrower, "loan-forged", EventType.DRAW, 150_000, "CNY",
                       int(time.time() * 1000) - 3_600_000)
    async with LenderPublisher(settings, a) as publisher:
        await publisher.send_raw(settings.topics.loans(a), borrower.encode(),
                                 codec_for(LOAN_EVENT).encode(forged.to_avro()))
        await publisher.flush()

    worker = worker_factory(worker_env)
    await wait_drained(settings, timeout=360, worker=worker)
    url = f"http://127.0.0.1:{settings.api_port}/metrics"
    metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
    assert worker.stop() == 0, worker.log_tail()

    sample = re.search(rb'^registry_security_lender_mismatch_total\{lender="honest-a"\} (\S+)$',
                       metrics, re.M)
    assert sample and float(sample.group(1)) == 1, metrics.decode()[-2000:]
    assert b'lender="victim-b"' not in metrics
    stored = dump_clickhouse(settings)
    assert stored["ledger_rows"] == 0  # nothing admitted, so nothing attributed to B
    assert [tuple(r) for r in stored["rejections"]] == [(a, "LENDER_MISMATCH", 1)]
