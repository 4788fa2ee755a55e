"""Fixtures of the chat tests: the development LLM over real HTTP, sockets, signed-in
browsers (Django's test client) for the pages."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.tokens import token_issue
from chat import services, streaming
from chat.devllm import DevConfig, DevLLMThread

# The header htmx sends with its requests (django-htmx reads it as request.htmx).
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def client_for():
    """Return a factory of test clients signed in as a given user."""

    def make(user):
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def web(client_for, user):
    """A test client signed in as ``user``."""
    return client_for(user)


def start(user, **kwargs):
    """Start a conversation of ``user`` through the services; return it."""
    return services.conversation_start(user=user, **kwargs)[0]


@pytest.fixture(scope="session")
def dev_llm_server():
    """One development LLM for the test session, on a free port, instant by default."""
    server = DevLLMThread(DevConfig(tokens=30, first_token_ms=0, token_ms=0)).start()
    yield server
    server.stop()


@pytest.fixture
def dev_llm(dev_llm_server, settings):
    """Point the LLM client at the development LLM (through the real SDK and HTTP)."""
    settings.LLM_BASE_URL = dev_llm_server.base_url
    settings.LLM_TIMEOUT = 5.0
    return dev_llm_server


async def open_socket(user, *, token: str | None = None) -> WebsocketCommunicator:
    """Connect to /ws/chat/ through the real ASGI stack, authenticated by ?token=."""
    from config.asgi import application

    if token is None:
        token, _ = await database_sync_to_async(token_issue)(user=user)
    communicator = WebsocketCommunicator(application, f"/ws/chat/?token={token}")
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def receive_until(communicator, *, types=("done", "error"), timeout=5.0) -> list[dict]:
    """Return the events received up to and including the first of ``types``."""
    events = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        assert remaining > 0, f"no {types} event in time; got {events}"
        event = json.loads(await communicator.receive_from(timeout=remaining))
        events.append(event)
        if event["type"] in types:
            return events


def tokens_text(events) -> str:
    return "".join(e["content"] for e in events if e["type"] == "token")


async def finish(*communicators) -> None:
    """Close sockets and wait for the engine's background work on this loop."""
    for communicator in communicators:
        await communicator.disconnect()
    await streaming.Engine.current().wait_idle(10)


@pytest.fixture(autouse=True)
async def _llm_clients_closed():
    """Close the LLM clients a test's loop made before the loop ends: their pooled
    keep-alive connections would otherwise be reported unclosed when collected. The
    loop's replies and jobs (a title, say) finish first: they may still be asking."""
    yield
    from chat import llm
    from chat.streaming.engine import Engine

    for engine in Engine.running():
        if engine.loop is asyncio.get_running_loop():
            await engine.wait_idle(timeout=5)
    await llm.aclose()
