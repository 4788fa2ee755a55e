"""ASGI entry point: HTTP and WebSocket (``daphne``/``uvicorn config.asgi:application``)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

# Django must be set up before anything imports models (Channels' documented order).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat.auth import SameOriginValidator, TokenAuthMiddlewareStack  # noqa: E402
from chat.engine import ensure_recovery  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402

# Replies left `streaming` by a crashed process are marked interrupted from start-up on.
ensure_recovery()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SameOriginValidator(
            TokenAuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
