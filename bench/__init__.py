"""The benchmark suite (``make bench``): end-to-end throughput, freshness, floors and peers,
per-stage costs, memory and query latency, on the real local stack.

Every measurement that needs its own interpreter (chDB folders, RSS, the Quix Streams venv)
runs as ``python -m bench.<module> ...`` and prints one JSON line last. This module imports
only the standard library: the Quix Streams peer runs it from a separate venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
#: Quix Streams cannot share our venv (it caps pydantic < 2.14, pydantic-settings < 2.16),
#: so ``make bench`` gives it a venv of its own inside the ignored ``.venv`` folder.
QUIX_PYTHON = REPO / ".venv" / "bench-quix" / "bin" / "python"



def run_json(args: list[str], *, env: dict[str, str] | None = None, timeout: float,
             python: str | None = None) -> dict[str, Any]:
    """Run ``python -m bench.<...> args`` and return the JSON object on its last stdout line."""
    cmd = [python or sys.executable, "-m", *args]
    full_env = {**(env or os.environ), "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, env=full_env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    # a framework may decorate stdout (Faust's spinner writes terminal escapes before our line)
    lines = [line[line.index("{"):] for line in done.stdout.splitlines() if "{" in line]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}):\n"
                           f"{done.stderr[-2500:]}\n{done.stdout[-1000:]}")
    return json.loads(lines[-1])


def emit(result: dict[str, Any]) -> None:
    """The last line of a benchmark subprocess: its result as one JSON object."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def percentiles(values: list[float], qs: tuple[float, ...] = (50, 95, 99)) -> dict[str, float]:
    """Nearest-rank percentiles, keyed ``p50`` etc.; empty input gives an empty dict."""
    if not values:
        return {}
    ordered = sorted(values)
    n = len(ordered)
    return {f"p{q:g}": ordered[min(n - 1, max(0, round(q / 100 * n + 0.5) - 1))] for q in qs}
