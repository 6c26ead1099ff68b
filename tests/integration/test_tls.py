"""Kafka over TLS, end to end, against the test broker's TLS listeners (certificates made by
``infra/kafka/kafka.sh`` at start-up from a local CA, ACLs as in test_security.py).

(a) SASL_SSL: a lender publishes as its SCRAM user over TLS and the worker, started exactly as
    the README's production example (``REGISTRY_MODE=production``, ``KAFKA_SECURITY_PROTOCOL=
    SASL_SSL``, SCRAM user and password, ``KAFKA_SSL_CAFILE``, hostname checking on), consumes
    over TLS as its own principal: every event lands in ClickHouse exactly once;
(b) a client that trusts a different CA is refused (certificate verification fails), with the
    right SCRAM password;
(c) a client speaking plaintext (PLAINTEXT or SASL_PLAINTEXT) to a TLS port is refused;
(d) mutual TLS (SSL, no SASL): the certificate CN=L is principal ``User:L``, so a lender's
    certificate gets exactly its ACLs; no certificate, or one from another CA, is refused.
"""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from schemas import national_id
from schemas.records import ConsentAction, ConsentRecord, EventType, LoanEvent
from streams.cli.lender import add_lender, init_worker
from streams.lender.publisher import LenderPublisher
from streams.settings import Settings
from tests.support.pipeline import dump_clickhouse, wait_drained
from tests.support.services import Services

pytestmark = pytest.mark.integration

DAY = 86_400_000
EVENTS = 240


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _as(settings: Settings, **overrides: Any) -> Settings:
    """``settings`` with other Kafka connection settings, validated like the environment's."""
    return Settings(**{**settings.model_dump(), **overrides})


