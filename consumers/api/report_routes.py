"""The data subject's access report: ``POST /api/v1/subject-report``, page ``/subject-report``.

JSON route. Request: ``Authorization: Bearer <token>`` of a token with scope ``subject_report``
(e.g. the registry's own counter) and a body ``{"borrower_id": "..."}``. Answer 200::

    {"request_id", "generated_at", "pseudonym",
     "events": [...], "consents": [...], "inquiries": [...], "erasures": [...]}

with the four lists of :func:`consumers.risk.subject_report.subject_report`. Errors: 400
``invalid_json`` / ``invalid_borrower_id``; 401 / 403 from :mod:`consumers.api.auth` (before
the body is read); 503 ``clickhouse_unavailable``.

Page. ``GET /subject-report`` is a form (national id, token) that POSTs to ``/subject-report``;
the answer is the same report as a readable HTML page, server-rendered (no script), every value
HTML-escaped. The national id therefore only ever travels in a POST body, never in a URL, and
the page answers with ``Cache-Control: no-store`` and ``Referrer-Policy: no-referrer``.

Guarantees of both: the request is recorded as an inquiry (purpose ``subject_access``, window
0) BEFORE the report is read, so the report lists its own request and a report is never given
without its audit row (a failed insert fails the request). The national id is pseudonymised at
once and never logged, echoed nor stored; the answer carries the pseudonym, the key under which
the registry holds the person's data.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import time
import uuid
from collections.abc import Set as AbstractSet
from typing import Any

from aiohttp import web

from consumers.api.auth import authorizer
from consumers.api.errors import ApiError
from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.errors import ClickHouseError
from consumers.risk.inquiries import record_inquiry
from consumers.risk.subject_report import SUBJECT_ACCESS_PURPOSE, subject_report
from schemas.errors import RegistryError
from schemas.national_id import normalise
from schemas.pseudonym import Pseudonymiser
from schemas.records import format_timestamp
from streams.settings import Scope, Settings

log = logging.getLogger(__name__)

_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'",
}


class _Refused(RegistryError):
    retriable = False
    def __init__(self, status: int, code: str, detail: str = "") -> None:
        super().__init__(code)
        self.status, self.code, self.detail = status, code, detail

    def body(self) -> dict[str, str]:
        return {"error": self.code} | ({"detail": self.detail} if self.detail else {})


class ReportHandler:
    """One instance per application; builds the report for the JSON route and the page."""

    def __init__(self, settings: Settings, ch: ClickHouse) -> None:
        self._settings = settings
        self._ch = ch
        self._pseudonymise = Pseudonymiser(settings.pseudonym_key_bytes)

    async def _report(self, institution: str, raw_id: object, request_id: str
                      ) -> dict[str, Any]:
        if not isinstance(raw_id, str):
            raise _Refused(400, ApiError.INVALID_BORROWER_ID, "borrower_id must be a string")
        try:
            borrower = self._pseudonymise(normalise(raw_id.strip()))
        except ValueError as exc:
            raise _Refused(400, ApiError.INVALID_BORROWER_ID, str(exc)) from None
        del raw_id
        now_ms = int(time.time() * 1000)
        try:
            await asyncio.to_thread(
                record_inquiry, self._ch, institution=institution, borrower=borrower,
                purpose=SUBJECT_ACCESS_PURPOSE, window_days=0, request_id=request_id)
            data = await asyncio.to_thread(subject_report, self._ch, borrower=borrower,
                                           now_ms=now_ms)
        except ClickHouseError as exc:
            log.warning("subject report %s failed: %s", request_id, exc)
            raise _Refused(503, ApiError.CLICKHOUSE_UNAVAILABLE) from None
        log.info("subject report %s for %s", request_id, institution)
        return {"request_id": request_id, "generated_at": format_timestamp(now_ms),
                "pseudonym": borrower} | data

    @staticmethod
    def _request_id(request: web.Request) -> str:
        return request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex

    async def handle_json(self, request: web.Request) -> web.Response:
        institution = authorizer(self._settings).require(
            request, Scope.SUBJECT_REPORT)
        try:
            try:
                body: Any = json.loads(await request.read())
            except (ValueError, UnicodeDecodeError):
                raise _Refused(400, ApiError.INVALID_JSON, "the body is not valid JSON") from None
            if not isinstance(body, dict):
                raise _Refused(400, ApiError.INVALID_JSON, "the body must be a JSON object")
            report = await self._report(institution, body.pop("borrower_id", None),
                                        self._request_id(request))
        except _Refused as refused:
            return web.json_response(refused.body(), status=refused.status)
        return web.json_response(report, headers={"Cache-Control": "no-store"})

    async def form(self, _request: web.Request) -> web.Response:
        return _page("Your credit registry report", _FORM, 200)

    async def handle_form(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = form.get("token")
        try:
            institution = authorizer(self._settings).require(
                request, Scope.SUBJECT_REPORT, token=token if isinstance(token, str) else "")
        except web.HTTPException as denied:
            reason = json.loads(denied.text or "{}")
            return _page("Report refused", _error_html(reason), denied.status)
        try:
            report = await self._report(institution, form.get("borrower_id"),
                                        self._request_id(request))
        except _Refused as refused:
            return _page("Report refused", _error_html(refused.body()), refused.status)
        return _page("Your credit registry report", render_report_html(report), 200)


# --- the page ----------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}th{background:#f2f2f2}
td.n{text-align:right}.muted{color:#666}
label{display:block;margin:.6rem 0 .2rem}input{font:inherit;padding:.3rem;width:22rem}
"""

