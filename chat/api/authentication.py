"""``Authorization: Bearer <token>`` for the REST API, backed by accounts.tokens."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed

from accounts.tokens import bearer_token, token_user


class BearerTokenAuthentication(BaseAuthentication):
    """Authenticate a request by a bearer token issued at ``POST /api/auth/token/``.

    A header ``bearer_token`` cannot read counts as no token (as on SSE and the WebSocket):
    the session may still authenticate, and without one the answer is 401.
    """

    def authenticate(self, request):
        raw = bearer_token(request.META.get("HTTP_AUTHORIZATION"))
        if raw is None:
            return None
        user = token_user(raw)
        if user is None:
            raise AuthenticationFailed("The token is not valid or has expired.")
        return user, None

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "chat.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer"}
