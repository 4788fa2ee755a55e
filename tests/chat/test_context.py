"""What a reply is sent: the summary, then every message after it — no hole (SPEC 5.2).

The development LLM echoes the messages it was sent (``[dev:echo=context]``), so these
tests read the context as the LLM received it, through the real stream.
"""

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chat.models import ChatSession, Message
from tests.factories import ChatSessionFactory, UserFactory

from .conftest import finish, open_socket, receive_until, tokens_text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("dev_llm")]


@database_sync_to_async
def long_conversation(*, messages: int, summarized: int) -> tuple:
    """A conversation of ``messages`` messages whose summary covers the first ``summarized``."""
    user = UserFactory()
    session = ChatSessionFactory(user=user)
    start = timezone.now() - timezone.timedelta(days=1)
    rows = Message.objects.bulk_create(
        Message(
            session=session,
            role="user" if n % 2 == 0 else "assistant",
            content=f"m{n:03d}",
            created_at=start + timezone.timedelta(seconds=n),
            updated_at=start + timezone.timedelta(seconds=n),
        )
        for n in range(messages)
    )
    ChatSession.objects.filter(pk=session.pk).update(
        message_count=messages,
        summary="The first part, summarized.",
        summary_until_id=rows[summarized - 1].pk,
        summary_message_count=summarized,
    )
    return user, str(session.pk)


async def test_a_lagging_summary_leaves_no_message_out_of_the_context(settings):
    # 100 messages; the window is the last 30 (m070-m099) and the summary should cover
    # m000-m069 but lags by 20: it covers m000-m049. m050-m069 must still be sent whole.
    user, session = await long_conversation(messages=100, summarized=50)
    socket = await open_socket(user)
    await socket.send_json_to(
        {"type": "send", "session": session, "content": "What did we say? [dev:echo=context]"}
    )
    events = await receive_until(socket, timeout=10)
    await finish(socket)
    echoed = tokens_text(events).splitlines()

    assert echoed[1] == "system: Summary of the earlier conversation:"
    assert "The first part, summarized." in echoed
    sent = [
        line.split(": ", 1)[1] for line in echoed if line.startswith(("user: m", "assistant: m"))
    ]
    assert sent == [f"m{n:03d}" for n in range(50, 100)]
    assert echoed[-1] == "user: What did we say? [dev:echo=context]"


async def test_what_the_budget_cuts_is_said_in_the_prompt_and_summarized(settings):
    settings.CONTEXT_TOKEN_BUDGET = 80  # 320 characters: the prompts and a few messages
    user, session = await long_conversation(messages=100, summarized=50)
    socket = await open_socket(user)
    await socket.send_json_to(
        {"type": "send", "session": session, "content": "And now? [dev:echo=context]"}
    )
    events = await receive_until(socket, timeout=10)
    await finish(socket)  # waits for the summary the cut queued
    echoed = tokens_text(events)
    assert "left out here for length" in echoed
    assert "m050" not in echoed and "m099" in echoed
    row = await database_sync_to_async(ChatSession.objects.get)(pk=session)
    assert row.summary.startswith("Summary of the conversation so far")
    assert row.summary_message_count > 50
