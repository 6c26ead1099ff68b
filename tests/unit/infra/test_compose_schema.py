"""``infra/docker-compose.yml`` is valid against the Compose specification's JSON schema.

No Docker engine runs here, so the file is checked the next best way: ``check-jsonschema``
with the compose-spec schema it ships (``--builtin-schema vendor.compose-spec``; no network).
Two broken copies must fail, so a pass means the schema is really applied.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "infra" / "docker-compose.yml"


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_compose_file_matches_the_compose_spec() -> None:
    result = check(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


@pytest.mark.parametrize(("original", "broken"), [
    # a condition the spec does not know
    ("kafka: {condition: service_healthy}", "kafka: {condition: service_ready}"),
    # a misspelt service key
    ("    image: redis:7\n", "    imgae: redis:7\n"),
])
def test_a_broken_compose_file_fails(tmp_path: Path, original: str, broken: str) -> None:
    text = COMPOSE.read_text()
    assert original in text
    path = tmp_path / "docker-compose.yml"
    path.write_text(text.replace(original, broken, 1))
    result = check(path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Schema validation errors were encountered." in result.stdout + result.stderr
