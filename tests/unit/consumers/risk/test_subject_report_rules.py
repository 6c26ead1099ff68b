"""The subject report's pure parts: the consent-in-force rule and the readable renderings."""

from __future__ import annotations

import hashlib

from consumers.api.report_routes import render_report_html
from consumers.risk.subject_report import consent_in_force, erasure_hash
from streams.cli.report import render_report


def test_consent_in_force_follows_the_stream_rule() -> None:
    assert consent_in_force([], 1_000) is False
    assert consent_in_force([(100, "grant")], 1_000) is True
    assert consent_in_force([(100, "grant")], 100) is True  # at the instant itself
    assert consent_in_force([(100, "grant")], 99) is False  # not yet effective
    assert consent_in_force([(100, "grant"), (500, "revoke")], 1_000) is False
    assert consent_in_force([(100, "grant"), (500, "revoke")], 499) is True
    assert consent_in_force([(100, "grant"), (500, "revoke"), (700, "grant")], 1_000) is True
    assert consent_in_force([(500, "grant"), (500, "revoke")], 1_000) is False  # revoke wins
    assert consent_in_force([(500, "revoke"), (500, "grant")], 1_000) is False  # in any order
    assert consent_in_force([(100, "grant"), (2_000, "revoke")], 1_000) is True  # future


def test_erasure_hash_is_sha256_of_the_pseudonym() -> None:
    assert erasure_hash("abc") == hashlib.sha256(b"abc").hexdigest()


REPORT = {
    "request_id": "r-1", "generated_at": "2026-11-29T01:00:00.000Z", "pseudonym": "p" * 32,
    "events": [{"lender_id": "bank-<a>", "event_id": "e&1", "loan_id": "l", "event_type": "draw",
                "amount": "12.50", "currency": "CNY", "occurred_at": "2026-11-28T01:00:00.000Z",
                "product": None, "admitted_at": "2026-11-28T01:00:01.000Z", "cancelled": True}],
    "consents": [{"lender_id": "bank-<a>", "in_force": False, "history": [
        {"action": "grant", "effective_at": "t1", "reference": "<script>x</script>",
         "recorded_at": "t2"},
        {"action": "revoke", "effective_at": "t3", "reference": None, "recorded_at": "t4"}]}],
    "inquiries": [{"institution": "counter", "inquired_at": "t5", "purpose": "subject_access",
                   "window_days": 0, "request_id": "r-1"}],
    "erasures": [{"erased_at": "t6", "request_id": "x", "institution": "reg",
                  "tables": ["a", "b"], "rows_before": 4}],
}


def test_html_escapes_every_value() -> None:
    page = render_report_html(REPORT)
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "bank-&lt;a&gt;" in page and "e&amp;1" in page
    assert "Loan events reported by lenders (1)" in page and "Erasures (1)" in page


def test_cli_table_lists_each_section() -> None:
    text = render_report(REPORT)
    lines = text.splitlines()
    assert lines[:2] == ["report r-1 generated 2026-11-29T01:00:00.000Z", "pseudonym " + "p" * 32]
    assert "events (1)" in lines and "consents (1 lenders)" in lines
    assert "inquiries (1)" in lines and "erasures (1)" in lines
    event = lines[lines.index("events (1)") + 2].split()
    assert event == ["bank-<a>", "2026-11-28T01:00:00.000Z", "draw", "12.50", "CNY", "l", "e&1",
                     "-", "yes"]
    consent = [line.split() for line in lines[lines.index("consents (1 lenders)") + 2:][:2]]
    assert consent == [["bank-<a>", "no", "grant", "t1", "<script>x</script>"],
                       ["bank-<a>", "revoke", "t3", "-"]]  # lender on every row


def test_cli_table_flags_the_cancelled_event_and_lists_the_cancel() -> None:
    def event(event_id: str, event_type: str, amount: str, cancels: str | None,
              cancelled: bool) -> dict:
        return {"lender_id": "bank-a", "event_id": event_id, "loan_id": "l-1",
                "event_type": event_type, "amount": amount, "currency": "CNY",
                "occurred_at": f"2026-11-2{event_id[-1]}T01:00:00.000Z", "product": None,
                "admitted_at": "2026-11-29T01:00:01.000Z", "cancels_event_id": cancels,
                "cancelled": cancelled}

    report = REPORT | {"events": [event("e-1", "draw", "12.50", None, True),
                                  event("e-2", "draw", "3.00", None, False),
                                  event("e-3", "cancel", "0.00", "e-1", False)]}
    lines = render_report(report).splitlines()
    start = lines.index("events (3)")
    assert lines[start + 1].split() == ["lender", "occurred", "at", "type", "amount", "currency",
                                        "loan", "event", "id", "withdraws", "cancelled"]
    assert [line.split() for line in lines[start + 2:start + 5]] == [
        ["bank-a", "2026-11-21T01:00:00.000Z", "draw", "12.50", "CNY", "l-1", "e-1", "-", "yes"],
        ["bank-a", "2026-11-22T01:00:00.000Z", "draw", "3.00", "CNY", "l-1", "e-2", "-", "no"],
        ["bank-a", "2026-11-23T01:00:00.000Z", "cancel", "0.00", "CNY", "l-1", "e-3", "e-1",
         "no"]]
    page = render_report_html(report)
    assert "<th>withdraws</th><th>cancelled</th>" in page
    assert "<td>e-1</td><td>-</td><td>-</td><td>yes</td>" in page
    assert "<td>e-3</td><td>-</td><td>e-1</td><td>no</td>" in page
