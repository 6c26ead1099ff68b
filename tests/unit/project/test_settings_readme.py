"""README's configuration table and the settings model say the same thing (issue 18).

Every field of :class:`streams.settings.Settings` is read from the environment variable of its
upper-cased name, so the table under README "## Configuration" must list exactly those
variables, each with the model's default. The test-only switches live in one nested model,
:class:`streams.settings.FaultSwitches` (field ``faults``, no variable of its own), each read
from its own variable (``FaultSwitches.env_name``); they stay in the same table, and their
description must begin with ``TEST ONLY`` so that an operator cannot mistake one for a
setting. The README is fixed when the two disagree, never the model.

A second check keeps the model the only reader of the environment: no module of ``streams``,
``consumers`` or ``schemas`` besides ``streams/settings.py`` touches ``os.environ`` or
``os.getenv``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import Enum
from pathlib import Path

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from streams.settings import REPO_ROOT, FaultSwitches, Settings

REPO = Path(__file__).resolve().parents[3]
README = REPO / "README.md"


def _fields() -> dict[str, tuple[FieldInfo, bool]]:
    """Variable -> (field, test only) for every configurable field, switches included."""
    out = {name.upper(): (info, False) for name, info in Settings.model_fields.items()
           if name != "faults"}
    out.update({FaultSwitches.env_name(name): (info, True)
                for name, info in FaultSwitches.model_fields.items()})
    return out


def _configuration_table() -> dict[str, tuple[str, str]]:
    """Variable -> (default cell, description cell) of the first table of the section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    in_table = False
    for line in section.splitlines():
        if line.startswith("| variable | default |"):
            in_table = True
            continue
        if not in_table or line.startswith("| ---"):
            continue
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        assert len(cells) == 3, f"README configuration row with {len(cells)} cells: {line}"
        name = cells[0].strip("`")
        assert name not in rows, f"README lists {name} twice"
        rows[name] = (cells[1], cells[2])
    assert rows, "no configuration table found under README '## Configuration'"
    return rows


def _expected_default(field: FieldInfo) -> str:
    """How the README writes the model's default of ``field``."""
    value = field.default
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return "*(unset)*"
    if value == "":
        return "*(empty)*"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        return f"`<repo>/{value.relative_to(REPO_ROOT).as_posix()}`"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, int | float | Decimal | str):
        return f"`{value}`"
    raise AssertionError(f"no README form for the default {value!r}")


def test_table_lists_exactly_the_settings_fields() -> None:
    documented = set(_configuration_table())
    configurable = set(_fields())
    assert sorted(configurable - documented) == [], "settings missing from README"
    assert sorted(documented - configurable) == [], "README rows without a settings field"


def test_table_defaults_are_the_model_defaults() -> None:
    table = _configuration_table()
    wrong = {}
    for name, (field, _) in _fields().items():
        if name not in table:
            continue  # reported by test_table_lists_exactly_the_settings_fields
        written = table[name][0]
        expected = _expected_default(field)
        # "*(unset: min(3, brokers))*" explains what unset means; it is still unset.
        if expected == "*(unset)*" and written.startswith("*(unset"):
            continue
        if written != expected:
            wrong[name] = (written, expected)
    assert wrong == {}, "README default (written, model)"


def test_test_only_switches_are_marked() -> None:
    table = _configuration_table()
    for name, (field, test_only) in _fields().items():
        described = table.get(name, ("", "TEST ONLY" * test_only))[1]
        assert described.startswith("TEST ONLY") == test_only, name
        assert (field.description or "").startswith("TEST ONLY") == test_only, name


def test_only_the_settings_module_reads_the_environment() -> None:
    reads = re.compile(r"\bos\.(environ|getenv|putenv)\b|\bfrom os import\b.*\b(environ|getenv)\b")
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for package in ("streams", "consumers", "schemas")
        for path in sorted((REPO / package).rglob("*.py"))
        if path != REPO / "streams" / "settings.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if reads.search(line)
    ]
    assert offenders == [], "read the value through streams.settings.Settings instead"
