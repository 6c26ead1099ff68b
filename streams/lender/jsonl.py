"""``registry publish`` (JSON Lines) and ``registry consent``: a lender publishing by hand.

``publish`` promises that nothing is dropped silently: every line is either published (and
acknowledged before the command exits 0 or 1) or reported on stderr as
``line N: REASON_CODE: message`` with the same reason codes the registry itself uses.

Exit status: 0 every line published; 1 at least one bad line (the good ones are published);
2 usage error (bad lender id, unreadable file, unreachable broker, invalid consent arguments);
3 the broker did not acknowledge everything (some lines may be missing; re-run the file: the
registry de-duplicates by event id).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, TextIO

from schemas.reasons import RejectReason
from schemas.records import format_timestamp
from schemas.topics import InvalidLenderId, check_lender_id
from schemas.validation import (
    ValidationError,
    ValidationLimits,
    parse_consent_json,
    parse_loan_json,
)
from streams.lender.publisher import LenderPublisher, PublishError, PublisherUnavailable
from streams.progress import Progress, stderr_is_tty
from streams.settings import Settings, get_settings
from streams.topics_admin import BrokerUnavailable, TopicAdminError, ensure_lender_topics

#: Inputs longer than this many lines report progress even when stderr is not a terminal.
PROGRESS_LINES = 10_000
EXIT_OK, EXIT_BAD_LINES, EXIT_USAGE, EXIT_UNACKNOWLEDGED = 0, 1, 2, 3


class SubCommand(NamedTuple):
    """What ``streams.cli`` wires: ``add_parser(subparsers)`` and ``run(args) -> exit code``."""

    add_parser: Callable[[Any], argparse.ArgumentParser]
    run: Callable[[argparse.Namespace], int]


@dataclass(frozen=True, slots=True)
class JsonlReport:
    lines: int
    published: int
    rejected: int
    by_reason: dict[str, int]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def publish_jsonl(
    publisher: LenderPublisher,
    lines: Iterable[str],
    *,
    limits: ValidationLimits,
    max_record_bytes: int,
    errors: TextIO,
    progress: Progress,
) -> JsonlReport:
    """Validate and publish each line; report every bad one on ``errors``; flush at the end."""
    lender_id = publisher.lender_id
    published = rejected = lineno = 0
    by_reason: dict[str, int] = {}

    def bad(reason: RejectReason, message: str) -> None:
        nonlocal rejected
        rejected += 1
        by_reason[reason.value] = by_reason.get(reason.value, 0) + 1
        print(f"line {lineno}: {reason.value}: {message}", file=errors)

    for lineno, line in enumerate(lines, start=1):
        if lineno > PROGRESS_LINES:
            progress.enabled = True
        progress.tick(lineno, published=published, rejected=rejected)
        text = line.strip()
        if not text:
            continue  # a blank line carries no record
        if len(text.encode()) > max_record_bytes:
            bad(RejectReason.OVERSIZED, f"line longer than {max_record_bytes} bytes")
            continue
        try:
            obj = json.loads(text)
        except ValueError as exc:
            bad(RejectReason.MALFORMED, f"not valid JSON ({exc})")
            continue
        if not isinstance(obj, dict):
            bad(RejectReason.MALFORMED, "a line must be one JSON object")
            continue
        try:
            event = parse_loan_json(obj, lender_id=lender_id, now_ms=_now_ms(), limits=limits)
        except ValidationError as exc:
            bad(exc.reason, str(exc))
            continue
        await publisher.publish_event(event)
        published += 1
    await publisher.flush()
    progress.finish(lineno, published=published, rejected=rejected)
    return JsonlReport(lineno, published, rejected, by_reason)


# --- registry publish ------------------------------------------------------------------------


def _add_publish_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "publish",
        help="publish loan events from a JSON Lines file",
        description="Publish loan events (one JSON object per line) as lender L. Every bad "
        "line is reported as 'line N: REASON: message' on stderr; exit status 1 if any.",
    )
    parser.add_argument("--lender", required=True, help="your lender id, e.g. jd-baitiao")
    parser.add_argument("file", help="JSON Lines file, or - for standard input")
    return parser


def _run_publish(args: argparse.Namespace) -> int:
    try:
        check_lender_id(args.lender)
    except InvalidLenderId as exc:
        return _usage("publish", str(exc))
    if args.file == "-":
        return asyncio.run(_publish(get_settings(), args.lender, sys.stdin))
    try:
        with open(args.file, encoding="utf-8", errors="replace") as handle:
            return asyncio.run(_publish(get_settings(), args.lender, handle))
    except OSError as exc:
        return _usage("publish", f"cannot read {args.file}: {exc.strerror or exc}")


async def _publish(settings: Settings, lender_id: str, source: TextIO) -> int:
    try:
        await ensure_lender_topics(settings, lender_id)
        async with LenderPublisher(settings, lender_id) as publisher:
            report = await publish_jsonl(
                publisher,
                source,
                limits=ValidationLimits.from_settings(settings),
                max_record_bytes=settings.max_record_bytes,
                errors=sys.stderr,
                progress=Progress("publish", enabled=stderr_is_tty()),
            )
    except (BrokerUnavailable, PublisherUnavailable) as exc:
        return _usage("publish", str(exc))
    except TopicAdminError as exc:
        return _usage("publish", f"cannot prepare the topics of {lender_id}: {exc}")
    except PublishError as exc:
        print(f"registry publish: not every event was acknowledged: {exc}", file=sys.stderr)
        return EXIT_UNACKNOWLEDGED
    print(f"published {report.published}, rejected {report.rejected}")
    return EXIT_BAD_LINES if report.rejected else EXIT_OK


# --- registry consent ------------------------------------------------------------------------


def _add_consent_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "consent",
        help="publish a borrower's consent grant or revocation",
        description="Consent is per borrower and lender; it applies to events whose "
        "occurred_at is at or after its effective time (--at, default now).",
    )
    parser.add_argument("action", choices=["grant", "revoke"])
    parser.add_argument("--lender", required=True, help="your lender id")
    parser.add_argument("--borrower", required=True, help="the borrower's national id")
    parser.add_argument("--at", default=None, help="effective time, RFC 3339 (default now)")
    parser.add_argument("--reference", default=None, help="your evidence id for the consent")
    return parser


def _run_consent(args: argparse.Namespace) -> int:
    try:
        check_lender_id(args.lender)
    except InvalidLenderId as exc:
        return _usage("consent", str(exc))
    settings = get_settings()
    now = _now_ms()
    obj: dict[str, Any] = {
        "lender_id": args.lender,
        "borrower_id": args.borrower,
        "action": args.action,
        "effective_at": args.at if args.at is not None else format_timestamp(now // 1000 * 1000),
    }
    if args.reference is not None:
        obj["reference"] = args.reference
    try:
        record = parse_consent_json(
            obj, lender_id=args.lender, now_ms=now, limits=ValidationLimits.from_settings(settings)
        )
    except ValidationError as exc:
        return _usage("consent", f"{exc.reason.value}: {exc}")
    return asyncio.run(_consent(settings, record))


async def _consent(settings: Settings, record: Any) -> int:
    try:
        await ensure_lender_topics(settings, record.lender_id)
        async with LenderPublisher(settings, record.lender_id) as publisher:
            await publisher.publish_consent(record)
    except (BrokerUnavailable, PublisherUnavailable) as exc:
        return _usage("consent", str(exc))
    except TopicAdminError as exc:
        return _usage("consent", f"cannot prepare the topics of {record.lender_id}: {exc}")
    except PublishError as exc:
        print(f"registry consent: not acknowledged: {exc}", file=sys.stderr)
        return EXIT_UNACKNOWLEDGED
    masked = "*" * 14 + record.borrower_id[-4:]
    print(
        f"consent {record.action.value} published: lender {record.lender_id}, borrower "
        f"{masked}, effective {format_timestamp(record.effective_at_ms)}"
    )
    return EXIT_OK


def _usage(command: str, message: str) -> int:
    print(f"registry {command}: {message}", file=sys.stderr)
    return EXIT_USAGE


PUBLISH = SubCommand(_add_publish_parser, _run_publish)
CONSENT = SubCommand(_add_consent_parser, _run_consent)
