"""The packages of ``[tool.mypy]`` in ``pyproject.toml`` type-check clean (issue 18).

``make lint`` runs the same ``python -m mypy``; this test makes ``make test`` (and so CI) fail
too when a change breaks the types. mypy keeps its incremental cache in ``.mypy_cache/`` of
the checkout (ignored by git), so a repeated run takes about a second.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_mypy_finds_no_type_errors() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout, done.stdout + done.stderr
