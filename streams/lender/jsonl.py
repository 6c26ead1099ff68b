"""``registry publish`` (JSON Lines) and ``registry consent``: a lender publishing by hand.

``publish`` promises that nothing is dropped silently: every line is either published (and
acknowledged before the command exits) or reported on stderr as ``line N: REASON_CODE:
message`` with the same reason codes the registry itself uses. Reports never repeat a
national id.

Reading the bytes (:func:`read_line`, a pure function):

* the file is read as bytes and split on ``\\n``; each line is decoded STRICTLY in the
  ``--encoding`` (default UTF-8). An undecodable line is reported as ``MALFORMED: not UTF-8``
  with the position of the first bad byte: never replaced by U+FFFD (two ids differing only
  in undecodable characters would otherwise become one). GBK/GB 2312 exports are read with
  ``--encoding gb18030`` (a superset of both). Only ASCII-compatible encodings are accepted,
  so a ``\\n`` byte always ends a line;
* a byte-order mark (U+FEFF) at the start of a line is an encoding mark, not data: removed
  (files saved by Windows tools start with one; ``cat`` of two such files has two);
* a line longer than ``MAX_RECORD_BYTES`` is ``OVERSIZED``; JSON that cannot be parsed,
  including nesting deeper than the parser's recursion limit (about 1,000 levels), is
  ``MALFORMED``; a line that is not one JSON object is ``MALFORMED``; then the fields are
  checked by :func:`schemas.validation.parse_loan_json`.

Exit status (:class:`streams.cli.base.ExitCode`): 0 every line published; 65 at least one bad
line (the good ones are published) or an invalid consent; 64 usage error (bad lender id or
encoding); 66 unreadable file; 69 broker unreachable; 75 the broker did not acknowledge
everything (some lines may be missing; re-run the file: the registry de-duplicates by event id).
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from schemas.errors import ValidationError
from schemas.reasons import RejectReason
from schemas.records import LoanEvent, format_timestamp
from schemas.validation import ValidationLimits, parse_consent_json, parse_loan_json
from streams.cli.base import ExitCode, fail, lender_problem
from streams.cli.base import SubCommand as SubCommand  # re-exported for older imports

if TYPE_CHECKING:
    from tqdm import tqdm

    from streams.lender.publisher import LenderPublisher
    from streams.settings import Settings

DEFAULT_ENCODING = "utf-8"
_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why one line is not published: a reason code and a message without any id."""

    reason: RejectReason
    message: str


@dataclass(frozen=True, slots=True)
class JsonlReport:
    lines: int
    published: int
    rejected: int
    by_reason: dict[str, int]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def check_encoding(name: str) -> str:
    """The codec's canonical name if ``name`` is a known ASCII-compatible text encoding.

    Raises ``ValueError`` otherwise (UTF-16/32 are refused: their ``\\n`` is not one byte).
    """
    try:
        canonical = codecs.lookup(name).name
        probe = "\n{}[]\":,.-+0123456789abcdefghijklmnopqrstuvwxyzABCDEFXYZ_ "
        ascii_compatible = probe.encode(canonical) == probe.encode("ascii")
    except (LookupError, UnicodeError, TypeError):
        raise ValueError(f"unknown text encoding {name!r}") from None
    if not ascii_compatible:
        raise ValueError(f"encoding {name!r} is not ASCII-compatible; convert the file to UTF-8")
    return canonical


def _decode(raw: bytes, encoding: str) -> str | Rejected:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        where = f"byte 0x{raw[exc.start]:02X} at column {exc.start + 1}"
        if encoding == "utf-8":
            return Rejected(RejectReason.MALFORMED,
                            f"not UTF-8 ({where}); a GBK/GB18030 file needs --encoding gb18030")
        return Rejected(RejectReason.MALFORMED, f"not valid {encoding} ({where})")


def read_line(
    raw: bytes,
    *,
    lender_id: str,
    limits: ValidationLimits,
    max_record_bytes: int,
    now_ms: int,
    encoding: str = DEFAULT_ENCODING,
) -> LoanEvent | Rejected | None:
    """What one input line (bytes, with or without its line end) becomes.

    Returns the validated :class:`LoanEvent`, a :class:`Rejected` naming the reason, or None
    for a blank line (it carries no record). Never raises for any ``raw``; ``encoding`` must
    come from :func:`check_encoding`.
    """
    stripped = raw.strip()
    if not stripped:
        return None
    if len(stripped) > max_record_bytes:
        return Rejected(RejectReason.OVERSIZED, f"line longer than {max_record_bytes} bytes")
    text = _decode(stripped, encoding)
    if isinstance(text, Rejected):
        return text
    text = text.lstrip(_BOM).strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
    except RecursionError:
        return Rejected(RejectReason.MALFORMED, "not valid JSON (nested too deeply)")
    except ValueError as exc:
        return Rejected(RejectReason.MALFORMED, f"not valid JSON ({_json_problem(exc)})")
    if not isinstance(obj, dict):
        return Rejected(RejectReason.MALFORMED, "a line must be one JSON object")
    try:
        return parse_loan_json(obj, lender_id=lender_id, now_ms=now_ms, limits=limits)
    except ValidationError as exc:
        return Rejected(exc.reason, str(exc))


