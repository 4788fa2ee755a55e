"""Temporary conversations on the REST API (SPEC 4.6): created with ``temporary: true``,
never active, never listed nor found by ``?q=``, readable and exportable by their id."""

import pytest

from chat.models import ChatSession, Message

from .conftest import assert_error

pytestmark = pytest.mark.django_db


def test_create_a_temporary_conversation_that_is_never_listed(api, user):
    kept = api.post("/api/sessions/", {}, format="json").json()
    response = api.post("/api/sessions/", {"temporary": True}, format="json")
    assert response.status_code == 201
    temporary = response.json()
    assert temporary["temporary"] is True and temporary["is_active"] is False
    assert api.get("/api/sessions/active/").json()["id"] == kept["id"]
    listed = api.get("/api/sessions/", {"archived": "all"}).json()["results"]
    assert [s["id"] for s in listed] == [kept["id"]]
    assert listed[0]["temporary"] is False
    assert api.get(f"/api/sessions/{temporary['id']}/").json()["temporary"] is True


def test_sending_into_it_keeps_it_inactive_and_unsearchable(api, user):
    kept = api.post("/api/sessions/", {}, format="json").json()
    temporary = api.post("/api/sessions/", {"temporary": True}, format="json").json()
    sent = api.post(
        f"/api/sessions/{temporary['id']}/messages/", {"content": "quetzal sighting"}, format="json"
    )
    assert sent.status_code == 202
    Message.objects.filter(status=Message.Status.STREAMING).update(status="complete")
    row = ChatSession.objects.get(pk=temporary["id"])
    assert not row.is_active and row.message_count == 2
    assert ChatSession.objects.get(pk=kept["id"]).is_active
    assert api.get("/api/sessions/", {"q": "quetzal"}).json()["results"] == []
    export = api.get(f"/api/sessions/{temporary['id']}/export/")
    assert export.status_code == 200 and b"quetzal sighting" in export.content


def test_the_same_id_again_is_the_same_temporary_conversation(api):
    body = {"id": "5b7a8e2c-1d2f-4f51-8a9b-0c1d2e3f4a5b", "temporary": True}
    assert api.post("/api/sessions/", body, format="json").status_code == 201
    again = api.post("/api/sessions/", body, format="json")
    assert again.status_code == 200 and again.json()["temporary"] is True
    assert ChatSession.objects.count() == 1


@pytest.mark.parametrize("value", ["true", 1, None, [True]])
def test_temporary_must_be_a_boolean(api, value):
    assert_error(api.post("/api/sessions/", {"temporary": value}, format="json"), 400, "invalid")
    assert not ChatSession.objects.exists()
