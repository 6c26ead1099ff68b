"""The import contracts of ``pyproject.toml`` hold (issue 18): ``consumers`` above ``streams``
above ``schemas`` (``streams`` imports ``consumers`` only in its composition modules), the rooms
of ``streams`` in exhaustive layers, ``consumers`` reaching ``streams`` only through settings,
runtime and the consent store, and the product importing neither ``tests`` (nor its
``tests.support`` helpers) nor ``bench``.

``make lint`` runs the same ``lint-imports``; this test makes ``make test`` (and so CI) fail
too when a new import breaks a contract.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_lint_imports_keeps_every_contract() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
