"""A send's LLM request is asked while its turn commits (issue 9; generation.EarlyRequest):
its reply is the same, it is asked once, and a send that fails closes it unread."""

import asyncio
import json
import threading

import pytest
from channels.db import database_sync_to_async
from django.db import OperationalError
from django.test import AsyncClient

from accounts.tokens import token_issue
from chat import llm, prompting, streaming
from chat.models import Message
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("dev_llm")]

CONTEXT = prompting.ReplyContext(
    messages=[{"role": "user", "content": "Hello there [dev:tokens=12]"}],
    model="parlor-dev",
    tools=None,
    run_id=None,
    truncated=False,
)


async def text_of(stream) -> str:
    return "".join([event.text async for event in stream])


async def test_its_events_are_the_llms_answer():
    early = streaming.EarlyRequest(asyncio.get_running_loop())
    early.start(CONTEXT)
    await asyncio.sleep(0)  # start() hands over to the loop, as from a database thread
    assert early.started_for(CONTEXT)
    expected = await text_of(
        llm.stream_chat(messages=CONTEXT.messages, model=CONTEXT.model, tools=None)
    )
    assert await text_of(early.events()) == expected
    assert not early.started_for(CONTEXT)  # read once


async def test_cancel_closes_the_request_whether_or_not_it_has_answered():
    loop = asyncio.get_running_loop()
    for wait in (0, 0.3):  # still asking; then answered and waiting to be read
        early = streaming.EarlyRequest(loop)
        early.start(CONTEXT)
        await asyncio.sleep(0)
        first, stream = early._first, early._stream
        await asyncio.sleep(wait)
        early.cancel()
        early.cancel()  # idempotent
        await asyncio.sleep(0.05)
        assert first.done()
        assert stream.ag_frame is None  # the generator, and its HTTP response, are closed
        assert not early.started_for(CONTEXT)


async def test_a_request_started_after_the_send_was_given_up_is_not_made(monkeypatch):
    # A send given up (failed, or stored no reply) while its unit's start was on its way
    # from the database thread to the loop: the request is not made.
    asked = []
    monkeypatch.setattr(llm, "stream_chat", lambda **kwargs: asked.append(kwargs))
    early = streaming.EarlyRequest(asyncio.get_running_loop())
    early.cancel()
    early.start(CONTEXT)
    await asyncio.sleep(0)
    assert asked == [] and not early.started_for(CONTEXT)


async def post(user, body):
    raw, _ = await database_sync_to_async(token_issue)(user=user)
    response = await AsyncClient().post(
        "/api/chat/stream",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    chunks = [chunk async for chunk in response.streaming_content]
    return [json.loads(block[6:]) for block in b"".join(chunks).decode().strip().split("\n\n")]


async def test_a_send_asks_the_llm_once_and_streams_its_answer(monkeypatch):
    asked = []
    original = llm.stream_chat

    def counting(**kwargs):
        asked.append(kwargs["messages"][-1]["content"])
        return original(**kwargs)

    monkeypatch.setattr(llm, "stream_chat", counting)
    user = await database_sync_to_async(UserFactory)()
    events = await post(user, {"message": "Hi [dev:tokens=15]"})
    assert [e["type"] for e in events][0] == "session"
    assert events[-1]["type"] in ("done", "title")
    done = next(e for e in events if e["type"] == "done")
    text = "".join(e["content"] for e in events if e["type"] == "token")
    stored = await database_sync_to_async(Message.objects.get)(pk=done["message"])
    assert stored.content == text and len(text.split()) == 15
    assert asked == ["Hi [dev:tokens=15]"]


async def test_a_send_that_fails_after_asking_stores_nothing_and_closes_the_request(monkeypatch):
    asked = []  # (first read, stream) of each request started
    start, _start = streaming.EarlyRequest.start, streaming.EarlyRequest._start

    def start_then_fail(self, context):
        start(self, context)
        raise OperationalError("the connection broke before COMMIT")

    def recorded(self, context):
        _start(self, context)
        asked.append((self._first, self._stream))

    monkeypatch.setattr(streaming.EarlyRequest, "start", start_then_fail)
    monkeypatch.setattr(streaming.EarlyRequest, "_start", recorded)
    user = await database_sync_to_async(UserFactory)()
    with pytest.raises(OperationalError):
        await post(user, {"message": "Hi [dev:first_token_ms=200]"})
    await asyncio.sleep(0.05)
    # The service retried the transaction (each retry's request replacing the last):
    # every request was closed, and nothing was stored.
    assert asked
    for first, stream in asked:
        assert first.done()
        assert first.cancelled() or stream.ag_frame is None
    assert await database_sync_to_async(Message.objects.count)() == 0


async def test_a_send_whose_client_leaves_while_it_is_stored_still_gets_its_reply(monkeypatch):
    """The caller (an SSE request, a socket's handler) is cancelled while the send's unit
    runs on its thread: what the unit stores is not left without its reply."""
    entered, go_on = threading.Event(), threading.Event()
    real = streaming.prepare

    def held(**kwargs):
        entered.set()
        go_on.wait(5)
        return real(**kwargs)

    monkeypatch.setattr(streaming, "prepare", held)
    user = await database_sync_to_async(UserFactory)()
    sending = asyncio.create_task(streaming.send(user=user, content="Hi [dev:tokens=9]"))
    assert await asyncio.to_thread(entered.wait, 5)
    sending.cancel()  # the client left
    await asyncio.sleep(0)
    go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await sending

    def ended():
        return (
            Message.objects.filter(role=Message.Role.ASSISTANT)
            .exclude(status=Message.Status.STREAMING)
            .first()
        )

    for _ in range(250):  # the unit stores the turn, then its reply is written
        if reply := await database_sync_to_async(ended)():
            break
        await asyncio.sleep(0.02)
    assert reply is not None, "the reply was left streaming"
    assert reply.status == Message.Status.COMPLETE
    assert len(reply.content.split()) == 9
