"""Print the registry's ClickHouse contents as JSON (run in a subprocess: an embedded chDB
folder may be open in one process only, and the worker owns it while it runs)."""

from __future__ import annotations

import json
import sys

from consumers.clickhouse.client import connect
from streams.settings import Settings

BUCKET = ("draws, draw_amount_minor, repayments, repaid_amount_minor, defaults, "
          "arraySort(lenders), toUnixTimestamp64Milli(last_draw_at)")


def find(ch, needles: list[str]) -> dict[str, list[str]]:
    """For each needle, the tables in which any row (rendered as text) contains it."""
    tables = [r[0] for r in ch.query("SELECT name FROM system.tables "
                                     "WHERE database = currentDatabase() AND engine != 'View'")]
    found: dict[str, list[str]] = {n: [] for n in needles}
    for table in tables:
        text = "\n".join(str(row) for row in ch.query(f"SELECT * FROM `{table}`"))
        for needle in needles:
            if needle in text:
                found[needle].append(table)
    return found


def main() -> None:
    ch = connect(Settings())
    if len(sys.argv) > 2 and sys.argv[1] == "--find":
        json.dump(find(ch, sys.argv[2:]), sys.stdout)
        return
    # (lender_id, event_id, event_type, cancels_event_id) of every ledger row; '' for the
    # target of a cancel in a ledger without that column (before the corrections landed)
    has_cancels = ch.query("SELECT count() FROM system.columns WHERE database = "
                           "currentDatabase() AND table = 'admitted_events' "
                           "AND name = 'cancels_event_id'")[0][0]
    cancels = "cancels_event_id" if has_cancels else "''"
    out = {
        "daily": ch.query(f"SELECT borrower, toString(day), {BUCKET} FROM borrower_daily FINAL"),
        "hourly": ch.query("SELECT borrower, formatDateTime(hour, '%Y-%m-%dT%H:00'), "
                           f"{BUCKET} FROM borrower_hourly FINAL"),
        "ledger": ch.query(f"SELECT lender_id, event_id, event_type, {cancels} "
                           "FROM admitted_events FINAL"),
        "ledger_rows": ch.query("SELECT count() FROM admitted_events FINAL")[0][0],
        "ledger_raw_rows": ch.query("SELECT count() FROM admitted_events")[0][0],
        "ledger_duplicates": ch.query(
            "SELECT count() - uniqExact(lender_id, event_id) FROM admitted_events FINAL")[0][0],
        "rejections": ch.query(
            "SELECT lender_id, reason, count() FROM rejections FINAL GROUP BY lender_id, reason"),
        "consent_rows": ch.query("SELECT count() FROM consent_audit FINAL")[0][0],
        "tables": [r[0] for r in ch.query("SELECT name FROM system.tables "
                                          "WHERE database = currentDatabase()")],
    }
    if "sink_dead_letters" in out["tables"]:
        out["dead_letters"] = ch.query(
            "SELECT table_name, error_code, error_name, message, source_topic, "
            "source_partition, source_offset, row FROM sink_dead_letters FINAL "
            "ORDER BY table_name, source_topic, source_partition, source_offset, row")
    json.dump(out, sys.stdout, default=str)


if __name__ == "__main__":
    main()