def _foreign_ca(folder: Path) -> Path:
    """A self-signed CA that signed nothing the broker uses, and a client certificate from it."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "other-ca.pem", folder / "other-ca.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=some other CA", "-keyout", ca_key, "-out", ca],
                   check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=registry-admin", "-CA", ca, "-CAkey", ca_key,
                    "-keyout", folder / "forged.key", "-out", folder / "forged.pem"],
                   check=True, capture_output=True, timeout=60)
    return ca


async def _refused(options: dict[str, Any]) -> None:
    """A client with ``options`` cannot even bootstrap."""
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await admin.start()
    await admin.close()


async def test_sasl_ssl_end_to_end(settings: Settings, kafka_tls: Services,
                                   worker_factory) -> None:
    lender, worker_user = _name("tls-bank"), _name("tls-worker")
    await add_lender(settings, lender, "secret-of-lender")  # over the admin's PLAINTEXT
    await init_worker(settings, "secret-of-worker", worker_user)
    tls = {"kafka_bootstrap": kafka_tls.kafka_sasl_ssl_bootstrap,
           "kafka_security_protocol": "SASL_SSL", "kafka_ssl_cafile": kafka_tls.kafka_ca_file}
    as_lender = _as(settings, **tls, kafka_sasl_username=lender,
                    kafka_sasl_password="secret-of-lender")
    options = as_lender.kafka_client_options()
    assert options["ssl_context"].check_hostname  # the README's settings check the name

    borrowers = [national_id.generate(random.Random(11 + i)) for i in range(4)]
    now = int(time.time() * 1000)
    async with LenderPublisher(as_lender, lender) as publisher:
        for borrower in borrowers:
            await publisher.publish_consent(
                ConsentRecord(lender, borrower, ConsentAction.GRANT, now - 30 * DAY))
        await publisher.flush()
        for i in range(EVENTS):
            await publisher.publish_event(LoanEvent(
                f"{lender}-{i}", lender, borrowers[i % 4], f"loan-{i % 7}", EventType.DRAW,
                10_000 + i, "CNY", now - DAY + i * 1000))
        await publisher.flush()

    # The README's production example, with this test's values.
    worker = worker_factory({
        "REGISTRY_MODE": "production", "PSEUDONYM_KEY": "tls-test-key-" + "x" * 24,
        "API_TOKENS": "bank-a:tls-test-token",
        "KAFKA_BOOTSTRAP": kafka_tls.kafka_sasl_ssl_bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_USERNAME": worker_user, "KAFKA_SASL_PASSWORD": "secret-of-worker",
        "KAFKA_SSL_CAFILE": kafka_tls.kafka_ca_file,
    })
    await wait_drained(settings, timeout=240, worker=worker)
    assert worker.stop() == 0, worker.log_tail()
    stored = dump_clickhouse(settings)
    assert stored["ledger_rows"] == EVENTS, worker.log_tail()
    assert stored["ledger_duplicates"] == 0
    assert stored["consent_rows"] == len(borrowers)
    assert stored["rejections"] == []
    drawn = sum(row[2] for row in stored["daily"])  # draws per (borrower, day)
    assert drawn == EVENTS


async def test_client_trusting_another_ca_is_refused(settings: Settings, kafka_tls: Services,
                                                     tmp_path: Path) -> None:
    lender = _name("ca-bank")
    await add_lender(settings, lender, "right-password")
    other_ca = _foreign_ca(tmp_path / "other")
    for bootstrap, protocol, sasl in (
            (kafka_tls.kafka_sasl_ssl_bootstrap, "SASL_SSL", {
                "kafka_sasl_username": lender, "kafka_sasl_password": "right-password"}),
            (kafka_tls.kafka_ssl_bootstrap, "SSL", {})):
        wrong = _as(settings, kafka_bootstrap=bootstrap, kafka_security_protocol=protocol,
                    kafka_ssl_cafile=other_ca, **sasl)
        await _refused(wrong.kafka_client_options())
    # The same client with the broker's CA connects: the CA alone made the difference.
    right = _as(settings, kafka_bootstrap=kafka_tls.kafka_sasl_ssl_bootstrap,
                kafka_security_protocol="SASL_SSL", kafka_ssl_cafile=kafka_tls.kafka_ca_file,
                kafka_sasl_username=lender, kafka_sasl_password="right-password")
    producer = AIOKafkaProducer(**right.kafka_client_options(), acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(settings.topics.loans(lender), b"x", key=b"k")
        assert sent.offset == 0
    finally:
        await producer.stop()


async def test_plaintext_client_on_a_tls_port_is_refused(settings: Settings,
                                                         kafka_tls: Services) -> None:
    lender = _name("plain-bank")
    await add_lender(settings, lender, "pw-of-plain")
    for bootstrap in (kafka_tls.kafka_sasl_ssl_bootstrap, kafka_tls.kafka_ssl_bootstrap):
        await _refused({"bootstrap_servers": bootstrap, "security_protocol": "PLAINTEXT"})
        await _refused({"bootstrap_servers": bootstrap, "security_protocol": "SASL_PLAINTEXT",
                        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": lender,
                        "sasl_plain_password": "pw-of-plain"})


async def test_mutual_tls_certificate_is_the_lenders_identity(
        settings: Settings, kafka_tls: Services, client_cert, tmp_path: Path) -> None:
    lender, other = _name("mtls-bank"), _name("mtls-other")
    await add_lender(settings, lender, "unused-scram-password")
    await add_lender(settings, other, "unused-scram-password")
    cert, key = client_cert(lender)
    mtls = _as(settings, kafka_bootstrap=kafka_tls.kafka_ssl_bootstrap,
               kafka_security_protocol="SSL", kafka_ssl_cafile=kafka_tls.kafka_ca_file,
               kafka_ssl_certfile=cert, kafka_ssl_keyfile=key)
    producer = AIOKafkaProducer(**mtls.kafka_client_options(), acks="all",
                                enable_idempotence=True, request_timeout_ms=10_000)
    await producer.start()
    try:
        own = await producer.send_and_wait(settings.topics.loans(lender), b"mine", key=b"k")
        assert own.offset == 0
        with pytest.raises(TopicAuthorizationFailedError):  # ACLs of User:<CN> apply
            await producer.send_and_wait(settings.topics.loans(other), b"forged", key=b"k")
    finally:
        await producer.stop()

    no_cert = _as(settings, kafka_bootstrap=kafka_tls.kafka_ssl_bootstrap,
                  kafka_security_protocol="SSL", kafka_ssl_cafile=kafka_tls.kafka_ca_file)
    await _refused(no_cert.kafka_client_options())
    foreign = tmp_path / "other"
    _foreign_ca(foreign)  # a certificate CN=registry-admin (a super user) from another CA
    forged = _as(no_cert, kafka_ssl_certfile=foreign / "forged.pem",
                 kafka_ssl_keyfile=foreign / "forged.key")
    await _refused(forged.kafka_client_options())
