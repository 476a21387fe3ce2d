"""Who may use the orchestrator's HTTP routes: the access token, the middleware that asks for
it on every route not explicitly public, and the Origin rule that keeps other sites' pages off
`/ws`.

The token is compared in constant time and never logged. A route is protected unless it is on
the allow-list given to `access_middleware`, so a route added later is protected by default.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AccessToken:
    """The shared secret, compared in constant time; its repr does not show it."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def matches(self, candidate: str | None) -> bool:
        """True when `candidate` is the token."""
        if not candidate:
            return False
        return hmac.compare_digest(candidate.encode(), self._secret)

    def __repr__(self) -> str:
        return "AccessToken(<hidden>)"


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is none."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def has_token(request: web.Request, token: AccessToken | None) -> bool:
    """True when no token is configured or the request's Bearer header carries it."""
    return token is None or token.matches(bearer_token(request))


def unauthorized(message: str) -> web.Response:
    """401 with the JSON body every refusal has."""
    return web.json_response(
        {"error": "unauthorized", "message": message},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="voicefleet"'},
    )


def access_middleware(
    token: AccessToken | None, *, public: Collection[str], deferred: Collection[str] = ()
) -> Middleware:
    """Ask for the token on every route except those in `public` (by the matched route's path,
    so `/static/../token` is `/token`); routes in `deferred` may be entered without it and
    check it themselves (`has_token`, or the first message). Without a token all is open."""

    @web.middleware
    async def check_access(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is None:
            return await handler(request)
        route = _route_path(request)
        if route in public:
            return await handler(request)
        presented = bearer_token(request)
        if presented is not None:
            if not token.matches(presented):
                log.info("refused %s from %s: wrong token", request.path, request.remote)
                return unauthorized("wrong token in the Authorization header")
            return await handler(request)
        if route in deferred:
            return await handler(request)
        return unauthorized("this route needs Authorization: Bearer <http.auth_token>")

    return check_access


def _route_path(request: web.Request) -> str | None:
    """The path of the route the request matched (a static route's prefix); None if none did."""
    resource = request.match_info.route.resource
    return None if resource is None else resource.canonical


class OriginPolicy:
    """Which browser pages may open `/ws`: their own host, the listed origins, or any (`*`).

    A request without Origin is not from a browser page (the CLI, a server) and is allowed: the
    rule keeps other sites' scripts from using a visitor's browser, and the token does the rest.
    """

    def __init__(self, allowed: Sequence[str]) -> None:
        self.any = "*" in allowed
        self.null = "null" in allowed  # sandboxed frames and file:// pages send "null"
        keys = (_origin_key(item) for item in allowed if item not in ("*", "null"))
        self.allowed = {key for key in keys if key is not None}

    def allows(self, origin: str | None, host: str | None) -> bool:
        """True when a page at `origin` may connect to a server it reached as `host`."""
        if origin is None or self.any:
            return True
        if origin.strip() == "null":
            return self.null
        key = _origin_key(origin)
        if key is None:
            return False
        if key in self.allowed:
            return True
        if host is None:
            return False
        scheme, hostname, port = key
        try:
            requested = urlsplit(f"//{host}")
            requested_port = requested.port or _DEFAULT_PORTS[scheme]
        except ValueError:
            return False
        return (requested.hostname, requested_port) == (hostname, port)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_key(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin, default port filled in; None if it is not one."""
    try:
        parts = urlsplit(origin.strip().lower())
        scheme = parts.scheme
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            return None
        return scheme, parts.hostname, parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return None
