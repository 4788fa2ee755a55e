"""/healthz (alive) and /readyz (can take work) for balancers and process managers."""

import asyncio

import pytest
from django.test import AsyncClient

pytestmark = pytest.mark.django_db(transaction=True)


async def test_healthz_answers_while_the_process_lives_and_readyz_checks_its_dependencies():
    client = AsyncClient()
    alive = await client.get("/healthz")
    ready = await client.get("/readyz")
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "database": True,
        "channel_layer": True,
        "draining": False,
    }


async def test_readyz_is_503_when_a_dependency_does_not_answer(monkeypatch):
    from chat import views_health

    monkeypatch.setattr(views_health, "_database_answers", lambda: False)
    response = await AsyncClient().get("/readyz")
    assert response.status_code == 503
    assert (response.json()["status"], response.json()["database"]) == ("unavailable", False)


async def test_readyz_is_503_while_draining(monkeypatch):
    from chat.streaming import lifecycle

    monkeypatch.setitem(lifecycle._state, "draining", True)
    response = await AsyncClient().get("/readyz")
    assert (response.status_code, response.json()["status"]) == (503, "draining")
    assert (await AsyncClient().get("/healthz")).status_code == 200


@pytest.mark.redis
async def test_readyz_answers_beside_the_relay_on_a_shared_channel_layer(redis_url, settings):
    """With Redis, the relay's listener holds the process's receive: the probe shares it."""
    from channels.layers import channel_layers

    from chat import streaming

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    channel_layers.backends.clear()
    try:
        engine = streaming.Engine(asyncio.get_running_loop())  # this loop's, with a relay
        assert engine.relay is not None
        await engine.relay.start()  # its listener now waits on the process's channel
        response = await AsyncClient().get("/readyz")
        assert (response.status_code, response.json()["channel_layer"]) == (200, True)
        for task in engine.relay.tasks:
            task.cancel()
    finally:
        channel_layers.backends.clear()
