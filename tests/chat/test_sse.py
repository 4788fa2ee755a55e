"""POST /api/chat/stream: the reply as Server-Sent Events."""

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
    assert events[-1]["type"] == "done"
    assert "<strong>" in events[-1]["html"]
    reply = await database_sync_to_async(lambda: Message.objects.get(pk=events[-1]["message"]))()
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
