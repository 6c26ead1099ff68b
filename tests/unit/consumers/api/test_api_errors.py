"""One enum of API error codes: the OpenAPI document and every route speak ApiError only."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from consumers.api.errors import ApiError
from consumers.api.openapi import OPENAPI

API = Path(__file__).resolve().parents[4] / "consumers" / "api"


def _documented_codes(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        error = node.get("properties", {}).get("error") if "properties" in node else None
        if isinstance(error, dict) and "enum" in error:
            found.update(error["enum"])
        for value in node.values():
            found |= _documented_codes(value)
    elif isinstance(node, list):
        for value in node:
            found |= _documented_codes(value)
    return found


def test_the_document_lists_every_code_and_no_other() -> None:
    assert _documented_codes(OPENAPI) == {str(code) for code in ApiError}


def test_no_route_writes_an_error_code_as_a_bare_string() -> None:
    codes = {str(code) for code in ApiError}
    bare = []
    for path in sorted(API.glob("*.py")):
        if path.name == "errors.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and node.value in codes):
                bare.append(f"{path.name}:{node.lineno} {node.value!r}")
    assert bare == []
