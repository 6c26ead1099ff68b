"""Every ``registry`` subcommand, given bad arguments or an unreachable service, prints ONE line
with the reason (never a traceback, never a national id) and exits with the documented code
(:class:`streams.cli.base.ExitCode`, README "Exit codes"). No service is needed: the
unreachable ones are a closed port and ``KAFKA_BOOTSTRAP=127.0.0.1:1``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streams.cli.base import ExitCode

REPO = Path(__file__).resolve().parents[4]
ID = "11010519491231002X"
E = ExitCode


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CLOSED = f"http://127.0.0.1:{_closed_port()}"
GOOD_FILE = "good.jsonl"

CASES: list[tuple[list[str], ExitCode]] = [
    ([], E.USAGE),
    (["no-such-command"], E.USAGE),
    (["--bogus"], E.USAGE),
    (["publish"], E.USAGE),
    (["publish", "--lender", "Not A Lender", GOOD_FILE], E.USAGE),
    (["publish", "--lender", ID, GOOD_FILE], E.USAGE),  # an id pasted as lender: not echoed
    (["publish", "--lender", "jd", "--encoding", "utf-16", GOOD_FILE], E.USAGE),
    (["publish", "--lender", "jd", "--encoding", "klingon", GOOD_FILE], E.USAGE),
    (["publish", "--lender", "jd", "missing.jsonl"], E.NO_INPUT),
    (["publish", "--lender", "jd", GOOD_FILE], E.UNAVAILABLE),
    (["consent"], E.USAGE),
    (["consent", "maybe", "--lender", "jd", "--borrower", ID], E.USAGE),
    (["consent", "grant", "--lender", "jd", "--borrower", "123"], E.DATA_ERR),
    (["consent", "grant", "--lender", "jd", "--borrower", ID[:6] + " " + ID[6:]], E.DATA_ERR),
    (["consent", "grant", "--lender", "jd", "--borrower", ID, "--at", "２０２６-01-01T00:00:00Z"],
     E.DATA_ERR),
    (["consent", "grant", "--lender", "jd", "--borrower", ID, "--reference", "\udcff"],
     E.DATA_ERR),
    (["consent", "grant", "--lender", "jd", "--borrower", f" {ID} "], E.UNAVAILABLE),
    (["simulate", "--events", "０"], E.USAGE),
    (["simulate", "--events", "-3"], E.USAGE),
    (["simulate", "--rate", "nan"], E.USAGE),
    (["simulate", "--consent-rate", "2"], E.USAGE),
    (["simulate", "--now", "yesterday"], E.USAGE),
    (["simulate", "--events", "5", "--lenders", "1", "--borrowers", "5"], E.UNAVAILABLE),
    (["worker", "--role", "nope"], E.USAGE),
    (["frequency"], E.USAGE),
    (["frequency", ID, "--window", "abc"], E.USAGE),
    (["frequency", ID, "--window", "３０"], E.USAGE),
    (["frequency", ID, "--window", "0"], E.USAGE),
    (["frequency", "123"], E.DATA_ERR),
    (["frequency", "１１０１０５１９４９１２３１００２Ｘ"], E.DATA_ERR),
    (["frequency", ID, "--url", "ftp://example"], E.USAGE),
    (["frequency", f"\t{ID.lower()} ", "--url", CLOSED], E.UNAVAILABLE),
    (["lag", "extra"], E.USAGE),
    (["lag", "--url", CLOSED], E.UNAVAILABLE),
    (["lender"], E.USAGE),
    (["lender", "add", "Not A Lender"], E.USAGE),
    (["lender", "add", "registry-worker"], E.USAGE),
    (["lender", "add", "jd"], E.UNAVAILABLE),
    (["lender", "init-worker"], E.UNAVAILABLE),
    (["erase"], E.USAGE),
    (["erase", "--borrower", "123"], E.DATA_ERR),
    (["erase", "--borrower", ID, "--url", CLOSED], E.UNAVAILABLE),
    (["erase", "--borrower", ID, "--status", "abc"], E.USAGE),
    (["erase", "--status", "abc", "--url", CLOSED], E.UNAVAILABLE),
    (["api", "--bogus"], E.USAGE),
    (["api"], E.CONFIG),  # embedded ClickHouse: the worker serves the API
    (["report"], E.USAGE),
    (["report", "123"], E.DATA_ERR),
    (["report", ID, "--url", CLOSED], E.UNAVAILABLE),
]


@pytest.mark.parametrize(("args", "code"), CASES, ids=lambda v: " ".join(v)[:60]
                         if isinstance(v, list) else str(v))
def test_bad_arguments_and_unreachable_services(args: list[str], code: ExitCode,
                                                tmp_path: Path) -> None:
    (tmp_path / GOOD_FILE).write_text(
        f'{{"event_id": "e", "borrower_id": "{ID}", "loan_id": "l", "event_type": "draw", '
        '"amount": "1.00", "occurred_at": "2026-01-01T00:00:00Z"}\n')
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAFKA_", "REGISTRY_", "API_"))}
    env |= {"KAFKA_BOOTSTRAP": "127.0.0.1:1", "PYTHONPATH": str(REPO),
            "API_PORT": str(_closed_port()), "REGISTRY_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, errors="surrogateescape",
                          timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("registry"), done.stderr
    assert ID[:14] not in done.stderr and ID.lower()[:14] not in done.stderr


def test_every_subcommand_has_cases_here() -> None:
    from streams.cli import COMMANDS

    covered = {args[0] for args, _ in CASES if args and not args[0].startswith("-")}
    assert {name for name, _, _ in COMMANDS} <= covered
