"""``registry frequency`` and ``registry lag``: operator views through the worker's HTTP API.

In embedded-ClickHouse mode only the worker may open the chDB folder, so these commands never
touch ClickHouse or Kafka themselves: they ask the worker's API (``API_HOST``:``API_PORT`` by
default, ``--url`` otherwise). The national id travels in the POST body, never in the URL.

The national id is normalised locally (:func:`schemas.national_id.normalise`) before it is
sent; an invalid one never leaves the machine. Requests use the standard library's HTTP client,
so a look-up starts without loading an async HTTP stack.

Exit status (:class:`streams.cli.base.ExitCode`): 0 answered; 64 bad arguments; 65 invalid id
or the API refused the request (400); 77 token refused (401/403); 69 the worker could not be
reached or answered with a server error.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from schemas.errors import RegistryError
from streams.cli.base import ExitCode, SubCommand, fail

if TYPE_CHECKING:
    from streams.settings import Settings

TIMEOUT_S = 15.0
BAR_WIDTH = 30
_WINDOW = re.compile(r"^\s*([0-9]+)\s*d?\s*$", re.IGNORECASE | re.ASCII)


def _default_url(settings: Settings) -> str:
    host = settings.api_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.api_port}"


def _default_token(settings: Settings, scope: str = "frequency") -> str | None:
    """``$REGISTRY_API_TOKEN``, else the first configured token holding ``scope``."""
    from streams.settings import Scope

    return settings.cli_token(Scope(scope))


def _add_url(parser: argparse.ArgumentParser, *, token: bool = False) -> None:
    """``--url`` and ``--json`` of every command that asks the worker; ``--token`` with it."""
    if token:
        parser.add_argument("--token", default=None,
                            help="bearer token (default $REGISTRY_API_TOKEN, else the first "
                            "configured token: the local dev token in local mode)")
    parser.add_argument("--url", default=None,
                        help="base URL of the worker's API (default http://API_HOST:API_PORT)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")


class _Unreachable(RegistryError):
    retriable = True
    pass


#: No proxy from the environment: the worker is addressed directly (as aiohttp did).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _request(method: str, url: str, *, token: str | None = None,
             body: dict[str, Any] | None = None, timeout: float = TIMEOUT_S
             ) -> tuple[int, Any]:
    """(HTTP status, parsed JSON answer). Raises ``_Unreachable`` when no answer came and
    ``ValueError`` for a URL that is not http(s)."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--url must start with http:// or https://, not {url[:40]!r}")
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:  # an answer, with a 4xx/5xx status
            status, raw = exc.code, exc.read()
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Unreachable(f"{type(reason).__name__}: {reason}") from exc
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        payload = {"error": "not_json", "detail": raw[:200].decode(errors="replace")}
    return status, payload


def _error_of(status: int, payload: Any) -> str:
    if isinstance(payload, dict):
        reason = payload.get("error", f"HTTP {status}")
        detail = payload.get("detail")
        return f"{reason}: {detail}" if detail else str(reason)
    return f"HTTP {status}"


def _call_worker(
    command: str,
    args: argparse.Namespace,
    method: str,
    url: str,
    render: Callable[[dict[str, Any]], str],
    *,
    token: str | None = None,
    body: dict[str, Any] | None = None,
    timeout: float = TIMEOUT_S,
) -> int:
    """Ask the worker's HTTP API; print JSON (``--json``) or the rendered table.

    Exit status: 0 answered; 65 refused (400 and other 4xx: bad input); 77 token refused
    (401/403); 69 worker unreachable, failing (5xx) or not the registry's API (404); 64 a
    malformed ``--url``.
    """
    base = url.split("/api/", 1)[0]
    try:
        status, payload = _request(method, url, token=token, body=body, timeout=timeout)
    except ValueError as exc:
        return fail(command, str(exc), ExitCode.USAGE)
    except _Unreachable as exc:
        return fail(command, f"cannot reach the worker at {base} ({exc}); is "
                    "`registry worker` running?", ExitCode.UNAVAILABLE)
    if status not in (200, 202) or not isinstance(payload, dict):
        if status in (401, 403):
            code = ExitCode.NO_PERM
        elif status == 404 or status >= 500 or status in (200, 202):
            code = ExitCode.UNAVAILABLE
        else:
            code = ExitCode.DATA_ERR
        return fail(command, _error_of(status, payload), code)
    print(json.dumps(payload, indent=2) if args.json else render(payload))
    return ExitCode.OK


def _normalised_id(command: str, text: str) -> str | int:
    """The id by the one normalisation rule, or the exit code after a one-line report."""
    from schemas.errors import InvalidNationalId
    from schemas.national_id import normalise

    try:
        return normalise(text)
    except InvalidNationalId as exc:
        return fail(command, f"invalid borrower id: {exc}", ExitCode.DATA_ERR)


# --- registry frequency -----------------------------------------------------------------------


def parse_window(text: str) -> int:
    match = _WINDOW.match(text)
    if not match:
        raise argparse.ArgumentTypeError("expected a number of days like 30d or 30")
    days = int(match.group(1))
    if not 1 <= days <= 400:
        raise argparse.ArgumentTypeError("the window must be 1 to 400 days")
    return days


