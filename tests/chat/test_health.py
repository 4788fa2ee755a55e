"""/healthz (alive) and /readyz (can take work) for balancers and process managers."""

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
