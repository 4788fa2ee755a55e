"""INFO lines for each step of a conversation's life — ids, sizes and timings, no content."""

import logging

import pytest
from channels.db import database_sync_to_async

import config.asgi  # noqa: F401 - Django's set-up (logging too) before any log is captured
from chat import services
from tests.factories import UserFactory

from .conftest import finish, open_socket, receive_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("dev_llm")]

SECRET = "my secret plan about hedging"


async def test_a_conversation_s_life_is_logged_by_ids_without_its_text(caplog):
    caplog.set_level(logging.INFO)
    user = await database_sync_to_async(UserFactory)()
    socket = await open_socket(user)
    await socket.send_json_to({"type": "send", "content": SECRET})
    events = await receive_until(socket)
    await finish(socket)
    session, reply = events[0]["session"], events[0]["message"]
    other, _ = await database_sync_to_async(services.conversation_start)(user=user)
    await database_sync_to_async(services.conversation_resume)(user=user, session_id=session)
    await database_sync_to_async(services.conversation_delete)(user=user, session_id=session)

    lines = [r.getMessage() for r in caplog.records if r.name.startswith("chat")]
    assert f"conversation {session} created: user {user.pk}, general context" in lines
    assert any(
        line.startswith(f"reply {reply} started in conversation {session}") for line in lines
    )
    ended = [line for line in lines if line.startswith(f"reply {reply} ended complete")]
    assert len(ended) == 1 and "completion tokens" in ended[0] and "first token after" in ended[0]
    assert f"conversation {other.pk} created: user {user.pk}, general context" in lines
    assert f"conversation {session} resumed: user {user.pk}" in lines
    assert f"conversation {session} deleted: user {user.pk}, 2 messages" in lines
    # What the person wrote, and the reply's text, never reach the log.
    reply_text = "".join(e["content"] for e in events if e["type"] == "token")
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert reply_text[:40] not in record.getMessage()
