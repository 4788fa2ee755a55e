"""While the process drains after SIGTERM, Django's doors answer 503 (nginx then passes
the request to another worker); the probes are still answered."""

import pytest
from django.test import AsyncClient

from chat.streaming import lifecycle

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def draining(monkeypatch):
    monkeypatch.setitem(lifecycle._state, "draining", True)


async def test_new_requests_get_503_while_draining_and_the_probes_are_answered(draining):
    client = AsyncClient()
    api = await client.get("/api/sessions/")
    assert (api.status_code, api.json()["error"]["code"], api["Retry-After"]) == (
        503,
        "draining",
        "1",
    )
    page = await client.get("/accounts/login/")
    assert page.status_code == 503
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 503  # not ready: draining
    assert (await client.get("/metrics")).status_code == 403  # its own answer, no token


def test_the_sync_path_refuses_too(client, draining):
    assert client.post("/api/sessions/", {}, content_type="application/json").status_code == 503


async def test_nothing_is_refused_when_not_draining():
    assert (await AsyncClient().get("/accounts/login/")).status_code == 200


async def test_streams_are_refused_before_anything_is_stored_while_draining(draining):
    """The SSE endpoint and a new socket, which no middleware guards: refused too."""
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from accounts.tokens import token_issue
    from chat.models import Message
    from config.asgi import application
    from tests.factories import UserFactory

    user = await database_sync_to_async(UserFactory)()
    raw, _ = await database_sync_to_async(token_issue)(user=user)
    response = await AsyncClient().post(
        "/api/chat/stream",
        data=b'{"message": "Hi"}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert (response.status_code, response.json()["error"]["code"]) == (503, "draining")
    assert await database_sync_to_async(Message.objects.count)() == 0
    socket = WebsocketCommunicator(application, f"/ws/chat/?token={raw}")
    connected, code = await socket.connect()
    assert not connected and code == 1013
