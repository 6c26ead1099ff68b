"""Sampling profile of a running worker with py-spy, summarised by function.

py-spy writes collapsed stacks (``--format raw``: one line per distinct stack, frames joined
by ``;``, then the sample count). From them :func:`summarise` derives, per function, its SELF
share (samples where it is the innermost frame: where the CPU actually is) and its INCLUSIVE
share (samples where it is anywhere on the stack). Idle samples are not recorded, so the
shares are of the worker's busy time; ``busy_share`` says how busy it was.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from bench import REPO

RATE_HZ = 50
#: ``name (path/to/file.py:123)`` -> ``name (file.py)``; line numbers would split a function
_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^():]*?)(?::\d+)?\)$")
_PLUMBING = ("<module>", "run", "run_forever", "_run_once", "_run", "run_until_complete",
             "main", "execute", "start", "_bootstrap", "_bootstrap_inner", "_worker",
             "execute_from_commandline", "_execute_task", "Thread.run", "_run_code",
             "_run_module_as_main")


def record(pid: int, out: Path, seconds: int) -> subprocess.Popen[bytes]:
    """Start py-spy on ``pid`` for ``seconds`` (collapsed stacks to ``out``)."""
    return subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "py-spy"), "record", "--format", "raw", "-o", str(out),
         "--pid", str(pid), "--duration", str(seconds), "--rate", str(RATE_HZ),
         "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frame(raw: str) -> str:
    m = _FRAME.match(raw.strip())
    if not m:
        return raw.strip()
    return f"{m['name']} ({Path(m['file']).name})"


def summarise(path: Path, seconds: float, n: int = 16) -> dict[str, Any]:
    """Top functions by self and inclusive share of the recorded samples."""
    if not path.exists():
        return {}
    self_count: Counter[str] = Counter()
    incl_count: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        # the first frame may be the thread ("process 123:"/"thread 0x..."): drop it
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += k
        self_count[frames[-1]] += k
        for f in set(frames):
            incl_count[f] += k

    def top(counter: Counter[str]) -> list[tuple[str, float]]:
        ranked = [(f, 100.0 * c / total) for f, c in counter.most_common()
                  if f.split(" (")[0].rsplit(".", 1)[-1] not in _PLUMBING]
        return ranked[:n]

    return {
        "file": path.name,
        "samples": total,
        "busy_share": round(total / (RATE_HZ * seconds), 3) if seconds else None,
        "self": top(self_count) if total else [],
        "inclusive": top(incl_count) if total else [],
    }