_FORM = """
<p>Enter the national identity number of the person the report is about. It is sent in the
body of the request, never in the address, and is not stored: the registry keeps data under a
pseudonym only. Your request is recorded as an inquiry with purpose <code>subject_access</code>.</p>
<form method="post" action="/subject-report" autocomplete="off">
<label for="borrower_id">National identity number</label>
<input id="borrower_id" name="borrower_id" required maxlength="32">
<label for="token">Access token of the serving institution</label>
<input id="token" name="token" type="password" required>
<p><button type="submit">Show the report</button></p>
</form>
"""


def _page(title: str, body: str, status: int) -> web.Response:
    text = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")
    return web.Response(text=text, status=status, content_type="text/html",
                        headers=_PAGE_HEADERS)


def _error_html(body: dict[str, Any]) -> str:
    message = body.get("detail") or body.get("error") or "refused"
    return (f"<p>{html.escape(str(message))} (<code>{html.escape(str(body.get('error')))}"
            "</code>)</p><p><a href=\"/subject-report\">Back</a></p>")


def _table(headers: list[str], rows: list[list[Any]],
           numeric: AbstractSet[int] = frozenset()) -> str:
    if not rows:
        return "<p class=\"muted\">None.</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(
            f"<td{' class=n' if i in numeric else ''}>"
            f"{html.escape('-' if cell is None else str(cell))}</td>"
            for i, cell in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report_html(report: dict[str, Any]) -> str:
    """The report's four sections as HTML tables (every value escaped)."""
    parts = [f"<p class=\"muted\">Generated {html.escape(str(report.get('generated_at')))}, "
             f"request {html.escape(str(report.get('request_id')))}. You are recorded under the "
             f"pseudonym <code>{html.escape(str(report.get('pseudonym')))}</code>.</p>"]
    events = report.get("events") or []
    parts.append(f"<h2>Loan events reported by lenders ({len(events)})</h2>")
    parts.append(_table(
        ["lender", "occurred at", "type", "amount", "currency", "loan", "event id",
         "product", "withdraws", "cancelled"],
        [[e["lender_id"], e["occurred_at"], e["event_type"], e["amount"], e["currency"],
          e["loan_id"], e["event_id"], e["product"], e.get("cancels_event_id"),
          "yes" if e["cancelled"] else "no"]
         for e in events], {3}))
    consents = report.get("consents") or []
    parts.append(f"<h2>Consent per lender ({len(consents)})</h2>")
    parts.append(_table(
        ["lender", "in force now", "action", "effective at", "reference", "recorded at"],
        [[c["lender_id"], ("yes" if c["in_force"] else "no") if i == 0 else "",
          h["action"], h["effective_at"], h["reference"], h["recorded_at"]]
         for c in consents for i, h in enumerate(c["history"])]))
    inquiries = report.get("inquiries") or []
    parts.append(f"<h2>Who looked you up ({len(inquiries)})</h2>")
    parts.append(_table(["institution", "at", "purpose", "request"],
                        [[q["institution"], q["inquired_at"], q["purpose"], q["request_id"]]
                         for q in inquiries]))
    erasures = report.get("erasures") or []
    parts.append(f"<h2>Erasures ({len(erasures)})</h2>")
    parts.append(_table(["at", "institution", "rows erased", "tables", "request"],
                        [[x["erased_at"], x["institution"], x["rows_before"],
                          ", ".join(x["tables"]), x["request_id"]] for x in erasures], {2}))
    parts.append("<p><a href=\"/subject-report\">Another report</a></p>")
    return "".join(parts)


def add_report_routes(app: web.Application, *, settings: Settings, ch: ClickHouse) -> None:
    """Register ``POST /api/v1/subject-report`` and the page ``GET|POST /subject-report``."""
    handler = ReportHandler(settings, ch)
    app.router.add_post("/api/v1/subject-report", handler.handle_json)
    app.router.add_get("/subject-report", handler.form)
    app.router.add_post("/subject-report", handler.handle_form)
