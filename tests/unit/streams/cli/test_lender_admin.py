"""The ACLs a lender and the worker get, and the SCRAM credential format (no broker)."""

from __future__ import annotations

import hashlib

import pytest

from streams.cli import main
from streams.cli.lender import lender_acls, worker_acls
from streams.kafka.security import (
    SCRAM_ITERATIONS,
    SCRAM_SHA_512,
    CreateAclsRequest_v2,
    Operation,
    PatternType,
    ResourceType,
    scram_sha512_upsertion,
)
from streams.settings import Settings


def test_a_lender_gets_exactly_its_own_literal_topics_and_group_prefix() -> None:
    acls = lender_acls(Settings(kafka_namespace="ns."), "bank-a")
    got = {(a.operation, a.resource_type, a.resource_name, a.pattern) for a in acls}
    lit, topic = PatternType.LITERAL, ResourceType.TOPIC
    assert got == {
        (Operation.WRITE, topic, "ns.lenders.bank-a.loans", lit),
        (Operation.DESCRIBE, topic, "ns.lenders.bank-a.loans", lit),
        (Operation.WRITE, topic, "ns.lenders.bank-a.consent", lit),
        (Operation.DESCRIBE, topic, "ns.lenders.bank-a.consent", lit),
        (Operation.READ, topic, "ns.lenders.bank-a.rejected", lit),
        (Operation.DESCRIBE, topic, "ns.lenders.bank-a.rejected", lit),
        (Operation.READ, ResourceType.GROUP, "bank-a.", PatternType.PREFIXED),
    }
    assert {a.principal for a in acls} == {"User:bank-a"}


def test_the_worker_is_confined_to_the_deployment_prefixes() -> None:
    acls = worker_acls(Settings(kafka_namespace="ns.", registry_app_id="app"))
    prefixes = {a.resource_name for a in acls if a.resource_type == ResourceType.TOPIC}
    assert prefixes == {"ns.lenders.", "ns.registry.", "app-"}
    assert all(a.pattern == PatternType.PREFIXED for a in acls
               if a.resource_type != ResourceType.CLUSTER)


def test_scram_credential_is_pbkdf2_sha512_and_requests_encode() -> None:
    user, mechanism, iterations, salt, salted, _ = scram_sha512_upsertion("bank-a", "pw")
    assert (user, mechanism, iterations) == ("bank-a", SCRAM_SHA_512, SCRAM_ITERATIONS)
    assert salted == hashlib.pbkdf2_hmac("sha512", b"pw", salt, SCRAM_ITERATIONS)
    assert CreateAclsRequest_v2([(2, "t", 3, "User:x", "*", 4, 3, {})], {}).encode()


def test_reserved_names_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["lender", "add", "registry-worker"])
    assert exit_.value.code == 64 and "reserved" in capsys.readouterr().err  # EX_USAGE