def _add_frequency_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "frequency",
        help="the risk view of one borrower (draws, amounts, lenders over a window)",
        description="Ask the worker's risk API about one borrower. The id is normalised "
        "(surrounding whitespace removed, x -> X), sent in the request body and never printed "
        "back. Exit 65 if the id or window is refused, 77 if the token is, 69 if the worker "
        "is unreachable.",
    )
    parser.add_argument("borrower_id", metavar="ID", help="the borrower's national id")
    parser.add_argument("--window", type=parse_window, default=30,
                        help="window in local days: 30d or 30 (default 30d)")
    _add_url(parser, token=True)
    return parser


def _run_frequency(args: argparse.Namespace) -> int:
    from streams.settings import get_settings

    borrower_id = _normalised_id("frequency", args.borrower_id)
    if isinstance(borrower_id, int):
        return borrower_id
    settings = get_settings()
    base = (args.url or _default_url(settings)).rstrip("/")
    token = args.token or _default_token(settings)
    body = {"borrower_id": borrower_id, "window_days": args.window}
    return _call_worker("frequency", args, "POST", f"{base}/api/v1/frequency",
                        render_frequency, token=token, body=body)


def render_frequency(answer: dict[str, Any]) -> str:
    """A readable table: totals, then one row per day with a bar of draws."""
    totals = [
        ("window", f"{answer.get('window_days')} days "
                   f"({answer.get('window_start', '?')} .. {answer.get('window_end', '?')})"),
        ("draws", f"{answer.get('draws')}  amount {answer.get('draw_amount')}"),
        ("repayments", f"{answer.get('repayments')}  amount {answer.get('repaid_amount')}"),
        ("defaults", str(answer.get("defaults"))),
        ("distinct lenders", str(answer.get("distinct_lenders"))),
        ("active days", str(answer.get("active_days"))),
        ("last draw at", answer.get("last_draw_at") or "-"),
        ("inquiring institutions", str(answer.get("inquiring_institutions", "-"))),
        ("as of", answer.get("as_of") or "unknown"),
    ]
    width = max(len(name) for name, _ in totals)
    lines = [f"{name:<{width}}  {value}" for name, value in totals]
    daily = answer.get("daily") or []
    if daily:
        peak = max((day.get("draws", 0) for day in daily), default=0) or 1
        lines += ["", f"{'date':<10}  {'draws':>5}  {'amount':>14}"]
        for day in daily:
            draws = int(day.get("draws", 0))
            bar = "#" * (max(1, round(draws / peak * BAR_WIDTH)) if draws else 0)
            lines.append(f"{day.get('date', ''):<10}  {draws:>5}  "
                         f"{day.get('draw_amount', ''):>14}  {bar}".rstrip())
    return "\n".join(lines)


# --- registry lag ------------------------------------------------------------------------------


def _add_lag_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "lag",
        help="consumer lag per group, topic and partition",
        description="Read the worker's lag monitor (GET /api/v1/lag). Exit 69 if the worker "
        "is unreachable.",
    )
    _add_url(parser)
    return parser


def _run_lag(args: argparse.Namespace) -> int:
    from streams.settings import get_settings

    settings = get_settings()
    base = (args.url or _default_url(settings)).rstrip("/")
    return _call_worker("lag", args, "GET", f"{base}/api/v1/lag?points=2", render_lag)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def render_lag(snapshot: dict[str, Any]) -> str:
    """One block per group: its status, then a row per partition."""
    lines: list[str] = []
    if not snapshot.get("ready"):
        lines.append("lag monitor: no sample yet")
    if snapshot.get("error"):
        lines.append(f"lag monitor error: {snapshot['error']}")
    header = ("topic", "part", "committed", "end", "lag", "lag s", "status")
    for name, group in sorted((snapshot.get("groups") or {}).items()):
        lines.append("")
        lines.append(f"group {name}: {group.get('status')} (state {group.get('state')}, "
                     f"{group.get('members')} members, lag {group.get('lag')})")
        rows = [header] + [
            (str(p.get("topic")), _cell(p.get("partition")), _cell(p.get("committed")),
             _cell(p.get("end")), _cell(p.get("lag")), _cell(p.get("lag_seconds")),
             str(p.get("status")))
            for p in group.get("partitions") or []
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in
                                                  zip(row[1:-1], widths[1:-1], strict=True)]
            lines.append("  " + "  ".join([*cells, row[-1]]))
    freshness = snapshot.get("freshness") or []
    if freshness:
        lines.append("")
        lines.append("lender freshness (seconds since newest message):")
        for item in freshness:
            lines.append(f"  {item.get('lender')}: {_cell(item.get('seconds'))}")
    if not snapshot.get("groups"):
        lines.append("no consumer groups")
    return "\n".join(lines).lstrip("\n")


FREQUENCY = SubCommand(_add_frequency_parser, _run_frequency)
LAG = SubCommand(_add_lag_parser, _run_lag)
