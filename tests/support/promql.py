"""Which metric names a Grafana dashboard or an alert-rule file queries, and which a scrape has.

Used by the dashboard and rule checks. :func:`metric_names` is a lexical reading of PromQL,
enough for the expressions we write (selectors, functions, aggregations with ``by``/``on``
groupings, range and offset modifiers, arithmetic): it drops string literals, label matchers
``{...}``, ranges ``[...]``, grouping label lists and function names, and keeps every other
identifier that is not a keyword or part of a number or duration.
:func:`exposed_names` lists every sample name a text exposition declares, including those of
families without samples yet (a labelled counter never incremented).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "and", "or", "unless", "inf", "nan",
})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")

#: Sample-name suffixes of each family type in the text format.
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "untyped": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENT.finditer(text):
        token = match.group(0)
        if text[match.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if token.lower() in KEYWORDS:
            continue
        names.add(token)
    return names


def exposed_names(exposition: str) -> set[str]:
    """Every sample name the text exposition declares (by family type), plus those present."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def _walk_exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _walk_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_exprs(item)


def dashboard_exprs(path: Path) -> list[str]:
    """Every ``expr`` of a Grafana dashboard JSON (panels, nested rows, targets)."""
    return list(_walk_exprs(json.loads(path.read_text())))


def rule_exprs(path: Path) -> list[str]:
    """Every ``expr`` of a Prometheus rule file."""
    doc = yaml.safe_load(path.read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]
