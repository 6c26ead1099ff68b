"""``registry report ID [--json]``: the data subject's own report, through the worker's API.

Like ``registry frequency``, the command never opens ClickHouse itself (the worker owns an
embedded chDB folder): it sends ``POST /api/v1/subject-report`` with the national id in the body
and prints the answer as tables (``--json``: the raw answer). The national id is never printed.
The token is ``--token``, else ``$REGISTRY_API_TOKEN``, else the first configured token with
scope ``subject_report`` (the local dev token in local mode). The request is recorded as an
inquiry with purpose ``subject_access``.

Exit status: 0 answered; 1 refused (bad id, unknown token, token without the scope); 2 the
worker could not be reached or failed.
"""

from __future__ import annotations

import argparse
from typing import Any

from streams.cli.base import SubCommand
from streams.cli.risk import _add_url, _call_worker, _default_url, _normalised_id


def _add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        help="the data subject's report: events, consents, inquiries, erasures held on them",
        description="Ask the worker for everything the registry holds on one person (events "
        "per lender, consent history, who looked them up, erasures). The id is sent in the "
        "request body and never printed back. Exit 1 if refused, 2 if the worker is "
        "unreachable or failing.",
    )
    parser.add_argument("borrower_id", metavar="ID", help="the person's national id")
    _add_url(parser, token=True)
    return parser


def _rows(title: str, headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["", title]
    if not rows:
        return [*lines, "  none"]
    cells = [headers] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return lines + ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                    .rstrip() for row in cells]


def render_report(report: dict[str, Any]) -> str:
    """The report as plain-text tables, one section per key."""
    lines = [f"report {report.get('request_id')} generated {report.get('generated_at')}",
             f"pseudonym {report.get('pseudonym')}"]
    events, consents = report.get("events") or [], report.get("consents") or []
    inquiries, erasures = report.get("inquiries") or [], report.get("erasures") or []
    lines += _rows(f"events ({len(events)})",
                   ["lender", "occurred at", "type", "amount", "currency", "loan", "event id",
                    "withdraws", "cancelled"],
                   [[e["lender_id"], e["occurred_at"], e["event_type"], e["amount"],
                     e["currency"], e["loan_id"], e["event_id"], e.get("cancels_event_id"),
                     "yes" if e["cancelled"] else "no"] for e in events])
    lines += _rows(f"consents ({len(consents)} lenders)",
                   ["lender", "in force", "action", "effective at", "reference"],
                   [[c["lender_id"], ("yes" if c["in_force"] else "no") if i == 0 else "",
                     h["action"], h["effective_at"], h["reference"]]
                    for c in consents
                    for i, h in enumerate(c["history"])])
    lines += _rows(f"inquiries ({len(inquiries)})", ["institution", "at", "purpose", "request"],
                   [[q["institution"], q["inquired_at"], q["purpose"], q["request_id"]]
                    for q in inquiries])
    lines += _rows(f"erasures ({len(erasures)})", ["at", "institution", "rows", "tables"],
                   [[x["erased_at"], x["institution"], x["rows_before"],
                     ",".join(x["tables"])] for x in erasures])
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from streams.settings import Scope, get_settings

    borrower_id = _normalised_id("report", args.borrower_id)
    if isinstance(borrower_id, int):
        return borrower_id
    settings = get_settings()
    base = (args.url or _default_url(settings)).rstrip("/")
    token = args.token or settings.cli_token(Scope.SUBJECT_REPORT)
    return _call_worker("report", args, "POST", f"{base}/api/v1/subject-report", render_report,
                        token=token, body={"borrower_id": borrower_id})


REPORT = SubCommand(_add_parser, _run)