def _json_problem(exc: ValueError) -> str:
    """The parser's complaint without any of the input (``JSONDecodeError`` carries only a
    position; other ``ValueError``s, e.g. an integer too long to convert, are summarised)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg}: line 1 column {exc.colno}"
    return "a number too long to convert" if "digits" in str(exc) else type(exc).__name__


async def publish_jsonl(
    publisher: LenderPublisher,
    lines: Iterable[bytes],
    *,
    limits: ValidationLimits,
    max_record_bytes: int,
    errors: TextIO,
    bar: tqdm | None = None,
    encoding: str = DEFAULT_ENCODING,
) -> JsonlReport:
    """Read each line with :func:`read_line`; publish the good, report every bad one on
    ``errors``; flush (wait for every acknowledgement) at the end. ``bar`` (optional) counts
    lines and shows the rejections so far."""
    from streams.runtime.progress import write

    lender_id = publisher.lender_id
    published = rejected = lineno = 0
    by_reason: dict[str, int] = {}
    for lineno, raw in enumerate(lines, start=1):
        result = read_line(raw, lender_id=lender_id, limits=limits,
                           max_record_bytes=max_record_bytes, now_ms=_now_ms(),
                           encoding=encoding)
        if isinstance(result, LoanEvent):
            await publisher.publish_event(result)
            published += 1
        elif isinstance(result, Rejected):
            rejected += 1
            by_reason[result.reason.value] = by_reason.get(result.reason.value, 0) + 1
            message = f"line {lineno}: {result.reason.value}: {result.message}"
            if bar is None:
                print(message, file=errors)
            else:
                bar.set_postfix_str(f"rejected {rejected}", refresh=False)
                write(bar, message, errors)  # redraws the bar, with the new count
        if bar is not None:
            bar.update(1)
    await publisher.flush()
    return JsonlReport(lineno, published, rejected, by_reason)


def count_lines(handle: BinaryIO) -> int | None:
    """Lines in a regular, seekable file (read once more, in C, ~1 GB/s), then rewound;
    None for a pipe or terminal."""
    try:
        if not os.path.isfile(f"/dev/fd/{handle.fileno()}") or not handle.seekable():
            return None
        start = handle.tell()
        count, last = 0, b"\n"
        for block in iter(lambda: handle.read(1 << 20), b""):
            count += block.count(b"\n")
            last = block[-1:]
        handle.seek(start)
    except (OSError, ValueError):
        return None
    return count + (last != b"\n")


# --- registry publish ------------------------------------------------------------------------


def _add_publish_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "publish",
        help="publish loan events from a JSON Lines file",
        description="Publish loan events (one JSON object per line) as lender L. Every bad "
        "line is reported as 'line N: REASON: message' on stderr; exit status 65 if any (the "
        "good lines are published). A progress bar is drawn when stderr is a terminal.",
    )
    parser.add_argument("--lender", required=True, help="your lender id, e.g. jd-baitiao")
    parser.add_argument(
        "--encoding", default=DEFAULT_ENCODING,
        help="text encoding of the file (default utf-8, a leading byte-order mark is "
        "ignored); gb18030 reads GBK and GB 2312 exports. An undecodable line is reported, "
        "never guessed at.")
    parser.add_argument("file", help="JSON Lines file, or - for standard input")
    return parser


def _run_publish(args: argparse.Namespace) -> int:
    problem = lender_problem(args.lender)
    if problem is not None:
        return fail("publish", problem, ExitCode.USAGE)
    try:
        encoding = check_encoding(args.encoding)
    except ValueError as exc:
        return fail("publish", str(exc), ExitCode.USAGE)
    from streams.settings import get_settings

    if args.file == "-":
        return asyncio.run(_publish(get_settings(), args.lender, sys.stdin.buffer, encoding))
    try:
        with open(args.file, "rb") as handle:
            return asyncio.run(_publish(get_settings(), args.lender, handle, encoding))
    except OSError as exc:
        return fail("publish", f"cannot read {args.file}: {exc.strerror or exc}",
                    ExitCode.NO_INPUT)


async def _publish(settings: Settings, lender_id: str, source: BinaryIO, encoding: str) -> int:
    from streams.kafka.errors import BrokerUnavailable, TopicAdminError
    from streams.kafka.topics import ensure_lender_topics
    from streams.lender.errors import PublishError, PublisherUnavailable
    from streams.lender.publisher import LenderPublisher
    from streams.runtime.progress import is_terminal, progress_bar

    try:
        await ensure_lender_topics(settings, lender_id)
        async with LenderPublisher(settings, lender_id) as publisher:
            total = count_lines(source) if is_terminal() else None
            with progress_bar("publish", total=total) as bar:
                report = await publish_jsonl(
                    publisher,
                    source,
                    limits=ValidationLimits.from_settings(settings),
                    max_record_bytes=settings.max_record_bytes,
                    errors=sys.stderr,
                    bar=bar,
                    encoding=encoding,
                )
    except (BrokerUnavailable, PublisherUnavailable) as exc:
        return fail("publish", str(exc), ExitCode.UNAVAILABLE)
    except TopicAdminError as exc:
        return fail("publish", f"cannot prepare the topics of {lender_id}: {exc}",
                    ExitCode.UNAVAILABLE)
    except PublishError as exc:
        return fail("publish", f"not every event was acknowledged: {exc}", ExitCode.TEMP_FAIL)
    except OSError as exc:
        return fail("publish", f"cannot read the input: {exc.strerror or exc}",
                    ExitCode.NO_INPUT)
    print(f"published {report.published}, rejected {report.rejected}")
    return ExitCode.DATA_ERR if report.rejected else ExitCode.OK


# --- registry consent ------------------------------------------------------------------------


def _add_consent_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "consent",
        help="publish a borrower's consent grant or revocation",
        description="Consent is per borrower and lender; it applies to events whose "
        "occurred_at is at or after its effective time (--at, default now). The id is "
        "normalised (surrounding whitespace removed, x -> X). Exit 65 if the consent is "
        "invalid.",
    )
    parser.add_argument("action", choices=["grant", "revoke"])
    parser.add_argument("--lender", required=True, help="your lender id")
    parser.add_argument("--borrower", required=True, help="the borrower's national id")
    parser.add_argument("--at", default=None, help="effective time, RFC 3339 (default now)")
    parser.add_argument("--reference", default=None, help="your evidence id for the consent")
    return parser


def consent_record(args: argparse.Namespace, *, now_ms: int, limits: ValidationLimits) -> Any:
    """The validated :class:`~schemas.records.ConsentRecord` of ``registry consent``'s
    arguments (``action``, ``lender``, ``borrower``, ``at``, ``reference``), or a
    :class:`Rejected` with the reason (an invalid lender id is MALFORMED). Never raises."""
    problem = lender_problem(args.lender)
    if problem is not None:
        return Rejected(RejectReason.MALFORMED, problem)
    obj: dict[str, Any] = {
        "lender_id": args.lender,
        "borrower_id": args.borrower,
        "action": args.action,
        "effective_at": args.at if args.at is not None else format_timestamp(
            now_ms // 1000 * 1000),
    }
    if args.reference is not None:
        obj["reference"] = args.reference
    try:
        return parse_consent_json(obj, lender_id=args.lender, now_ms=now_ms, limits=limits)
    except ValidationError as exc:
        return Rejected(exc.reason, str(exc))


def _run_consent(args: argparse.Namespace) -> int:
    problem = lender_problem(args.lender)
    if problem is not None:
        return fail("consent", problem, ExitCode.USAGE)
    from streams.settings import get_settings

    settings = get_settings()
    record = consent_record(args, now_ms=_now_ms(),
                            limits=ValidationLimits.from_settings(settings))
    if isinstance(record, Rejected):
        return fail("consent", f"{record.reason.value}: {record.message}", ExitCode.DATA_ERR)
    return asyncio.run(_consent(settings, record))


async def _consent(settings: Settings, record: Any) -> int:
    from streams.kafka.errors import BrokerUnavailable, TopicAdminError
    from streams.kafka.topics import ensure_lender_topics
    from streams.lender.errors import PublishError, PublisherUnavailable
    from streams.lender.publisher import LenderPublisher

    try:
        await ensure_lender_topics(settings, record.lender_id)
        async with LenderPublisher(settings, record.lender_id) as publisher:
            await publisher.publish_consent(record)
    except (BrokerUnavailable, PublisherUnavailable) as exc:
        return fail("consent", str(exc), ExitCode.UNAVAILABLE)
    except TopicAdminError as exc:
        return fail("consent", f"cannot prepare the topics of {record.lender_id}: {exc}",
                    ExitCode.UNAVAILABLE)
    except PublishError as exc:
        return fail("consent", f"not acknowledged: {exc}", ExitCode.TEMP_FAIL)
    masked = "*" * 14 + record.borrower_id[-4:]
    print(
        f"consent {record.action.value} published: lender {record.lender_id}, borrower "
        f"{masked}, effective {format_timestamp(record.effective_at_ms)}"
    )
    return ExitCode.OK


PUBLISH = SubCommand(_add_publish_parser, _run_publish)
CONSENT = SubCommand(_add_consent_parser, _run_consent)
