"""POST /api/chat/stream: the reply as Server-Sent Events."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from accounts.tokens import token_issue
from chat import streaming
from chat.models import ChatSession, Message
from tests.factories import ChatSessionFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("dev_llm")]

URL = "/api/chat/stream"


@database_sync_to_async
def bearer_for(user):
    raw, _ = token_issue(user=user)
    return {"Authorization": f"Bearer {raw}"}


@database_sync_to_async
def make_user():
    return UserFactory()


@database_sync_to_async
def counts():
    return ChatSession.objects.count(), Message.objects.count()


def parse(chunks: list[bytes]) -> list[dict]:
    text = b"".join(chunks).decode()
    assert text.endswith("\n\n")
    events = []
    for block in text.strip().split("\n\n"):
        assert block.startswith("data: ")
        events.append(json.loads(block[6:]))
    return events


async def post(client, body, headers=None):
    return await client.post(
        URL, data=json.dumps(body), content_type="application/json", headers=headers or {}
    )


async def test_stream_sends_session_tokens_and_done_as_event_stream():
    user = await make_user()
    client = AsyncClient()
    response = await post(client, {"message": "Hello over SSE"}, await bearer_for(user))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    events = parse([chunk async for chunk in response.streaming_content])
    await streaming.Engine.current().wait_idle()

    assert events[0]["type"] == "session" and events[0]["created"] is True
    # The reply's events end with done; a new conversation's title may follow it.
    done = [e for e in events if e["type"] != "title"][-1]
    assert done["type"] == "done"
    assert "<strong>" in done["html"]
    reply = await database_sync_to_async(lambda: Message.objects.get(pk=done["message"]))()
    text = "".join(e["content"] for e in events if e["type"] == "token")
    assert (reply.status, reply.content) == ("complete", text)


async def test_client_going_away_does_not_stop_the_reply():
    user = await make_user()
    client = AsyncClient()
    response = await post(
        client,
        {"message": "Long one [dev:tokens=200] [dev:token_ms=2]"},
        await bearer_for(user),
    )
    stream = aiter(response.streaming_content)
    first = json.loads((await anext(stream)).decode()[6:])
    await stream.aclose()  # the client disconnects after the first event
    await streaming.Engine.current().wait_idle()

    reply = await database_sync_to_async(lambda: Message.objects.get(pk=first["message"]))()
    assert reply.status == "complete"
    assert len(reply.content.split()) >= 190


async def test_session_auth_requires_csrf_and_bearer_does_not():
    user = await make_user()
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(user)
    before = await counts()
    response = await post(client, {"message": "Hi"})
    assert response.status_code == 403
    assert await counts() == before


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{nope", 400, "invalid_json"),
        (b"[1]", 400, "invalid"),
        (b'{"message": "hi", "colour": 1}', 400, "invalid"),
        (b'{"message": ' + b"[" * 2000 + b"]" * 2000 + b"}", 400, "invalid_json"),
        (b'{"message": "hi", "model": "1"}', 400, "invalid"),
        (b'{"message": "hi", "session": 7}', 400, "invalid"),
        (b"{}", 400, "invalid"),
        (b'{"message": ""}', 400, "empty_message"),
        (b'{"message": 5}', 400, "invalid"),
        (b'{"message": "hi", "session": "not-a-uuid"}', 400, "invalid"),
        (b'{"message": "hi", "model": 999999}', 404, "not_found"),
        (b'{"edit": "1", "message": "hi"}', 400, "invalid"),
        (b'{"edit": 1}', 400, "invalid"),
        (b'{"edit": 1, "message": "hi", "session": "x"}', 400, "invalid"),
        (b'{"regenerate": true}', 400, "invalid"),
        (b'{"regenerate": 1, "message": "hi"}', 400, "invalid"),
        (b'{"regenerate": 999999}', 404, "not_found"),
        (b'{"edit": 999999, "message": "hi"}', 404, "not_found"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_stored(body, status, code):
    user = await make_user()
    before = await counts()
    response = await AsyncClient().post(
        URL, data=body, content_type="application/json", headers=await bearer_for(user)
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert await counts() == before


async def test_unauthenticated_is_401_and_foreign_session_is_404():
    owner, intruder = await make_user(), await make_user()
    session = await database_sync_to_async(ChatSessionFactory)(user=owner)
    response = await post(AsyncClient(), {"message": "hi"})
    assert response.status_code == 401
    before = await counts()
    response = await post(
        AsyncClient(), {"message": "hi", "session": str(session.pk)}, await bearer_for(intruder)
    )
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Conversation not found."
    assert await counts() == before


# Through config.asgi.application, as a server serves it: no middleware on this path, so
# the view's own host, session and CSRF checks are what stands.


async def asgi_post(body: bytes, headers: list[tuple[bytes, bytes]], host=b"testserver"):
    """POST to the ASGI application as a server would; return the status and whole body."""
    from asgiref.testing import ApplicationCommunicator

    from config.asgi import application

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "query_string": b"",
        "headers": [(b"host", host), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await communicator.receive_output(10)
    chunks = []
    while True:
        message = await communicator.receive_output(10)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return {"status": start["status"], "body": b"".join(chunks)}


async def test_the_server_path_streams_a_reply_with_a_bearer_token():
    user = await make_user()
    auth = (await bearer_for(user))["Authorization"].encode()
    response = await asgi_post(b'{"message": "Hi"}', [(b"authorization", auth)])
    assert response["status"] == 200
    events = [e for e in parse([response["body"]]) if e["type"] != "title"]
    assert [events[0]["type"], events[-1]["type"]] == ["session", "done"]
    await streaming.Engine.current().wait_idle()


async def test_the_server_path_refuses_a_host_not_allowed(settings):
    settings.ALLOWED_HOSTS = ["parlor.example"]
    user = await make_user()
    auth = (await bearer_for(user))["Authorization"].encode()
    before = await counts()
    response = await asgi_post(b'{"message": "Hi"}', [(b"authorization", auth)], host=b"evil")
    assert response["status"] == 400
    assert json.loads(response["body"])["error"]["code"] == "invalid"
    assert await counts() == before


async def test_the_server_path_checks_the_session_cookie_and_csrf():
    from django.conf import settings as django_settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.middleware.csrf import _get_new_csrf_string

    user = await make_user()

    @database_sync_to_async
    def signed_in() -> str:
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = django_settings.AUTHENTICATION_BACKENDS[0]
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.save()
        return store.session_key

    key = await signed_in()
    csrf = _get_new_csrf_string()
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={key}; csrftoken={csrf}".encode()
    before = await counts()
    refused = await asgi_post(b'{"message": "Hi"}', [(b"cookie", cookie)])
    assert refused["status"] == 403
    assert json.loads(refused["body"])["error"]["code"] == "csrf_failed"
    assert await counts() == before
    anonymous = await asgi_post(b'{"message": "Hi"}', [(b"x-csrftoken", csrf.encode())])
    assert anonymous["status"] == 401

    accepted = await asgi_post(
        b'{"message": "Hi"}', [(b"cookie", cookie), (b"x-csrftoken", csrf.encode())]
    )
    assert accepted["status"] == 200
    assert [e for e in parse([accepted["body"]]) if e["type"] != "title"][-1]["type"] == "done"
    await streaming.Engine.current().wait_idle()


async def test_a_second_generation_in_a_conversation_is_409_as_on_rest():
    user = await make_user()
    headers = await bearer_for(user)
    client = AsyncClient()
    first = await post(client, {"message": "Long [dev:tokens=400] [dev:token_ms=5]"}, headers)
    stream = aiter(first.streaming_content)
    session = json.loads((await anext(stream)).decode()[6:])["session"]
    before = await counts()
    second = await post(client, {"message": "Again", "session": session}, headers)
    await stream.aclose()
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "generation_in_progress"
    assert await counts() == before
    await streaming.Engine.current().wait_idle()


async def test_text_the_database_cannot_store_is_kept_as_replacement_characters():
    """A NUL and half a surrogate pair from the user, odd bytes from the model: the reply
    completes, and both are stored with U+FFFD in place of what could not be."""
    user = await make_user()
    body = b'{"message": "nul \\u0000 and half \\ud83d [dev:fault=odd_text]"}'
    response = await AsyncClient().post(
        URL, data=body, content_type="application/json", headers=await bearer_for(user)
    )
    events = parse([chunk async for chunk in response.streaming_content])
    await streaming.Engine.current().wait_idle()
    assert [e for e in events if e["type"] != "title"][-1]["type"] == "done"
    question, reply = await database_sync_to_async(
        lambda: list(Message.objects.filter(session_id=events[0]["session"]).order_by("id"))
    )()
    assert question.content == "nul \ufffd and half \ufffd [dev:fault=odd_text]"
    assert reply.status == "complete"
    assert reply.content == "".join(e["content"] for e in events if e["type"] == "token")
    assert "\x00" not in reply.content and reply.content.count("\ufffd") >= 3


def test_under_wsgi_the_stream_answers_at_once_that_it_needs_asgi(client, django_user_model):
    """A WSGI server cannot stream a reply written in the background: a clear 501."""
    from accounts.tokens import token_issue

    raw, _ = token_issue(user=UserFactory())
    before = (ChatSession.objects.count(), Message.objects.count())
    response = client.post(
        URL,
        data=b'{"message": "Hi"}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert response.status_code == 501
    assert response.json()["error"]["code"] == "not_implemented"
    assert (ChatSession.objects.count(), Message.objects.count()) == before


async def test_a_title_made_after_the_reply_still_reaches_the_sse_client(monkeypatch):
    """The first message's stream stays open for its title (TITLE_WAIT), then ends."""
    from chat.streaming import jobs

    complete = jobs.llm.complete

    async def slow_title(**kwargs):
        await asyncio.sleep(0.5)  # well after the one-token reply
        return await complete(**kwargs)

    monkeypatch.setattr(jobs.llm, "complete", slow_title)
    user = await make_user()
    response = await post(
        AsyncClient(), {"message": "Plan a trip [dev:tokens=1]"}, await bearer_for(user)
    )
    events = parse([chunk async for chunk in response.streaming_content])
    await streaming.Engine.current().wait_idle()
    kinds = [e["type"] for e in events]
    assert kinds.index("done") < kinds.index("title") == len(kinds) - 1
    assert events[-1]["title"] == "Plan a trip"

    # Later messages of the conversation end with their reply.
    again = await post(
        AsyncClient(),
        {"message": "More [dev:tokens=1]", "session": events[0]["session"]},
        await bearer_for(user),
    )
    assert parse([c async for c in again.streaming_content])[-1]["type"] == "done"


