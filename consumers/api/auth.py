"""The one authorisation check of the risk API: bearer token, then scope.

Every route that reads or changes borrower data calls :meth:`Authorizer.require` with the one
:class:`~streams.settings.Scope` it needs, before it reads the request body. Guarantees:

* **401** ``{"error": "unauthorized"}`` (with ``WWW-Authenticate: Bearer``) when the token is
  missing, not a bearer token, or not configured in ``API_TOKENS``;
* **403** ``{"error": "forbidden", "detail": "token lacks scope X"}`` when the token is known
  but was not granted scope ``X``;
* otherwise the caller's institution is returned and nothing is logged or counted.

Every 401 and 403 is logged on the ``registry.security`` logger as a security event (route,
reason, the institution for a 403, the peer address) and counted in
``registry_security_api_denied_total{route,reason}``. The token itself is never logged, and
since the check runs before the body is read, neither is a national id. Tokens are compared in
constant time per configured token, so timing does not reveal how much of a guess matched.
"""

from __future__ import annotations

import hmac
import json
import logging
from functools import lru_cache

from aiohttp import web

from consumers.api.errors import ApiError
from streams.runtime.metrics import METRICS
from streams.settings import Scope, Settings, TokenGrant, api_grants

security_log = logging.getLogger("registry.security")

UNAUTHORIZED, FORBIDDEN = ApiError.UNAUTHORIZED, ApiError.FORBIDDEN


def _json_error(cls: type[web.HTTPException], body: dict[str, str],
                headers: dict[str, str] | None = None) -> web.HTTPException:
    return cls(text=json.dumps(body), content_type="application/json",
               headers={"Cache-Control": "no-store", **(headers or {})})


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class Authorizer:
    """Holds the parsed token grants (parsed once, see :func:`authorizer`)."""

    def __init__(self, grants: dict[str, TokenGrant]) -> None:
        self._grants: dict[bytes, TokenGrant] = {
            token.encode(): grant for token, grant in grants.items()}

    def _grant(self, token: str | None) -> TokenGrant | None:
        if not token:
            return None
        given = token.encode()
        found = None
        for known, grant in self._grants.items():  # no early exit: constant work per token
            if hmac.compare_digest(known, given):
                found = grant
        return found

    def require(self, request: web.Request, scope: Scope, *, token: str | None = None) -> str:
        """The institution of the request's token if it holds ``scope``; else raise the 401 or
        403 answer (logged and counted). ``token`` overrides the Authorization header (the HTML
        report form posts its token as a form field)."""
        grant = self._grant(token if token is not None else bearer_token(request))
        if grant is None:
            self._deny(request, UNAUTHORIZED, scope, None)
            raise _json_error(web.HTTPUnauthorized, {"error": UNAUTHORIZED},
                              {"WWW-Authenticate": "Bearer"})
        if scope not in grant.scopes:
            self._deny(request, FORBIDDEN, scope, grant.institution)
            raise _json_error(web.HTTPForbidden, {"error": FORBIDDEN,
                                                  "detail": f"token lacks scope {scope}"})
        return grant.institution

    @staticmethod
    def _deny(request: web.Request, reason: str, scope: Scope, institution: str | None) -> None:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else request.path
        METRICS.security_api_denied.inc(name, reason)
        security_log.warning(
            "security: API request denied (%s) on %s %s: scope %s, institution %s, peer %s",
            reason, request.method, name, scope, institution or "-", request.remote or "-")


@lru_cache(maxsize=16)
def _authorizer(raw_tokens: str, mode: str) -> Authorizer:
    return Authorizer(api_grants(raw_tokens, mode))


def authorizer(settings: Settings) -> Authorizer:
    """The :class:`Authorizer` of ``settings``' ``API_TOKENS`` (parsed once per distinct list)."""
    return _authorizer(settings.api_tokens.get_secret_value(), settings.registry_mode)
