"""WebSocket origin check and authentication.

A socket is authenticated by, in this order:

1. the session cookie (browsers on Parlor's own pages);
2. a bearer token offered as a subprotocol: the client offers ``["parlor", "bearer.<token>"]``
   (``new WebSocket(url, ["parlor", "bearer." + token])``; a browser cannot set an
   Authorization header on a socket) and the server answers with ``parlor``. The token
   never appears in a URL, so no access log can hold it;
3. ``?token=<token>`` in the query string (kept for existing clients; servers log query
   strings, so accounts.log_redaction masks it in their logs).

A client that offers ``parlor`` is answered with ``parlor`` whichever way it authenticated.
"""

from urllib.parse import parse_qs, urlsplit

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import is_same_domain, split_domain_port, validate_host

from accounts.tokens import token_user

AUTH_SUBPROTOCOL = "parlor"
TOKEN_SUBPROTOCOL_PREFIX = "bearer."
DEFAULT_PORTS = {"http": 80, "https": 443}


def subprotocol_token(subprotocols) -> str | None:
    """Return the token of a ``bearer.<token>`` subprotocol the client offered, else None."""
    for protocol in subprotocols or ():
        if isinstance(protocol, str) and protocol.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return protocol.removeprefix(TOKEN_SUBPROTOCOL_PREFIX) or None
    return None


def query_token(query_string: bytes) -> str | None:
    """Return the ``token`` parameter of a socket's query string, else None."""
    values = parse_qs(query_string.decode("latin-1")).get("token")
    return values[0] if values else None


class TokenAuthMiddleware(BaseMiddleware):
    """Authenticate a socket by a bearer token when the cookie did not; agree on ``parlor``."""

    async def __call__(self, scope, receive, send):
        subprotocols = scope.get("subprotocols") or []
        if AUTH_SUBPROTOCOL in subprotocols:
            # The consumer accepts with this; answering nothing would make a browser that
            # offered subprotocols fail the connection.
            scope = dict(scope, accept_subprotocol=AUTH_SUBPROTOCOL)
        user = scope.get("user")
        if user is None or not user.is_authenticated:
            raw = subprotocol_token(subprotocols) or query_token(scope.get("query_string", b""))
            if raw:
                found = await database_sync_to_async(token_user)(raw)
                if found is not None:
                    scope = dict(scope, user=found)
        return await super().__call__(scope, receive, send)


def TokenAuthMiddlewareStack(inner):  # noqa: N802 - named like Channels' own stacks
    return AuthMiddlewareStack(TokenAuthMiddleware(inner))


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _is_secure(scope) -> bool:
    """Return whether the browser reached us over TLS, as Django's request.is_secure()."""
    if proxy_header := getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        meta_name, secure_value = proxy_header
        name = meta_name.removeprefix("HTTP_").lower().replace("_", "-").encode()
        value = _header(scope, name)
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") in ("wss", "https")


def _origin(value: str) -> tuple[str, str, int] | None:
    """Return (scheme, host, port) of a serialized origin, the port filled in, or None."""
    try:
        parts = urlsplit(value.strip())
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if not host or port is None or parts.path or parts.query or parts.username:
        return None
    return scheme, host, port


def origin_allowed(scope) -> bool:
    """Return whether a socket's Origin is this server's own, port included, or trusted.

    Own origin: the Host header (an allowed host) with its port, under the scheme the
    browser used — what Django's CSRF check requires of an HTTP request's Origin.
    Trusted: listed in CSRF_TRUSTED_ORIGINS (``https://*.example.com`` as in Django).
    A request without an Origin header is allowed: see SameOriginValidator.
    """
    origin = _header(scope, b"origin")
    if origin is None:
        return True
    parsed = _origin(origin)
    host = _header(scope, b"host")
    if parsed is None or not host:
        return False
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]  # as Django's get_host()
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, allowed_hosts):
        return False
    own = _origin(f"{'https' if _is_secure(scope) else 'http'}://{host}")
    if parsed == own:
        return True
    for trusted in getattr(settings, "CSRF_TRUSTED_ORIGINS", ()):
        if "*" in trusted:  # https://*.example.com: any subdomain, as Django's CSRF check
            pattern = urlsplit(trusted)
            netloc = urlsplit(origin.strip()).netloc.lower()
            if parsed[0] == pattern.scheme and is_same_domain(netloc, pattern.netloc.lstrip("*")):
                return True
        elif parsed == _origin(trusted):
            return True
    return False


class SameOriginValidator:
    """Refuse a WebSocket handshake from a page of another origin, another port included.

    Channels' AllowedHostsOriginValidator compares host names only, so a page served on
    any other port of the same host (``http://127.0.0.1:1``) could open a socket with the
    visitor's session cookie, which is not bound to a port.

    A handshake without an Origin header is let through: browsers always send one on a
    socket, and this check exists to stop another site's page from riding a visitor's
    cookie. A client that sends none is not a browser, carries no visitor's cookie, and
    has to authenticate by a token of its own.
    """

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
