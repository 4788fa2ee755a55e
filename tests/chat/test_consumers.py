"""The chat WebSocket end to end: real ASGI stack, real DB, the dev LLM over HTTP."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from chat import services, streaming
from chat.devllm import free_port
from chat.models import ChatSession, Message
from tests.factories import (
    ChatSessionFactory,
    MessageFactory,
    ModelFactory,
    RunFactory,
    TradeFactory,
    UserFactory,
)

from .conftest import finish, open_socket, receive_until, tokens_text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("dev_llm")]


@database_sync_to_async
def make(factory, **kwargs):
    return factory(**kwargs)


@database_sync_to_async
def messages_of(session_id):
    return list(Message.objects.filter(session_id=session_id).order_by("created_at", "id"))


@database_sync_to_async
def session_row(session_id):
    return ChatSession.objects.get(pk=session_id)


@database_sync_to_async
def counts():
    return ChatSession.objects.count(), Message.objects.count()


async def test_send_streams_session_tokens_and_done_with_sanitized_html(dev_llm):
    user = await make(UserFactory)
    socket = await open_socket(user)
    await socket.send_json_to({"type": "send", "content": "Hello there", "client_id": "c1"})
    events = await receive_until(socket)
    await finish(socket)

    assert events[0]["type"] == "session"
    assert events[0]["created"] is True
    assert events[0]["title"] == "Hello there"
    session_id = events[0]["session"]
    done = events[-1]
    assert done["type"] == "done"
    assert done["session"] == session_id
    assert "<strong>Here is a deterministic reply.</strong>" in done["html"]
    assert done["usage"]["completion_tokens"] == 30
    token_events = [e for e in events if e["type"] == "token"]
    # Coalesced: an instant 30-token stream arrives in a few frames, not 30.
    assert 1 <= len(token_events) < 30
    user_message, reply = await messages_of(session_id)
    assert (user_message.role, user_message.content) == ("user", "Hello there")
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == tokens_text(events)
    assert reply.completion_tokens == 30
    assert done["message"] == reply.pk


async def test_model_conversation_reply_lists_the_injected_configuration(dev_llm):
    user = await make(UserFactory)
    model = await make(
        ModelFactory,
        owner=user,
        name="Momentum Bot",
        instructions="Watch <script>alert(1)</script> volume.",
    )
    socket = await open_socket(user)
    await socket.send_json_to(
        {"type": "send", "model": model.pk, "content": "What are you configured for?"}
    )
    events = await receive_until(socket)
    await finish(socket)

    text = tokens_text(events)
    assert "- Name: Momentum Bot" in text
    assert "- Trading style: Swing trading" in text
    assert "- Buying power: 25000.00" in text
    assert "- Shorting allowed: yes" in text
    assert "- Allowed order types: market, limit" in text
    assert "- Rules: Never risk more than 1% per trade." in text
    html = events[-1]["html"]
    assert "Momentum Bot" in html
    assert "<script" not in html
    assert "&lt;script&gt;" in html


async def test_run_conversation_calls_a_tool_announces_it_and_records_it(dev_llm):
    user = await make(UserFactory)
    run = await make(RunFactory, model=await make(ModelFactory, owner=user))
    await make(TradeFactory, run=run, symbol="AAPL", quantity=10, price=101)
    await make(TradeFactory, run=run, symbol="MSFT", quantity=5, price=300)
    socket = await open_socket(user)
    await socket.send_json_to({"type": "send", "run": run.pk, "content": "Show my AAPL trades"})
    events = await receive_until(socket)
    await socket.send_json_to(
        {"type": "send", "run": run.pk, "content": "What are my open positions?"}
    )
    second = await receive_until(socket)
    await finish(socket)

    kinds = [e["type"] for e in events]
    status = events[kinds.index("status")]
    assert status["content"] == "Looking up trades…"
    assert kinds.index("status") < kinds.index("token")
    assert "AAPL" in tokens_text(events) and "MSFT" not in tokens_text(events)
    assert [e["content"] for e in second if e["type"] == "status"] == ["Looking up open positions…"]
    assert '"net_quantity": "5"' in tokens_text(second)
    replies = [m for m in await messages_of(events[0]["session"]) if m.role == "assistant"]
    assert replies[0].tools_used[0]["name"] == "get_trades"
    assert replies[0].tools_used[0]["arguments"] == {"symbol": "AAPL"}
    assert "AAPL" in replies[0].tools_used[0]["result"]
    assert replies[1].tools_used[0]["name"] == "get_open_positions"


async def test_first_message_gets_a_generated_title_pushed(dev_llm):
    user = await make(UserFactory)
    socket = await open_socket(user)
    content = "plan my swing trades on NVDA for the coming week please"
    await socket.send_json_to({"type": "send", "content": content})
    # The title and the reply are independent jobs: either may end first.
    events = await receive_until(socket, types=("title", "done"))
    events += await receive_until(socket, types=({"title", "done"} - {events[-1]["type"]}))
    await finish(socket)

    title = next(e for e in events if e["type"] == "title")
    assert title["title"] == "Plan my swing trades on NVDA"
    row = await session_row(title["session"])
    assert (row.title, row.title_source) == ("Plan my swing trades on NVDA", "auto")


async def test_failed_title_keeps_the_provisional_title(dev_llm):
    user = await make(UserFactory)
    socket = await open_socket(user)
    await socket.send_json_to({"type": "send", "content": "Hello [dev:fault=500]"})
    events = await receive_until(socket)
    await finish(socket)

    assert events[-1]["type"] == "error"
    row = await session_row(events[0]["session"])
    assert (row.title, row.title_source) == ("Hello [dev:fault=500]", "provisional")


async def test_summary_is_made_past_the_threshold_and_kept_rolling(dev_llm, settings):
    settings.SUMMARY_THRESHOLD = 4
    settings.CONTEXT_MESSAGES = 2
    settings.SUMMARY_EVERY = 2
    user = await make(UserFactory)
    socket = await open_socket(user)
    session_id = None
    for n in range(4):
        frame = {"type": "send", "content": f"question number {n} about hedging"}
        if session_id:
            frame["session"] = session_id
        await socket.send_json_to(frame)
        events = await receive_until(socket)
        session_id = events[0]["session"]
        assert events[-1]["type"] == "done"
        await streaming.Engine.current().wait_idle(5)
        row = await session_row(session_id)
        if n == 1:
            assert row.summary == ""  # 4 messages: not past the threshold
    await finish(socket)

    row = await session_row(session_id)
    assert row.summary.startswith("Summary of the conversation so far")
    assert "question number 2" in row.summary
    # 8 messages, the last 2 are in the context window: the summary covers 6.
    assert row.summary_message_count == 6
    messages = await messages_of(session_id)
    assert row.summary_until_id == messages[-3].pk


async def test_second_socket_subscribing_mid_reply_gets_it_once_in_order(dev_llm):
    user = await make(UserFactory)
    first = await open_socket(user)
    await first.send_json_to(
        {"type": "send", "content": "Tell me a long story [dev:tokens=300] [dev:token_ms=2]"}
    )
    head = await receive_until(first, types=("token",))
    session_id = head[0]["session"]
    second = await open_socket(user)
    await second.send_json_to({"type": "subscribe", "session": session_id})
    # Closing the socket that started the reply does not stop it.
    await first.disconnect()
    events = await receive_until(second, timeout=10)
    await finish(second)

    tokens = [e for e in events if e["type"] == "token"]
    expected = 0
    for event in tokens:
        assert event["offset"] == expected
        expected += len(event["content"])
    reply = (await messages_of(session_id))[-1]
    assert reply.status == Message.Status.COMPLETE
    assert tokens_text(events) == reply.content
    assert len(reply.content.split()) >= 290
    assert events[-1]["type"] == "done"


async def test_subscribe_after_the_reply_ended_replays_it_from_the_database(dev_llm):
    user = await make(UserFactory)
    socket = await open_socket(user)
    await socket.send_json_to({"type": "send", "content": "Hi"})
    events = await receive_until(socket)
    await socket.send_json_to({"type": "subscribe", "session": events[0]["session"]})
    replay = await receive_until(socket)
    await finish(socket)

    assert tokens_text(replay) == tokens_text(events)
    assert replay[-1]["type"] == "done" and replay[-1]["html"] == events[-1]["html"]


async def test_stop_keeps_the_partial_reply_and_closes_the_upstream_stream(dev_llm):
    user = await make(UserFactory)
    socket = await open_socket(user)
    disconnects = dev_llm.stats.disconnects
    await socket.send_json_to(
        {"type": "send", "content": "Go on [dev:tokens=2000] [dev:token_ms=3]"}
    )
    head = await receive_until(socket, types=("token",))
    session_id = head[0]["session"]
    await asyncio.sleep(0.1)
    await socket.send_json_to({"type": "stop", "session": session_id})
    events = head + await receive_until(socket)
    await finish(socket)

    assert events[-1]["type"] == "done"
    assert events[-1]["status"] == "stopped"
    reply = (await messages_of(session_id))[-1]
    assert reply.status == Message.Status.STOPPED
    assert reply.content == tokens_text(events)
    assert 0 < len(reply.content.split()) < 2000
    for _ in range(50):
        if dev_llm.stats.disconnects > disconnects:
            break
        await asyncio.sleep(0.02)
    assert dev_llm.stats.disconnects == disconnects + 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("refused", "could not be reached"),
        ("hang", "did not answer within 0.5 seconds"),
        ("500", "HTTP 500"),
        ("die", "broke off mid-reply"),
        ("malformed", "malformed response"),
    ],
)
async def test_upstream_failure_ends_with_an_error_keeps_the_partial_and_allows_retry(
    dev_llm, settings, fault, reason
):
    settings.LLM_TIMEOUT = 0.5
    if fault == "refused":
        settings.LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
        content = "Hello"
    else:
        content = f"Hello [dev:fault={fault}]"
    user = await make(UserFactory)
    socket = await open_socket(user)
    await socket.send_json_to({"type": "send", "content": content})
    events = await receive_until(socket)
    error = events[-1]
    assert error["type"] == "error"
    assert reason in error["error"]
    reply = (await messages_of(error["session"]))[-1]
    assert (reply.status, reply.error) == (Message.Status.ERROR, error["error"])
    assert reply.content == tokens_text(events)
    if fault in ("die", "malformed"):
        assert reply.content  # what streamed before the cut is kept

    settings.LLM_BASE_URL = dev_llm.base_url
    await socket.send_json_to({"type": "send", "session": error["session"], "content": "Again"})
    retry = await receive_until(socket)
    await finish(socket)
    assert retry[-1]["type"] == "done"


async def test_crash_recovery_marks_only_stale_streaming_replies():
    user = await make(UserFactory)
    session = await make(ChatSessionFactory, user=user)
    old = timezone.now() - timezone.timedelta(minutes=5)
    stale = await make(
        MessageFactory,
        session=session,
        role="assistant",
        content="half a rep",
        status="streaming",
        updated_at=old,
    )
    live = await make(
        MessageFactory, session=session, role="assistant", content="live", status="streaming"
    )
    marked = await streaming.Engine.current().settle_abandoned()

    assert marked == 1
    stale_row, live_row = await messages_of(session.pk)
    assert stale_row.pk == stale.pk and live_row.pk == live.pk
    assert (stale_row.status, stale_row.error, stale_row.content) == (
        "error",
        "interrupted",
        "half a rep",
    )
    assert live_row.status == "streaming"


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps([1, 2]), "JSON object"),
        (json.dumps({"type": "shout", "content": "x"}), "Unknown frame type"),
        (json.dumps({"type": "send"}), "missing: content"),
        (json.dumps({"type": "send", "content": 5}), "content must be a string"),
        (json.dumps({"type": "send", "content": "x", "colour": 1}), "Unknown fields"),
        (json.dumps({"type": "send", "content": "   "}), "empty"),
        (json.dumps({"type": "send", "content": "x", "model": "abc"}), "integer id"),
        (json.dumps({"type": "send", "content": "x" * 1_000_000}), "larger than"),
        (json.dumps({"type": "subscribe", "session": "not-a-uuid"}), "not a valid"),
        (json.dumps({"type": "stop"}), "missing: session"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_open(frame, fragment):
    user = await make(UserFactory)
    before = await counts()
    socket = await open_socket(user)
    await socket.send_to(text_data=frame)
    event = json.loads(await socket.receive_from(timeout=3))
    assert event["type"] == "error"
    assert fragment in event["error"]
    # Still open: a second frame is answered too.
    await socket.send_to(text_data="{")
    assert json.loads(await socket.receive_from(timeout=3))["type"] == "error"
    await finish(socket)
    assert await counts() == before


async def test_another_users_session_is_not_found_and_nothing_is_stored():
    owner, intruder = await make(UserFactory), await make(UserFactory)
    session = await make(ChatSessionFactory, user=owner, title="Private")
    before = await counts()
    socket = await open_socket(intruder)
    for frame in (
        {"type": "subscribe", "session": str(session.pk)},
        {"type": "stop", "session": str(session.pk)},
        {"type": "send", "session": str(session.pk), "content": "let me in"},
    ):
        await socket.send_json_to(frame)
        event = json.loads(await socket.receive_from(timeout=3))
        assert (event["type"], event["error"]) == ("error", "Conversation not found.")
    await finish(socket)
    assert await counts() == before


async def test_unauthenticated_socket_is_rejected():
    from config.asgi import application

    communicator = WebsocketCommunicator(application, "/ws/chat/")
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4401


@database_sync_to_async
def abandoned_reply(user, *, content="half a rep", seconds=60):
    """A conversation whose reply a dead process left streaming ``seconds`` ago."""
    session = ChatSessionFactory(user=user)
    question = MessageFactory(session=session, role="user", content="Question?")
    old = timezone.now() - timezone.timedelta(seconds=seconds)
    reply = MessageFactory(
        session=session,
        role="assistant",
        content=content,
        status="streaming",
        parent=question,
        updated_at=old,
    )
    return session, reply


async def test_subscribe_to_a_reply_no_live_process_writes_ends_it_as_interrupted():
    user = await make(UserFactory)
    session, reply = await abandoned_reply(user)
    socket = await open_socket(user)
    await socket.send_json_to({"type": "subscribe", "session": str(session.pk)})
    events = await receive_until(socket, timeout=5)
    await finish(socket)

    assert tokens_text(events) == "half a rep"
    assert (events[-1]["type"], events[-1]["message"], events[-1]["error"]) == (
        "error",
        reply.pk,
        "interrupted",
    )
    row = (await messages_of(session.pk))[-1]
    assert (row.status, row.error, row.content) == ("error", "interrupted", "half a rep")


async def test_stop_of_an_abandoned_reply_ends_it():
    user = await make(UserFactory)
    session, reply = await abandoned_reply(user)
    socket = await open_socket(user)
    await socket.send_json_to({"type": "stop", "session": str(session.pk)})
    await asyncio.sleep(0.3)  # no engine answers; no snapshot timeout or sweep involved
    await finish(socket)
    row = (await messages_of(session.pk))[-1]
    assert (row.status, row.error, row.content) == ("error", "interrupted", "half a rep")


async def test_send_after_an_abandoned_reply_is_accepted_and_the_old_one_errors(dev_llm):
    user = await make(UserFactory)
    session, reply = await abandoned_reply(user)
    recent_session, _ = await abandoned_reply(user, seconds=1)
    socket = await open_socket(user)
    await socket.send_json_to({"type": "send", "session": str(session.pk), "content": "Again"})
    events = await receive_until(socket, types=("done",), timeout=5)
    # A reply written a second ago may be alive elsewhere: still in progress.
    await socket.send_json_to({"type": "send", "session": str(recent_session.pk), "content": "x"})
    busy = json.loads(await socket.receive_from(timeout=3))
    await finish(socket)

    errors = [e for e in events if e["type"] == "error"]
    assert [(e["message"], e["error"]) for e in errors] == [(reply.pk, "interrupted")]
    assert events[-1]["type"] == "done"
    old, *_ = [m for m in await messages_of(session.pk) if m.pk == reply.pk]
    assert (old.status, old.content) == ("error", "half a rep")
    assert busy["code"] == "generation_in_progress"


async def test_recovery_sweep_tells_open_tabs_about_the_replies_it_marks():
    user = await make(UserFactory)
    session, _ = await abandoned_reply(user, content="done before")
    await database_sync_to_async(Message.objects.filter(session=session).update)(status="complete")
    socket = await open_socket(user)
    await socket.send_json_to({"type": "subscribe", "session": str(session.pk)})
    await receive_until(socket)  # the stored reply, then done
    old = timezone.now() - timezone.timedelta(seconds=services.REPLY_LEASE + 1)
    stale = await make(
        MessageFactory, session=session, role="assistant", status="streaming", updated_at=old
    )
    assert await streaming.Engine.current().settle_abandoned() == 1
    event = (await receive_until(socket, types=("error",), timeout=3))[-1]
    await finish(socket)
    assert (event["message"], event["error"]) == (stale.pk, "interrupted")


async def test_a_slow_live_reply_outlives_its_lease_and_a_dead_one_is_settled(dev_llm, monkeypatch):
    """A live reply renews its lease while it lasts; the sweep ends only dead ones."""
    from chat.streaming import engine as engine_module
    from chat.streaming import generation as generation_module

    monkeypatch.setattr(services, "REPLY_LEASE", 0.6)
    monkeypatch.setattr(generation_module, "HEARTBEAT_INTERVAL", 0.15)
    monkeypatch.setattr(engine_module, "HEARTBEAT_INTERVAL", 0.15)
    monkeypatch.setattr(engine_module, "TICK", 0.05)
    user = await make(UserFactory)
    socket = await open_socket(user)
    # Slow: nothing for 1.5 s (past the lease twice over), then the reply.
    await socket.send_json_to({"type": "send", "content": "Hi [dev:first_token_ms=1500]"})
    session_id = json.loads(await socket.receive_from(timeout=3))["session"]
    engine = streaming.Engine.current()
    swept = 0
    for _ in range(12):  # sweeps from another process's point of view (writing=nothing)
        await asyncio.sleep(0.1)
        swept += len(
            await database_sync_to_async(services.replies_settle_abandoned)(session_id=session_id)
        )
    events = await receive_until(socket, timeout=5)
    assert swept == 0
    assert events[-1]["type"] == "done"
    # A reply whose writer died (no generation renews it) is settled once its lease ends.
    dead = await make(
        MessageFactory,
        session=await session_row(session_id),
        role="assistant",
        status="streaming",
        content="cut",
    )
    await asyncio.sleep(0.7)
    assert await engine.settle_abandoned() == 1
    event = (await receive_until(socket, types=("error",), timeout=3))[-1]
    await finish(socket)
    assert (event["message"], event["code"]) == (dead.pk, "interrupted")


async def test_websocket_sends_are_rate_limited_with_a_readable_error(dev_llm, settings):
    from django.core.cache import cache

    # A day's window: a minute's could roll over between the two sends (a flaky test).
    settings.THROTTLE_MESSAGES = "1/d"
    await database_sync_to_async(cache.clear)()
    user = await make(UserFactory)
    before = await counts()
    socket = await open_socket(user)
    await socket.send_json_to({"type": "send", "content": "one"})
    first = await receive_until(socket)
    await socket.send_json_to({"type": "send", "session": first[0]["session"], "content": "two"})
    refused = (await receive_until(socket, types=("error",), timeout=3))[-1]
    await finish(socket)

    assert first[-1]["type"] == "done"
    assert (refused["type"], refused["code"]) == ("error", "rate_limited")
    assert "too fast" in refused["error"]
    assert await counts() == (before[0] + 1, before[1] + 2)


async def test_a_message_of_quotes_and_newlines_just_under_the_limit_is_accepted(dev_llm, settings):
    user = await make(UserFactory)
    content = ('print("a\\tb")\n' * settings.MAX_MESSAGE_CHARS)[: settings.MAX_MESSAGE_CHARS - 10]
    socket = await open_socket(user)
    await socket.send_json_to({"type": "send", "content": content})
    events = await receive_until(socket)
    await socket.send_json_to({"type": "send", "content": content + '"' * 11})
    too_long = (await receive_until(socket, types=("error",), timeout=3))[-1]
    await finish(socket)

    assert events[0]["type"] == "session" and events[-1]["type"] == "done"
    assert (await messages_of(events[0]["session"]))[0].content == content
    assert too_long["code"] == "message_too_long"


async def test_deleting_a_conversation_mid_reply_stops_its_generation(dev_llm):
    from chat import services

    user = await make(UserFactory)
    socket = await open_socket(user)
    disconnects = dev_llm.stats.disconnects
    await socket.send_json_to(
        {"type": "send", "content": "Go on [dev:tokens=3000] [dev:token_ms=3]"}
    )
    head = await receive_until(socket, types=("token",))
    session_id = head[0]["session"]
    await database_sync_to_async(services.conversation_delete)(user=user, session_id=session_id)
    engine = streaming.Engine.current()
    await engine.wait_idle(5)
    tail = []
    while not await socket.receive_nothing(timeout=0.2):
        tail.append(json.loads(await socket.receive_from()))
    await finish(socket)

    assert session_id not in engine.generations
    assert [e for e in tail if e["type"] == "done"] == []
    # The socket was told, once, and hears nothing more of that conversation.
    gone = [e for e in tail if e["type"] == "error"]
    assert [(e["session"], e["code"]) for e in gone] == [(session_id, "not_found")]
    assert tail[-1] == gone[0]
    assert dev_llm.stats.disconnects == disconnects + 1
    assert await messages_of(session_id) == []


async def test_edit_and_regenerate_frames_answer_with_a_send_s_events(dev_llm):
    user = await database_sync_to_async(UserFactory)()
    socket = await open_socket(user)
    await socket.send_json_to({"type": "send", "content": "first"})
    first = await receive_until(socket)
    started = first[0]
    # The conversation's title comes when it is made, before or after the reply ends.
    if not any(event["type"] == "title" for event in first):
        await receive_until(socket, types=("title",))
    await socket.send_json_to({"type": "regenerate", "message": started["message"]})
    again = await receive_until(socket)
    assert again[0]["type"] == "session" and again[0]["session"] == started["session"]
    assert again[0]["message"] != started["message"]
    assert again[-1]["type"] == "done" and again[-1]["message"] == again[0]["message"]

    await socket.send_json_to(
        {"type": "edit", "message": started["user_message"], "content": "second"}
    )
    edited = await receive_until(socket)
    assert edited[0]["user_message"] != started["user_message"]
    assert edited[-1]["type"] == "done"

    # Malformed frames are refused with the stream's error event; nothing is stored.
    for frame, code in [
        ({"type": "edit", "message": "1", "content": "x"}, "invalid"),
        ({"type": "edit", "message": 1}, "invalid"),
        ({"type": "regenerate", "message": 1, "content": "x"}, "invalid"),
        ({"type": "regenerate", "message": 999999}, "not_found"),
        ({"type": "regenerate", "message": started["user_message"]}, "invalid"),
    ]:
        await socket.send_json_to(frame)
        event = await socket.receive_json_from(timeout=5)
        assert (event["type"], event["code"]) == ("error", code), (frame, event)
    await finish(socket)