async def test_the_same_client_id_again_replays_the_reply_from_its_start():
    """A retry after a dropped connection gets the text so far, then the rest, once."""
    user = await make_user()
    headers = await bearer_for(user)
    body = {"message": "Long [dev:tokens=300] [dev:token_ms=5]", "client_id": "retry-1"}
    first = await post(AsyncClient(), body, headers)
    stream = aiter(first.streaming_content)
    opening = []
    while sum(e["type"] == "token" for e in opening) < 2:
        opening.append(json.loads((await anext(stream)).decode()[6:]))
    await stream.aclose()  # the connection drops mid-reply
    opening = [e for e in opening if e["type"] in ("session", "token")]

    again = await post(AsyncClient(), body, headers)
    events = parse([chunk async for chunk in again.streaming_content])
    await streaming.Engine.current().wait_idle()
    assert events[0]["type"] == "session" and events[0]["duplicate"] is True
    tokens = [e for e in events if e["type"] == "token"]
    assert tokens[0]["offset"] == 0
    assert tokens[0]["content"].startswith("".join(e["content"] for e in opening[1:]))
    offset = 0
    for event in tokens:  # from the start, each piece once, in order
        assert event["offset"] == offset
        offset += len(event["content"])
    reply = await database_sync_to_async(Message.objects.get)(pk=events[0]["message"])
    assert (reply.status, reply.content) == ("complete", "".join(e["content"] for e in tokens))


async def test_edit_and_regenerate_stream_like_a_send():
    user = await make_user()
    headers = await bearer_for(user)
    client = AsyncClient()
    first = parse([c async for c in (await post(client, {"message": "one"}, headers))])
    session, question, reply = (
        first[0]["session"],
        first[0]["user_message"],
        first[0]["message"],
    )

    response = await post(client, {"regenerate": reply}, headers)
    assert response.status_code == 200
    events = parse([chunk async for chunk in response])
    assert events[0]["type"] == "session" and events[0]["session"] == session
    assert events[0]["user_message"] == question and events[0]["message"] != reply
    assert events[-1]["type"] == "done" and events[-1]["message"] == events[0]["message"]

    response = await post(client, {"edit": question, "message": "two [dev:echo=context]"}, headers)
    events = parse([chunk async for chunk in response])
    assert events[0]["user_message"] != question
    text = "".join(e["content"] for e in events if e["type"] == "token")
    assert "user: two" in text and "one" not in text

    @database_sync_to_async
    def path():
        rows = Message.objects.filter(session_id=session, on_path=True).order_by("pk")
        return [m.content for m in rows]

    assert (await path())[0] == "two [dev:echo=context]"
    await streaming.Engine.current().wait_idle(10)
