"""Backward compatibility of schema versions, checked before a version ships.

The promise of :mod:`schemas.codec` is that the CURRENT schema of a family reads every record
written with ANY known older version (a lender may upgrade months after the registry). That
holds exactly when Avro schema resolution succeeds with the new schema as reader and the old
one as writer. :func:`check_backward_compatible` checks the Avro resolution rules statically
and reports every problem instead of stopping at the first:

* a reader field the writer lacks needs a default (fields the writer has and the reader lacks
  are skipped, which is fine);
* types must match or be an allowed promotion (int -> long/float/double, long -> float/double,
  float -> double, string <-> bytes);
* enum symbols the writer can produce must exist in the reader (or the reader has a default);
* named types (record, enum, fixed) must keep their name (or list the old one in aliases),
  fixed types their size;
* every branch of a writer union must resolve against the reader.

``tests/unit/schemas/test_evolution.py`` backs the static check with real fastavro decoding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.codec import SchemaCatalog, default_catalog

_PRIMITIVES = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)  # fmt: skip
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_NAMED = ("record", "error", "enum", "fixed")


def _full_name(schema: Mapping[str, Any], namespace: str | None) -> str:
    name = str(schema["name"])
    ns = schema.get("namespace", namespace)
    return name if "." in name or not ns else f"{ns}.{name}"


class _Resolver:
    """Walks a reader and a writer schema together, collecting problems."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self._names: dict[str, dict[str, tuple[Any, str | None]]] = {"r": {}, "w": {}}
        self._seen: set[tuple[str, str]] = set()

    def _deref(self, schema: Any, side: str, namespace: str | None) -> tuple[Any, str | None]:
        """Unwrap ``{"type": X}``, resolve name references, remember named definitions."""
        while isinstance(schema, Mapping) and schema.get("type") not in (*_NAMED, "array", "map"):
            schema = schema["type"]
        if isinstance(schema, Mapping) and schema["type"] in _NAMED:
            full = _full_name(schema, namespace)
            space = full.rpartition(".")[0] or None
            self._names[side][full] = (schema, space)
            return schema, space
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            full = schema if "." in schema or not namespace else f"{namespace}.{schema}"
            for key in (full, schema):
                if key in self._names[side]:
                    return self._names[side][key]
            raise ValueError(f"unknown named type {schema}")
        return schema, namespace

    @staticmethod
    def _kind(schema: Any) -> str:
        if isinstance(schema, list):
            return "union"
        if isinstance(schema, Mapping):
            return str(schema["type"])
        return str(schema)

    def check(
        self, reader: Any, writer: Any, path: str, r_ns: str | None = None, w_ns: str | None = None
    ) -> bool:
        """True when data written with ``writer`` resolves to ``reader``; records problems."""
        reader, r_ns = self._deref(reader, "r", r_ns)
        writer, w_ns = self._deref(writer, "w", w_ns)
        r_kind, w_kind = self._kind(reader), self._kind(writer)

        if w_kind == "union":
            ok = True
            for branch in writer:
                ok &= self.check(reader, branch, path, r_ns, w_ns)
            return ok
        if r_kind == "union":
            for branch in reader:
                trial = _Resolver()
                trial._names = self._names
                if trial.check(branch, writer, path, r_ns, w_ns):
                    return self.check(branch, writer, path, r_ns, w_ns)
            self.problems.append(f"{path}: no branch of the reader union accepts {w_kind}")
            return False
        if r_kind != w_kind:
            if r_kind in _PROMOTIONS.get(w_kind, ()):
                return True
            self.problems.append(f"{path}: type changed from {w_kind} to {r_kind}")
            return False
        if r_kind in _PRIMITIVES:
            return True
        if r_kind in _NAMED and not self._same_name(reader, writer, r_ns, w_ns, path):
            return False
        if r_kind in ("record", "error"):
            return self._record(reader, writer, path, r_ns, w_ns)
        if r_kind == "enum":
            return self._enum(reader, writer, path)
        if r_kind == "fixed" and reader["size"] != writer["size"]:
            self.problems.append(f"{path}: fixed size changed from {writer['size']}")
            return False
        if r_kind == "array":
            return self.check(reader["items"], writer["items"], f"{path}[]", r_ns, w_ns)
        if r_kind == "map":
            return self.check(reader["values"], writer["values"], f"{path}{{}}", r_ns, w_ns)
        return True

    def _same_name(self, reader: Any, writer: Any, r_ns: Any, w_ns: Any, path: str) -> bool:
        r_full, w_full = _full_name(reader, r_ns), _full_name(writer, w_ns)
        aliases = {a if "." in a or not r_ns else f"{r_ns}.{a}" for a in reader.get("aliases", ())}
        if r_full == w_full or w_full in aliases or reader["name"] == writer["name"]:
            return True
        self.problems.append(f"{path}: named type {w_full} renamed to {r_full} without an alias")
        return False

    def _record(self, reader: Any, writer: Any, path: str, r_ns: Any, w_ns: Any) -> bool:
        key = (_full_name(reader, r_ns), _full_name(writer, w_ns))
        if key in self._seen:  # recursive type: already being checked
            return True
        self._seen.add(key)
        written = {f["name"]: f for f in writer["fields"]}
        ok = True
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", ())]
            source = next((written[n] for n in names if n in written), None)
            where = f"{path}.{field['name']}"
            if source is not None:
                ok &= self.check(field["type"], source["type"], where, r_ns, w_ns)
            elif "default" not in field:
                self.problems.append(f"{where}: added without a default")
                ok = False
        return ok

    def _enum(self, reader: Any, writer: Any, path: str) -> bool:
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and "default" not in reader:
            self.problems.append(f"{path}: enum symbols removed: {', '.join(missing)}")
            return False
        return True


def check_backward_compatible(new_schema: dict[str, Any], old_schema: dict[str, Any]) -> list[str]:
    """Problems that stop ``new_schema`` (reader) from reading data written with ``old_schema``.

    An empty list means compatible. Each problem names the field path, e.g.
    ``"LoanEvent.fee_minor: added without a default"``.
    """
    resolver = _Resolver()
    try:
        resolver.check(new_schema, old_schema, str(new_schema.get("name", "schema")))
    except (KeyError, TypeError, ValueError) as exc:
        return [f"schema cannot be analysed: {exc}"]
    return resolver.problems


def check_family(name: str, catalog: SchemaCatalog | None = None) -> list[str]:
    """Problems of every version file of family ``name`` against its current (newest) version.

    Problems are prefixed with the file of the older version. Raises ``KeyError`` for a family
    without files.
    """
    versions = (catalog or default_catalog()).versions(name)
    if not versions:
        raise KeyError(name)
    current = versions[-1]
    problems: list[str] = []
    for old in versions[:-1]:
        problems += [
            f"{old.source}: {p}"
            for p in check_backward_compatible(current.schema_json, old.schema_json)
        ]
    return problems
