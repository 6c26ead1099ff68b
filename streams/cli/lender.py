"""``registry lender add`` and ``registry lender init-worker``: provisioning broker identities.

``lender add L`` promises, once it exits 0, that:

* L's three topics exist (``lenders.L.loans``, ``.consent``, ``.rejected``, with the namespace);
* the SCRAM-SHA-512 user ``L`` exists with the given password (or a random one, printed once);
* user ``L`` may WRITE and DESCRIBE exactly ``lenders.L.loans`` and ``lenders.L.consent``, READ
  and DESCRIBE exactly ``lenders.L.rejected`` (literal names) and READ consumer groups whose id
  starts with ``L.``: nothing else. Every other resource is refused by the broker
  (``allow.everyone.if.no.acl.found=false``), so a lender can neither write into another
  lender's topics nor read anyone's data. Binding the payload's ``lender_id`` to the topic is
  the admission agent's job (``LENDER_MISMATCH``).

``lender init-worker`` creates the registry's own principal (``registry-worker`` by default):
ALL on topics prefixed ``<ns>lenders.``, ``<ns>registry.`` and ``<app id>-`` (Faust's internal
topics), on consumer groups and transactional ids prefixed ``<app id>``, plus IDEMPOTENT_WRITE on
the cluster. The worker then runs with ``KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT``,
``KAFKA_SASL_USERNAME=registry-worker``.

Both connect as configured in settings: locally the PLAINTEXT listener (a super user there),
otherwise ``registry-admin`` over SASL. Re-running either is safe: ACLs are added idempotently
and the password is replaced.

Exit status (:class:`streams.cli.base.ExitCode`): 0 done; 64 usage error (bad or reserved
lender id); 69 broker unreachable or the operation failed; 77 the broker refused it.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
from typing import Any

from schemas.errors import InvalidLenderId
from schemas.topics import check_lender_id
from streams.cli.base import ExitCode, SubCommand, fail, lender_problem
from streams.kafka.errors import SecurityAdminError, TopicAdminError
from streams.kafka.security import Acl, Operation, PatternType, ResourceType, SecurityAdmin
from streams.kafka.topics import ensure_lender_topics
from streams.settings import Settings, get_settings

ADMIN_USER = "registry-admin"
WORKER_USER = "registry-worker"
#: Names a lender may not take: they are (or could become) privileged principals.
RESERVED_USERS = frozenset({ADMIN_USER, WORKER_USER, "anonymous"})


def lender_acls(settings: Settings, lender_id: str) -> list[Acl]:
    """Everything user ``lender_id`` may do, and nothing more."""
    topics, user = settings.topics, f"User:{check_lender_id(lender_id)}"
    acls = [
        Acl(user, op, ResourceType.TOPIC, name)
        for name in (topics.loans(lender_id), topics.consent(lender_id))
        for op in (Operation.WRITE, Operation.DESCRIBE)
    ]
    acls += [Acl(user, op, ResourceType.TOPIC, topics.rejected(lender_id))
             for op in (Operation.READ, Operation.DESCRIBE)]
    acls.append(Acl(user, Operation.READ, ResourceType.GROUP, f"{lender_id}.",
                    PatternType.PREFIXED))
    return acls


def worker_acls(settings: Settings, user: str = WORKER_USER) -> list[Acl]:
    """The registry worker's principal: its own topics, groups and transactional ids."""
    principal, ns, app = f"User:{user}", settings.kafka_namespace, settings.registry_app_id
    prefixed = PatternType.PREFIXED
    acls = [Acl(principal, Operation.ALL, ResourceType.TOPIC, prefix, prefixed)
            for prefix in (f"{ns}lenders.", f"{ns}registry.", f"{app}-")]
    acls += [Acl(principal, Operation.ALL, ResourceType.GROUP, app, prefixed),
             Acl(principal, Operation.ALL, ResourceType.TRANSACTIONAL_ID, app, prefixed),
             Acl(principal, Operation.IDEMPOTENT_WRITE, ResourceType.CLUSTER, "kafka-cluster")]
    return acls


async def add_lender(settings: Settings, lender_id: str, password: str) -> list[Acl]:
    """Topics, SCRAM credential and ACLs of one lender; returns the ACLs granted."""
    await ensure_lender_topics(settings, lender_id)
    acls = lender_acls(settings, lender_id)
    async with SecurityAdmin(settings) as admin:
        await admin.set_scram_password(lender_id, password)
        await admin.create_acls(acls)
    return acls


async def init_worker(settings: Settings, password: str, user: str = WORKER_USER) -> list[Acl]:
    acls = worker_acls(settings, user)
    async with SecurityAdmin(settings) as admin:
        await admin.set_scram_password(user, password)
        await admin.create_acls(acls)
    return acls


# --- command line -------------------------------------------------------------------------------


def _add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "lender", help="provision lenders and the worker principal on the broker",
        description="Create broker identities (SCRAM-SHA-512 users) and their ACLs.")
    actions = parser.add_subparsers(dest="lender_action", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add", help="topics, SCRAM user and ACLs of one lender",
        description="Create lender L's topics, the SCRAM-SHA-512 user L and ACLs that let L "
        "write only its own loans/consent topics and read only its rejected topic.")
    add.add_argument("lender", help="the lender id, e.g. jd-baitiao")
    add.add_argument("--password", default=None,
                     help="the lender's password (default: random, printed once)")
    worker = actions.add_parser(
        "init-worker", help="SCRAM user and ACLs of the registry worker",
        description="Create the registry worker's SCRAM user and its ACLs.")
    worker.add_argument("--user", default=WORKER_USER, help=f"default {WORKER_USER}")
    worker.add_argument("--password", default=None, help="default: random, printed once")
    return parser


def _run(args: argparse.Namespace) -> int:
    settings = get_settings()
    password = args.password or secrets.token_urlsafe(24)
    try:
        if args.lender_action == "add":
            user = check_lender_id(args.lender)
            if user in RESERVED_USERS:
                return _usage(f"{user!r} is reserved for the registry's own principals")
            acls = asyncio.run(add_lender(settings, user, password))
        else:
            user = args.user
            acls = asyncio.run(init_worker(settings, password, user))
    except InvalidLenderId:
        return _usage(lender_problem(args.lender) or "invalid lender id")
    except (SecurityAdminError, TopicAdminError) as exc:
        denied = "authoriz" in str(exc).lower() or "denied" in str(exc).lower()
        return fail("lender", str(exc), ExitCode.NO_PERM if denied else ExitCode.UNAVAILABLE)
    print(f"user {user} (SCRAM-SHA-512) ready with {len(acls)} ACLs:")
    for acl in acls:
        print(f"  {acl}")
    if args.password is None:
        print(f"password (shown once, store it now): {password}")
    return ExitCode.OK


def _usage(message: str) -> int:
    return fail("lender", message, ExitCode.USAGE)


LENDER = SubCommand(_add_parser, _run)
