"""Share links on the API (SPEC 4.6): create, share again, revoke, list; the token is
never stored, another user's conversation is 404, a temporary one cannot be shared."""

import hashlib

import pytest

from chat import services
from chat.models import ChatSession, Message, ShareLink
from tests.factories import MessageFactory

from .conftest import assert_error

pytestmark = pytest.mark.django_db


def conversation(user, *turns, **fields):
    session, _ = services.conversation_start(user=user, **fields)
    for question, answer in turns:
        reply = services.reply_start(user=user, content=question, session_id=session.pk)
        services.reply_finish(
            message_id=reply.assistant_message.pk, status=Message.Status.COMPLETE, content=answer
        )
    return ChatSession.objects.get(pk=session.pk)


def test_sharing_answers_a_url_once_and_stores_only_the_digest(api, user):
    session = conversation(user, ("What is 2+2?", "It is **4**."))
    response = api.post(f"/api/sessions/{session.pk}/share/")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"url", "token", "created_at"}
    token = body["token"]
    assert len(token) >= 40
    assert body["url"] == f"http://testserver/s/{token}"
    link = ShareLink.objects.get()
    assert link.digest == hashlib.sha256(token.encode()).hexdigest()
    stored = " ".join(str(value) for value in ShareLink.objects.values_list().get())
    assert token not in stored
    assert [(e["role"], e["content"]) for e in link.snapshot] == [
        ("user", "What is 2+2?"),
        ("assistant", "It is **4**."),
    ]
    assert link.title == session.title


def test_the_snapshot_is_the_current_path_as_it_was(api, user):
    session = conversation(user, ("First", "One"), ("Second", "Two"))
    edited = Message.objects.get(session=session, content="Second")
    reply = services.reply_edit(user=user, message_id=edited.pk, content="Second, edited")
    services.reply_finish(
        message_id=reply.assistant_message.pk, status=Message.Status.COMPLETE, content="Two bis"
    )
    MessageFactory(session=session, role=Message.Role.TOOL, content="tool internals", on_path=True)
    api.post(f"/api/sessions/{session.pk}/share/")
    contents = [e["content"] for e in ShareLink.objects.get().snapshot]
    assert contents == ["First", "One", "Second, edited", "Two bis"]
    # Later messages are not in it until it is shared again.
    conversation_more = services.reply_start(user=user, content="Third", session_id=session.pk)
    services.reply_finish(
        message_id=conversation_more.assistant_message.pk,
        status=Message.Status.COMPLETE,
        content="Three",
    )
    assert len(ShareLink.objects.get().snapshot) == 4


def test_sharing_again_refreshes_the_snapshot_under_a_new_token(api, user, client):
    session = conversation(user, ("Before", "Old answer"))
    first = api.post(f"/api/sessions/{session.pk}/share/").json()
    reply = services.reply_start(user=user, content="After", session_id=session.pk)
    services.reply_finish(
        message_id=reply.assistant_message.pk, status=Message.Status.COMPLETE, content="New"
    )
    second = api.post(f"/api/sessions/{session.pk}/share/")
    assert second.status_code == 201
    second = second.json()
    assert second["token"] != first["token"]
    assert ShareLink.objects.count() == 1
    assert len(ShareLink.objects.get().snapshot) == 4
    assert client.get(f"/s/{first['token']}").status_code == 404
    page = client.get(f"/s/{second['token']}")
    assert page.status_code == 200 and b"After" in page.content


def test_revoking_makes_the_page_404_and_a_second_revoke_is_404(api, user, client):
    session = conversation(user, ("Hello", "Hi"))
    token = api.post(f"/api/sessions/{session.pk}/share/").json()["token"]
    assert client.get(f"/s/{token}").status_code == 200
    assert api.delete(f"/api/sessions/{session.pk}/share/").status_code == 204
    assert client.get(f"/s/{token}").status_code == 404
    assert not ShareLink.objects.exists()
    assert_error(api.delete(f"/api/sessions/{session.pk}/share/"), 404, "not_found")
    assert ChatSession.objects.filter(pk=session.pk).exists()


def test_deleting_the_conversation_kills_the_link(api, user, client):
    session = conversation(user, ("Hello", "Hi"))
    token = api.post(f"/api/sessions/{session.pk}/share/").json()["token"]
    assert api.delete(f"/api/sessions/{session.pk}/").status_code == 204
    assert client.get(f"/s/{token}").status_code == 404
    assert not ShareLink.objects.exists()


def test_another_users_conversation_is_404_and_unchanged(api, other_user, client):
    theirs = conversation(other_user, ("Private", "Yes"))
    assert_error(api.post(f"/api/sessions/{theirs.pk}/share/"), 404, "not_found")
    assert not ShareLink.objects.exists()
    token, _ = services.share_create(user=other_user, session_id=theirs.pk)
    assert_error(api.delete(f"/api/sessions/{theirs.pk}/share/"), 404, "not_found")
    assert client.get(f"/s/{token}").status_code == 200
    assert api.get("/api/shares/").json() == {"results": []}


def test_a_temporary_conversation_cannot_be_shared(api, user):
    session = conversation(user, ("Off the record", "Sure"), temporary=True)
    error = assert_error(api.post(f"/api/sessions/{session.pk}/share/"), 400, "invalid")
    assert "temporary" in error["message"].lower()
    assert not ShareLink.objects.exists()


@pytest.mark.parametrize("session_id", ["nope", "123", "00000000-0000-0000-0000-000000000000"])
def test_bad_or_unknown_ids_are_refused_without_a_link(api, session_id):
    response = api.post(f"/api/sessions/{session_id}/share/")
    assert response.status_code in (400, 404)
    assert_error(response, response.status_code)
    assert not ShareLink.objects.exists()


def test_the_list_has_the_callers_links_newest_first_without_tokens(api, user, other_user):
    older = conversation(user, ("One", "1"))
    newer = conversation(user, ("Two", "2"))
    services.share_create(user=user, session_id=older.pk)
    token, _ = services.share_create(user=user, session_id=newer.pk)
    services.share_create(user=other_user, session_id=conversation(other_user, ("X", "Y")).pk)
    body = api.get("/api/shares/").json()
    assert [r["session"] for r in body["results"]] == [str(newer.pk), str(older.pk)]
    assert set(body["results"][0]) == {"session", "title", "created_at"}
    assert body["results"][0]["title"] == "Two"
    assert token not in str(body)


def test_signed_out_calls_are_401(client, user):
    session = conversation(user, ("Hello", "Hi"))
    assert client.post(f"/api/sessions/{session.pk}/share/").status_code == 401
    assert client.get("/api/shares/").status_code == 401
