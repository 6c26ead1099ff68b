"""``registry erase --borrower ID``: a data subject's erasure request, made through the worker.

In embedded-ClickHouse mode only the worker may open the chDB folder, so the erasure runs in the
worker (``POST /api/v1/erasure``, :mod:`consumers.api.erasure_routes`); this command only sends
the request. The national id travels in the POST body and is never printed back.

The id is normalised locally first (:func:`schemas.national_id.normalise`).

Exit status (:class:`streams.cli.base.ExitCode`): 0 erased (also when nothing was stored);
64 bad arguments; 65 invalid id (refused locally or by the API); 77 token refused; 69 the worker
could not be reached or failed (ClickHouse or Redis down): repeat the command, it is idempotent.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from streams.cli.base import ExitCode, SubCommand, fail
from streams.cli.risk import (
    _add_url,
    _call_worker,
    _default_token,
    _default_url,
    _normalised_id,
)


def _add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "erase",
        help="erase one borrower's data (ClickHouse rows, consent in Redis)",
        description="Ask the worker to erase every stored trace of one borrower. An audit row "
        "without the id or its pseudonym is kept. Exit 65 if the id is refused, 77 if the "
        "token is, 69 if the worker is unreachable or failing.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--borrower", metavar="ID", help="the borrower's national id")
    which.add_argument("--status", metavar="REQUEST_ID",
                       help="follow an earlier erasure request (answered 202: pending)")
    _add_url(parser, token=True)
    return parser


def render(answer: dict[str, Any]) -> str:
    if answer.get("status") == "pending":
        return (f"erasure pending (request {answer.get('request_id')}): follow it with "
                f"`registry erase --status {answer.get('request_id')}`")
    tables = ", ".join(answer.get("tables") or []) or "-"
    return (f"erased: {answer.get('rows_before')} rows in {tables}; "
            f"{answer.get('consent_keys')} consent keys (request {answer.get('request_id')})")


def _run(args: argparse.Namespace) -> int:
    from streams.settings import get_settings

    if args.status:
        if not _REQUEST_ID.fullmatch(args.status):
            return fail("erase", "--status takes a request id (letters, digits, - and _)",
                        ExitCode.USAGE)
        borrower_id: str | int = ""
    else:
        borrower_id = _normalised_id("erase", args.borrower)
        if isinstance(borrower_id, int):
            return borrower_id
    settings = get_settings()
    base = (args.url or _default_url(settings)).rstrip("/")
    token = args.token or _default_token(settings, "erasure")
    if args.status:
        return _call_worker("erase", args, "GET", f"{base}/api/v1/erasure/{args.status}",
                            render, token=token)
    # the worker answers within ERASURE_WAIT_SECONDS (200 done, or 202 pending): wait longer
    return _call_worker("erase", args, "POST", f"{base}/api/v1/erasure", render,
                        token=token, body={"borrower_id": borrower_id},
                        timeout=settings.erasure_wait_seconds + 15)


_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
ERASE = SubCommand(_add_parser, _run)
