"""ASGI entry point: HTTP and WebSocket (``daphne``/``uvicorn config.asgi:application``)."""

import asyncio
import contextlib
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

# Django must be set up before anything imports models (Channels' documented order).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402

from chat import llm, streaming  # noqa: E402
from chat.auth import SameOriginValidator, TokenAuthMiddlewareStack  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402

# The SSE endpoint of SPEC 4.1: the relay's hot path, served without the middleware chain.
STREAM_PATH = "/api/chat/stream"


class MiddlewareFreeHandler(ASGIHandler):
    """Django's ASGI handler cut down for a view that needs none of its per-request help.

    Django's middleware is sync (MiddlewareMixin): under ASGI each one hops to the one
    thread-sensitive thread and back. Its handler also starts a thread-sensitive context
    per request (a new thread as soon as anything runs thread-sensitively) to send the
    request_started and request_finished signals, whose receivers close the calling
    thread's database connections: this view never opens one there (its database work
    runs on chat.streaming's threads). So: no middleware, no signals, no per-request
    thread; the view checks the host, authenticates and checks CSRF itself
    (chat/views_stream.py). Reading the body, building the request, the response and
    the client's disconnect are Django's own code.
    """

    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)

    async def __call__(self, scope, receive, send):
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            return

        async def respond():
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client left mid-send
                await self.send_response(response, send)

        # The response goes on until the client disconnects (then it is cancelled).
        listener = asyncio.create_task(self.listen_for_disconnect(receive))
        responder = asyncio.create_task(respond())
        await asyncio.wait([listener, responder], return_when=asyncio.FIRST_COMPLETED)
        for task in (listener, responder):
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                await task
        body_file.close()


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
            await llm.aclose()  # the LLM client's pooled connections
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send):
    """Route HTTP and WebSocket; streaming starts on the server's loop at the first call."""
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    streaming.serve()
    return await protocols(scope, receive, send)
