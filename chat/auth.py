"""WebSocket authentication: the session cookie, or a ``?token=`` bearer token."""

from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware

from accounts.tokens import token_user


class QueryTokenAuthMiddleware(BaseMiddleware):
    """Authenticate a socket by ``?token=`` when the cookie did not."""

    async def __call__(self, scope, receive, send):
        user = scope.get("user")
        if user is None or not user.is_authenticated:
            raw = parse_qs(scope.get("query_string", b"").decode()).get("token", [""])[0]
            if raw:
                found = await database_sync_to_async(token_user)(raw)
                if found is not None:
                    scope = dict(scope, user=found)
        return await super().__call__(scope, receive, send)


def TokenAuthMiddlewareStack(inner):  # noqa: N802 - named like Channels' own stacks
    return AuthMiddlewareStack(QueryTokenAuthMiddleware(inner))
