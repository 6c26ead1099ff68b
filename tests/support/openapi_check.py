"""Check a real HTTP answer against the OpenAPI document (:data:`consumers.api.openapi.OPENAPI`).

Any test that calls the API can use it, so the document cannot drift from the code::

    body = await checked(response)                   # aiohttp ClientResponse (also TestClient)
    check_response("POST", "/api/v1/erasure", 400, body)   # any other client

``check_response`` fails when the route or method is not in the document, the status is not
one of the route's documented answers, the content type is not the documented one, or a JSON
body does not validate against that answer's schema (JSON Schema 2020-12, formats checked,
``$ref`` resolved inside the document).

:data:`SEEN` records every (method, path template, status) checked in this process, for tests
that assert every route was exercised.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from consumers.api.openapi import OPENAPI

_BASE = "urn:credit-registry:openapi"
SEEN: set[tuple[str, str, int]] = set()


@cache
def _registry() -> Registry:
    return Registry().with_resource(_BASE, Resource(contents=OPENAPI, specification=DRAFT202012))


@cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    found = []
    for template in OPENAPI["paths"]:
        pattern = re.escape(template)
        pattern = re.sub(r"\\\{[a-z_]+\\\}", ".+", pattern)
        found.append((re.compile(f"^{pattern}$"), template))
    return found


def path_template(path: str) -> str:
    """The document's path template that ``path`` (no query) falls under."""
    path = path.split("?", 1)[0]
    if path in OPENAPI["paths"]:
        return path
    for pattern, template in _templates():
        if pattern.match(path):
            return template
    raise AssertionError(f"{path} is not described in the OpenAPI document")


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def check_response(method: str, path: str, status: int, body: Any,
                   content_type: str = "application/json") -> None:
    """Fail unless (status, content type, body) is a documented answer of ``method path``."""
    template = path_template(path)
    operation = OPENAPI["paths"][template].get(method.lower())
    assert operation is not None, f"{method} {template} is not in the OpenAPI document"
    answers = operation["responses"]
    assert str(status) in answers, (
        f"{method} {template} answered {status}, documented: {sorted(answers)}; body {body!r}")
    SEEN.add((method.upper(), template, status))
    content = answers[str(status)].get("content")
    if content is None:  # documented without a body
        assert body in ("", b""), f"{method} {template} {status} has a body: {body!r}"
        return
    media = content_type.split(";", 1)[0].strip()
    assert media in content, (
        f"{method} {template} {status} answered {media}, documented: {sorted(content)}")
    if media != "application/json":
        assert isinstance(body, str | bytes), body
        return
    ref = "#/" + _pointer("paths", template, method.lower(), "responses", str(status),
                          "content", media, "schema")
    validator = Draft202012Validator({"$ref": _BASE + ref}, registry=_registry(),
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, (f"{method} {template} {status} does not match the OpenAPI document:\n"
                        + "\n".join(f"  at {list(e.absolute_path)}: {e.message}"
                                    for e in errors[:10]))


async def checked(response: aiohttp.ClientResponse) -> Any:
    """Read ``response``, check it with :func:`check_response`, return the body (JSON parsed)."""
    if response.content_type == "application/json" and response.status != 204:
        body: Any = await response.json()
    else:
        body = await response.text()
    check_response(response.method, response.url.path, response.status, body,
                   response.headers.get("Content-Type", ""))
    return body
