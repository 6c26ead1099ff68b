"""``registry --help`` and ``registry frequency`` load no heavy client library (issue 17, item 7).

Each case runs in a fresh interpreter and lists which of the heavy modules got imported; the
parsers are declared without them and subcommand modules load only when that subcommand runs.
(No timing is asserted; README "Command line" gives the measured start-up times.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
HEAVY = ("aiohttp", "aiokafka", "clickhouse_connect", "chdb", "faust", "mode", "fastavro",
         "redis", "tqdm", "consumers.api.server", "streams.cli.worker", "streams.lender.publisher")
PROBE = f"""
import json, sys
from streams.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {{h.split(".")[0] for h in {HEAVY!r}}}
               and any(m == h or m.startswith(h + ".") for h in {HEAVY!r}))
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""


def _closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(("args", "code"), [
    (["--help"], 0),
    (["frequency", "--help"], 0),
    (["lag", "--help"], 0),
    (["erase", "--help"], 0),
    (["publish", "--help"], 0),
    (["consent", "--help"], 0),
    (["frequency", "11010519491231002X", "--url", _closed_url()], 69),
    (["lag", "--url", _closed_url()], 69),
])
def test_heavy_modules_are_not_imported(args: list[str], code: int) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    result = json.loads(done.stderr.strip().splitlines()[-1])
    assert result == {"code": code, "heavy": []}
