"""ASGI entry point: HTTP and WebSocket (``daphne``/``uvicorn config.asgi:application``)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

# Django must be set up before anything imports models (Channels' documented order).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402

from chat import streaming  # noqa: E402
from chat.auth import SameOriginValidator, TokenAuthMiddlewareStack  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402

# The SSE endpoint of SPEC 4.1: the relay's hot path, served without the middleware chain.
STREAM_PATH = "/api/chat/stream"


class MiddlewareFreeHandler(ASGIHandler):
    """Django's ASGI handler without middleware, for views that need none.

    Django's middleware is sync (MiddlewareMixin): under ASGI each one hops to the one
    thread-sensitive thread and back, twice per request. The SSE view authenticates,
    checks CSRF and validates the host itself (chat/views_stream.py).
    """

    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)


stream_app = MiddlewareFreeHandler()


async def http_app(scope, receive, send):
    if scope["path"] == STREAM_PATH:
        return await stream_app(scope, receive, send)
    return await django_asgi_app(scope, receive, send)


websocket_app = SameOriginValidator(TokenAuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
protocols = ProtocolTypeRouter({"http": http_app, "websocket": websocket_app})


async def lifespan(scope, receive, send):
    """Answer the server's start-up and shutdown (uvicorn; daphne has no lifespan)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            streaming.serve()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send):
    """Route HTTP and WebSocket; streaming starts on the server's loop at the first call."""
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    streaming.serve()
    return await protocols(scope, receive, send)
