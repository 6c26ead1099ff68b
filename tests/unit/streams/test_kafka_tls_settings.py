"""Kafka TLS settings: what the one builder hands to aiokafka and to Faust, and which
combinations are refused at construction. Certificates are made with openssl per test session;
the broker-side behaviour is tested in tests/integration/test_tls.py. A refusal is a
``SettingsError`` (a ``ValueError``), which pydantic reports as a ``ValidationError``."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import faust
import pytest

from streams.settings import Settings

PROD = {"registry_mode": "production", "pseudonym_key": "k" * 32}


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a client certificate it signed, its key, and the key encrypted with 'pw'."""
    d = tmp_path_factory.mktemp("pem")

    def run(*args: object) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ca",
        "-keyout", d / "ca.key", "-out", d / "ca.pem")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=client",
        "-CA", d / "ca.pem", "-CAkey", d / "ca.key", "-keyout", d / "client.key",
        "-out", d / "client.pem")
    run("pkey", "-in", d / "client.key", "-aes256", "-passout", "pass:pw",
        "-out", d / "client-enc.key")
    return {"ca": d / "ca.pem", "cert": d / "client.pem", "key": d / "client.key",
            "enc": d / "client-enc.key"}


def test_plaintext_has_no_tls_and_no_credentials() -> None:
    s = Settings()
    assert s.kafka_client_options() == {"bootstrap_servers": "127.0.0.1:9092",
                                        "security_protocol": "PLAINTEXT"}
    assert s.kafka_ssl_context() is None
    assert s.faust_broker_credentials() is None


def test_sasl_ssl_options_verify_the_broker(pem: dict[str, Path]) -> None:
    s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="u",
                 kafka_sasl_password="p", kafka_ssl_cafile=pem["ca"], **PROD)
    options = s.kafka_client_options()
    context = options.pop("ssl_context")
    assert options == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "SASL_SSL",
                       "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "u",
                       "sasl_plain_password": "p"}
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "ca"),),)]

    credentials = s.faust_broker_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"  # not Faust's silent SASL_PLAINTEXT
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("u", "p")
    assert credentials.ssl_context.verify_mode == ssl.CERT_REQUIRED


def test_sasl_plaintext_credentials_stay_plaintext() -> None:
    s = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u",
                 kafka_sasl_password="p")
    assert "ssl_context" not in s.kafka_client_options()
    credentials = s.faust_broker_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_PLAINTEXT" and credentials.ssl_context is None


@pytest.mark.parametrize("key, password", [("key", None), ("enc", "pw")])
def test_mutual_tls_presents_the_client_certificate(pem: dict[str, Path], key: str,
                                                    password: str | None) -> None:
    s = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=pem["ca"],
                 kafka_ssl_certfile=pem["cert"], kafka_ssl_keyfile=pem[key],
                 kafka_ssl_key_password=password, **PROD)
    options = s.kafka_client_options()
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    credentials = s.faust_broker_credentials()
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.protocol.value == "SSL"
    assert "pw" not in repr(s)  # the key password is a secret


def test_local_mode_may_use_the_system_store_and_skip_the_name_check() -> None:
    s = Settings(kafka_security_protocol="SSL", kafka_ssl_check_hostname=False)
    context = s.kafka_ssl_context()
    assert context is not None and not context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED  # the chain is verified all the same


@pytest.mark.parametrize("fields, message", [
    ({"kafka_security_protocol": "SASL_SSL"}, "KAFKA_SSL_CAFILE is required"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "ca",
      "kafka_ssl_check_hostname": False}, "KAFKA_SSL_CHECK_HOSTNAME=false is refused"),
], ids=["no-ca-file", "no-hostname-check"])
def test_production_refuses_weak_tls(pem: dict[str, Path], fields: dict, message: str) -> None:
    fields = {k: (pem[v] if k == "kafka_ssl_cafile" else v) for k, v in fields.items()}
    with pytest.raises(ValueError, match=message):
        Settings(**fields, **PROD)


@pytest.mark.parametrize("fields, message", [
    ({"kafka_security_protocol": "PLAINTEXT", "kafka_ssl_cafile": "ca"},
     "does not use TLS"),
    ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_ssl_certfile": "cert",
      "kafka_ssl_keyfile": "key"}, "does not use TLS"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "cert"}, "go together"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "key"}, "go together"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_key_password": "pw"},
     "without KAFKA_SSL_KEYFILE"),
    ({"kafka_security_protocol": "SSL", "kafka_sasl_username": "u"}, "use SASL_SSL"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "missing"}, "no such file"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "key"}, "cannot be used"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "cert",
      "kafka_ssl_keyfile": "enc"}, "cannot be used"),  # encrypted key, no password
    ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "cert",
      "kafka_ssl_keyfile": "enc", "kafka_ssl_key_password": "wrong"}, "cannot be used"),
], ids=["ca-with-plaintext", "cert-with-sasl-plaintext", "cert-no-key", "key-no-cert",
        "password-no-key", "sasl-user-with-ssl", "missing-file", "ca-not-a-cert",
        "encrypted-key-no-password", "wrong-key-password"])
def test_inconsistent_tls_settings_are_refused(pem: dict[str, Path], tmp_path: Path,
                                               fields: dict, message: str) -> None:
    paths = {**pem, "missing": tmp_path / "absent.pem"}
    fields = {k: (paths[v] if k.endswith("file") else v) for k, v in fields.items()}
    with pytest.raises(ValueError, match=message):
        Settings(**fields)
