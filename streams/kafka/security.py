"""Broker-side security from Python: SCRAM credentials and ACLs.

aiokafka 0.14 speaks SASL/SCRAM as a client but has no admin call for ``CreateAcls`` (API 30)
or ``AlterUserScramCredentials`` (API 51). Both are small, stable requests, so they are defined
here on aiokafka's own protocol classes and sent through an ``AIOKafkaAdminClient``: no JVM,
no ``kafka-configs`` / ``kafka-acls`` jars, and the same connection settings as every other
client of the registry (``Settings.kafka_client_options()``).

The connecting principal must be allowed to alter the cluster: the local broker's PLAINTEXT
listener (principal ``User:ANONYMOUS``, a super user there) or ``User:registry-admin`` over SASL.

Both calls are idempotent: creating an ACL that exists changes nothing, and upserting a SCRAM
credential replaces the user's previous password for that mechanism.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeAlias

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError, for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from streams.kafka.errors import AuthorizerMissing, SecurityAdminError
from streams.kafka.internals import send_admin_request
from streams.settings import Settings

#: Kafka's SCRAM mechanism code for SCRAM-SHA-512, and the iteration count it requires at least.
SCRAM_SHA_512 = 2
SCRAM_ITERATIONS = 8192
#: Kafka error code returned when the broker runs without an authorizer.
_SECURITY_DISABLED = 54


class ResourceType(IntEnum):
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5


class PatternType(IntEnum):
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DESCRIBE = 8
    IDEMPOTENT_WRITE = 12


@dataclass(frozen=True, slots=True)
class Acl:
    """One ALLOW binding: ``principal`` may ``operation`` on a resource, from any host."""

    principal: str  # "User:<name>"
    operation: Operation
    resource_type: ResourceType
    resource_name: str
    pattern: PatternType = PatternType.LITERAL

    def __str__(self) -> str:
        return (f"{self.principal} ALLOW {self.operation.name} on {self.resource_type.name} "
                f"{self.pattern.name.lower()} {self.resource_name!r}")


# --- wire format (Kafka protocol, flexible versions) ------------------------------------------

_ACL_CREATION = (
    ("resource_type", Int8),
    ("resource_name", CompactString("utf-8")),
    ("resource_pattern_type", Int8),
    ("principal", CompactString("utf-8")),
    ("host", CompactString("utf-8")),
    ("operation", Int8),
    ("permission_type", Int8),
    ("tags", TaggedFields),
)
_ACL_RESULT = Schema(
    ("throttle_time_ms", Int32),
    ("results", CompactArray(("error_code", Int16), ("error_message", CompactString("utf-8")),
                             ("tags", TaggedFields))),
    ("tags", TaggedFields),
)


class CreateAclsResponse_v2(Response):
    API_KEY = 30
    API_VERSION = 2
    SCHEMA = _ACL_RESULT


class CreateAclsResponse_v3(Response):
    API_KEY = 30
    API_VERSION = 3
    SCHEMA = _ACL_RESULT


class CreateAclsRequest_v2(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 30
    API_VERSION = 2
    RESPONSE_TYPE = CreateAclsResponse_v2
    SCHEMA = Schema(("creations", CompactArray(*_ACL_CREATION)), ("tags", TaggedFields))


class CreateAclsRequest_v3(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 30
    API_VERSION = 3
    RESPONSE_TYPE = CreateAclsResponse_v3
    SCHEMA = CreateAclsRequest_v2.SCHEMA


CreateAclsStruct: TypeAlias = CreateAclsRequest_v2 | CreateAclsRequest_v3


class CreateAclsRequest(Request[CreateAclsStruct]):
    API_KEY = 30

    def __init__(self, acls: Iterable[Acl]) -> None:
        # (resource type, name, pattern, principal, host, operation, permission, tagged fields)
        self._creations: list[tuple[int, str, int, str, str, int, int, dict[str, Any]]] = [
            (int(a.resource_type), a.resource_name, int(a.pattern), a.principal, "*",
             int(a.operation), 3, {})  # permission 3 = ALLOW
            for a in acls
        ]

    def build(self, request_struct_class: type[CreateAclsStruct]) -> CreateAclsStruct:
        return request_struct_class(self._creations, {})


class AlterUserScramCredentialsResponse_v0(Response):
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", CompactArray(("user", CompactString("utf-8")), ("error_code", Int16),
                                 ("error_message", CompactString("utf-8")),
                                 ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentialsRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        ("deletions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8),
                                   ("tags", TaggedFields))),
        ("upsertions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8),
                                    ("iterations", Int32), ("salt", CompactBytes),
                                    ("salted_password", CompactBytes), ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentialsRequest(Request[AlterUserScramCredentialsRequest_v0]):
    API_KEY = 51

    def __init__(self, upsertions: list[tuple[str, int, int, bytes, bytes, dict[int, bytes]]]):
        self._upsertions = upsertions

    def build(
        self, request_struct_class: type[AlterUserScramCredentialsRequest_v0]
    ) -> AlterUserScramCredentialsRequest_v0:
        return request_struct_class([], self._upsertions, {})


# --- operations ---------------------------------------------------------------------------------


def scram_sha512_upsertion(user: str, password: str) -> tuple[str, int, int, bytes, bytes,
                                                                dict[int, bytes]]:
    """The salted password the broker stores (RFC 5802 ``Hi()``); the password never travels."""
    salt = secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, SCRAM_ITERATIONS)
    return (user, SCRAM_SHA_512, SCRAM_ITERATIONS, salt, salted, {})


def _raise_for(code: int, message: str | None, what: str) -> None:
    if code == 0:
        return
    if code == _SECURITY_DISABLED:
        raise AuthorizerMissing(
            f"{what}: the broker has no authorizer (start the local broker with KAFKA_SASL_PORT "
            "set; see README, Security)"
        )
    raise SecurityAdminError(f"{what}: {for_code(code).__name__} {message or ''}".rstrip())


class SecurityAdmin:
    """``async with SecurityAdmin(settings) as admin``: SCRAM users and ACLs on the cluster."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin = AIOKafkaAdminClient(**settings.kafka_client_options())

    async def __aenter__(self) -> SecurityAdmin:
        try:
            await self._admin.start()
        except KafkaConnectionError as exc:
            await self._admin.close()
            raise SecurityAdminError(
                f"no Kafka broker reachable at {self.settings.kafka_bootstrap} (KAFKA_BOOTSTRAP)"
            ) from exc
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._admin.close()

    async def _send(self, request: Request[Any]) -> Any:
        try:
            return await send_admin_request(self._admin, request)
        except KafkaError as exc:
            raise SecurityAdminError(f"{type(request).__name__} failed: {exc!r}") from exc

    async def set_scram_password(self, user: str, password: str) -> None:
        """Create or replace ``user``'s SCRAM-SHA-512 credential."""
        response = await self._send(
            AlterUserScramCredentialsRequest([scram_sha512_upsertion(user, password)]))
        for name, code, message, _tags in response.results:
            _raise_for(code, message, f"SCRAM credential of {name}")

    async def create_acls(self, acls: list[Acl]) -> None:
        """Add ALLOW bindings (existing identical bindings are left as they are)."""
        if not acls:
            return
        response = await self._send(CreateAclsRequest(acls))
        for acl, (code, message, _tags) in zip(acls, response.results, strict=True):
            _raise_for(code, message, f"ACL {acl}")
