"""The engine from sync code, its bounded writes and frames, prompting, tools, commands."""

import asyncio
import json
import time
import uuid
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.db import OperationalError, connection
from django.db.backends import utils as db_utils
from django.utils import timezone

from chat import prompting, services, streaming, tools
from chat.exceptions import ConversationNotFound
from chat.models import ChatSession, Message
from tests.factories import (
    ChatSessionFactory,
    MessageFactory,
    ModelFactory,
    RunFactory,
    TradeFactory,
    UserFactory,
)

from .conftest import finish, open_socket, receive_until


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def reply_status(message_id):
    try:
        return Message.objects.filter(pk=message_id).values_list("status", flat=True).first()
    except OperationalError:  # SQLite's shared in-memory test database: a writer holds it
        return None


@pytest.mark.django_db(transaction=True)
def test_a_reply_sent_from_sync_code_is_written_in_the_background(dev_llm):
    user = UserFactory()
    reply = streaming.send_sync(user=user, content="From a sync view", client_id="k1")
    wait_for(lambda: reply_status(reply.assistant_message.pk) == "complete")

    stored = Message.objects.get(pk=reply.assistant_message.pk)
    assert stored.content.startswith("**Here is a deterministic reply.**")
    assert stored.completion_tokens == 30
    # The same client_id again is a duplicate: nothing new is stored or started.
    again = streaming.send_sync(user=user, content="From a sync view", client_id="k1")
    assert again.duplicate
    time.sleep(0.1)
    assert Message.objects.filter(session=reply.session).count() == 2
    assert Message.objects.get(pk=stored.pk).updated_at == stored.updated_at


@pytest.mark.django_db(transaction=True)
def test_stop_from_sync_code_keeps_the_partial_reply(dev_llm):
    user, intruder = UserFactory(), UserFactory()
    reply = streaming.send_sync(user=user, content="Long [dev:tokens=3000] [dev:token_ms=2]")
    wait_for(
        lambda: Message.objects.filter(pk=reply.assistant_message.pk).exclude(content="").exists()
    )
    with pytest.raises(ConversationNotFound):
        streaming.stop_sync(user=intruder, session_id=reply.session.pk)
    assert streaming.stop_sync(user=user, session_id=reply.session.pk) is True
    wait_for(lambda: reply_status(reply.assistant_message.pk) == "stopped")

    stored = Message.objects.get(pk=reply.assistant_message.pk)
    assert 0 < len(stored.content.split()) < 3000
    assert streaming.stop_sync(user=user, session_id=reply.session.pk) is False


@pytest.mark.django_db(transaction=True)
async def test_a_long_reply_is_coalesced_and_saved_a_bounded_number_of_times(dev_llm, monkeypatch):
    writes = []
    original = db_utils.CursorWrapper._execute_with_wrappers

    def counting(self, sql, params, many, executor):
        statement = sql.lstrip().upper()
        # A data-modifying WITH (PostgreSQL: the turn's inserts, a reply's end) writes too.
        if statement.startswith(("UPDATE", "INSERT")) or (
            statement.startswith("WITH") and ("UPDATE " in statement or "INSERT " in statement)
        ):
            writes.append((sql, list(params or ())))
        return original(self, sql, params, many, executor)

    monkeypatch.setattr(db_utils.CursorWrapper, "_execute_with_wrappers", counting)
    user = await database_sync_to_async(UserFactory)()
    socket = await open_socket(user)
    writes.clear()
    await socket.send_json_to(
        {"type": "send", "content": "Go [dev:tokens=400] [dev:token_ms=5]", "client_id": "w"}
    )
    events = await receive_until(socket, timeout=30)
    await finish(socket)

    frames = [e for e in events if e["type"] == "token"]
    assert events[-1]["type"] == "done"
    # Frames on a display-frame clock, not one per token: the first token alone, then a
    # few tokens a frame (one every 5 ms against a 16 ms frame).
    assert len(frames) < 200
    assert len(frames[0]["content"].split()) == 1
    # reply_start (2 inserts, 1 session update), a save every HEARTBEAT_INTERVAL while it
    # lasts (about 2 s here), the finish (message + session), the title: a handful.
    # Only this session's writes (another test's background work may still be writing):
    # those naming the session, or updating its messages (the id ends the parameters, or
    # comes before the status it must still have: a reply's end on PostgreSQL).
    session_id = uuid.UUID(events[0]["session"])
    ids = {events[0]["message"], events[0]["user_message"]}
    forms = {session_id, session_id.hex, str(session_id)}

    def ours(params):
        return (
            any(isinstance(p, str | uuid.UUID) and p in forms for p in params)
            or any(type(p) is int and p in ids for p in params[-2:])
            or any(
                type(p) is int and p in ids and status == Message.Status.STREAMING
                for p, status in zip(params, params[1:], strict=False)
            )
        )

    mine = [sql for sql, params in writes if ours(params)]
    message_writes = [sql for sql in mine if "chat_message" in sql]
    # The two inserts and the finish at least: on PostgreSQL the inserts are one statement.
    assert len(message_writes) >= (2 if connection.vendor == "postgresql" else 3)
    assert len(message_writes) <= 8
    # Plus the session updates (1 at the start, 1 at the finish) and the title.
    assert len(mine) <= len(message_writes) + 4


@pytest.mark.django_db
def test_context_has_system_prompt_summary_and_the_last_messages(settings):
    settings.CONTEXT_MESSAGES = 3
    model = ModelFactory(name="Scalper", allow_hedging=True, allowed_order_types=["stop"])
    session = ChatSessionFactory(user=model.owner, model=model, summary="Earlier: talked risk.")
    for n in range(5):
        MessageFactory(session=session, role="user", content=f"question {n}")
    questions = ChatSession.objects.get(pk=session.pk).messages.order_by("id")
    # The summary covers the first two questions: the context carries the rest whole.
    session.summary_until_id = questions[1].pk
    placeholder = MessageFactory(session=session, role="assistant", content="", status="streaming")

    context = prompting.reply_context(session=session, message_id=placeholder.pk)

    system = context.messages[0]["content"]
    assert system.startswith(prompting.GENERAL_PROMPT)
    for line in ("- Name: Scalper", "- Hedging allowed: yes", "- Allowed order types: stop"):
        assert line in system
    assert context.messages[1] == {
        "role": "system",
        "content": "Summary of the earlier conversation:\nEarlier: talked risk.",
    }
    assert [m["content"] for m in context.messages[2:]] == [
        "question 2",
        "question 3",
        "question 4",
    ]
    assert context.tools is None


@pytest.mark.django_db
def test_run_context_offers_the_tools_and_states_the_facts():
    run = RunFactory(starting_capital=Decimal("1000"), ending_equity=Decimal("1200"))
    session = ChatSessionFactory(user=run.model.owner, model=run.model, run=run)
    context = prompting.reply_context(session=session, message_id=0)
    assert context.run_id == run.pk
    assert [t["function"]["name"] for t in context.tools] == [
        "get_run_summary",
        "get_trades",
        "get_open_positions",
    ]
    assert "P&L 200" in context.messages[0]["content"]


@pytest.mark.django_db
def test_tools_read_only_the_runs_own_trades():
    run, other = RunFactory(), RunFactory()
    TradeFactory(run=run, symbol="AAPL", side="buy", quantity=Decimal("10"))
    TradeFactory(run=run, symbol="AAPL", side="sell", quantity=Decimal("4"), realized_pnl=7)
    TradeFactory(run=run, symbol="MSFT", side="buy", quantity=Decimal("5"))
    TradeFactory(run=run, symbol="MSFT", side="sell", quantity=Decimal("5"))
    TradeFactory(run=other, symbol="TSLA", side="buy", quantity=Decimal("1"))

    positions = json.loads(tools.run_tool(run_id=run.pk, name="get_open_positions", arguments={}))
    assert positions == [{"symbol": "AAPL", "net_quantity": "6"}]
    trades = json.loads(
        tools.run_tool(run_id=run.pk, name="get_trades", arguments={"symbol": "aapl", "limit": 1})
    )
    assert len(trades) == 1 and trades[0]["symbol"] == "AAPL"
    summary = json.loads(tools.run_tool(run_id=run.pk, name="get_run_summary", arguments={}))
    assert (summary["trades"], summary["realized_pnl"], summary["pnl"]) == (4, "7", "450")
    unknown = json.loads(tools.run_tool(run_id=run.pk, name="rm_rf", arguments={}))
    assert unknown == {"error": "Unknown tool 'rm_rf'."}
    assert len(tools.short("x" * 1000)) == tools.RESULT_SHORT_CHARS


@pytest.mark.django_db(transaction=True)
def test_summarize_sessions_backfills_conversations_past_the_threshold(dev_llm, settings):
    settings.SUMMARY_THRESHOLD = 4
    settings.CONTEXT_MESSAGES = 2
    long = ChatSessionFactory(message_count=6)
    short = ChatSessionFactory(message_count=3)
    messages = [
        MessageFactory(session=long, role="user", content=f"topic {n} please") for n in range(6)
    ]
    MessageFactory.create_batch(3, session=short)

    call_command("summarize_sessions", stdout=open("/dev/null", "w"))  # noqa: SIM115

    long.refresh_from_db()
    short.refresh_from_db()
    assert long.summary.startswith("Summary of the conversation so far")
    assert "topic 3 please" in long.summary and "topic 4" not in long.summary
    assert (long.summary_until_id, long.summary_message_count) == (messages[3].pk, 4)
    assert short.summary == ""
    assert ChatSession.objects.filter(summary="").count() == 1


@pytest.mark.django_db(transaction=True)
async def test_a_stop_before_the_generation_first_runs_still_ends_it_as_stopped(dev_llm):
    user = await database_sync_to_async(UserFactory)()
    prepared = await database_sync_to_async(streaming.prepare)(user=user, content="Hi")
    engine = streaming.Engine.current()
    generation = engine.launch(prepared.reply, prepared.context)
    generation.request_stop()  # before its first step
    await engine.wait_idle()

    stored = await database_sync_to_async(Message.objects.get)(pk=generation.message_id)
    assert (stored.status, stored.content) == ("stopped", "")
    assert generation.session not in engine.generations


def test_a_pool_timeout_is_not_retried_but_a_lock_is():
    import psycopg_pool

    calls = []

    @services._retry_on_conflict
    def exhausted():
        calls.append(1)
        try:
            raise psycopg_pool.PoolTimeout("couldn't get a connection after 10.00 sec")
        except psycopg_pool.PoolTimeout as exc:
            raise OperationalError(str(exc)) from exc

    with pytest.raises(OperationalError):
        exhausted()
    assert len(calls) == 1

    @services._retry_on_conflict
    def locked_once():
        calls.append(2)
        if calls.count(2) == 1:
            raise OperationalError("database is locked")
        return "ok"

    assert locked_once() == "ok"
    assert calls.count(2) == 2


@pytest.mark.django_db(transaction=True)
async def test_a_reply_completes_while_the_thread_sensitive_executor_is_stuck(dev_llm):
    from asgiref.sync import sync_to_async

    user = await sync_to_async(UserFactory, thread_sensitive=False)()
    # A slow ORM call holds the one thread-sensitive thread (say, a write in a busy timeout).
    stuck = asyncio.ensure_future(database_sync_to_async(time.sleep)(4))
    await asyncio.sleep(0.05)
    reply = await streaming.send(user=user, content="Hi [dev:tokens=20]")
    engine = streaming.Engine.current()
    # The reply is stored, written and finished while that thread is still busy.
    generation = engine.generations.get(str(reply.session.pk))
    if generation is not None:
        await asyncio.wait_for(generation.task, 3.5)
    status = await sync_to_async(reply_status, thread_sensitive=False)(reply.assistant_message.pk)
    still_stuck = not stuck.done()
    await stuck
    await engine.wait_idle()
    assert status == "complete"
    assert still_stuck


def sse_events(chunks: list[bytes]) -> tuple[list[dict], int]:
    """Return the data events of an SSE body and how many ``: ping`` comments it had."""
    events, pings = [], 0
    for block in b"".join(chunks).decode().strip().split("\n\n"):
        if block == ": ping":
            pings += 1
        else:
            assert block.startswith("data: "), block
            events.append(json.loads(block[6:]))
    return events, pings


async def sse_post(body, user):
    from django.test import AsyncClient

    from accounts.tokens import token_issue

    raw, _ = await database_sync_to_async(token_issue)(user=user)
    return await AsyncClient().post(
        "/api/chat/stream",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )


@pytest.mark.django_db(transaction=True)
async def test_sse_pings_when_idle_and_ends_when_the_stored_reply_is_final(dev_llm, monkeypatch):
    monkeypatch.setattr("chat.views_stream.KEEPALIVE_INTERVAL", 0.2)
    user = await database_sync_to_async(UserFactory)()
    # A reply whose engine is elsewhere and whose `done` never reaches this stream.
    reply = await database_sync_to_async(services.reply_start)(
        user=user, content="Hi", client_id="lost"
    )
    response = await sse_post({"message": "Hi", "client_id": "lost"}, user)
    assert response.status_code == 200

    async def end_quietly():
        await asyncio.sleep(0.5)
        await database_sync_to_async(services.reply_finish)(
            message_id=reply.assistant_message.pk, content="All done.", status="complete"
        )

    ender = asyncio.ensure_future(end_quietly())
    chunks = await asyncio.wait_for(_collect(response), 5)
    await ender
    events, pings = sse_events(chunks)
    assert pings >= 1
    assert [e["type"] for e in events] == ["session", "token", "done"]
    assert events[1]["content"] == "All done."


async def _collect(response) -> list[bytes]:
    return [chunk async for chunk in response.streaming_content]


@pytest.mark.django_db(transaction=True)
async def test_sse_duplicate_of_an_abandoned_reply_ends_with_an_error_not_a_hang(dev_llm):
    user = await database_sync_to_async(UserFactory)()
    reply = await database_sync_to_async(services.reply_start)(
        user=user, content="Hi", client_id="dead"
    )
    old = timezone.now() - timezone.timedelta(minutes=1)
    await database_sync_to_async(Message.objects.filter(pk=reply.assistant_message.pk).update)(
        updated_at=old, content="partial"
    )
    response = await sse_post({"message": "Hi", "client_id": "dead"}, user)
    events, _ = sse_events(await asyncio.wait_for(_collect(response), 5))

    assert [e["type"] for e in events] == ["session", "token", "error"]
    assert (events[1]["content"], events[2]["error"]) == ("partial", "interrupted")
    stored = await database_sync_to_async(Message.objects.get)(pk=reply.assistant_message.pk)
    assert (stored.status, stored.error) == ("error", "interrupted")


@pytest.mark.django_db(transaction=True)
async def test_sse_shares_the_send_budget_with_the_websocket_and_answers_429(dev_llm, settings):
    from django.core.cache import cache

    # A day's window: a minute's could roll over between the two sends (a flaky test).
    settings.THROTTLE_MESSAGES = "1/d"
    await database_sync_to_async(cache.clear)()
    user = await database_sync_to_async(UserFactory)()
    socket = await open_socket(user)
    await socket.send_json_to({"type": "send", "content": "over the socket"})
    assert (await receive_until(socket))[-1]["type"] == "done"
    await finish(socket)
    before = await database_sync_to_async(Message.objects.count)()

    response = await sse_post({"message": "over SSE"}, user)
    assert response.status_code == 429
    assert json.loads(response.content)["error"]["code"] == "rate_limited"
    assert int(response["Retry-After"]) >= 1
    assert await database_sync_to_async(Message.objects.count)() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "arguments", "fragment"),
    [
        ("get_trades", '{"limit": 1e999}', "whole number"),
        ("get_trades", '{"limit": -3}', "from 1 to 100"),
        ("get_trades", '{"limit": 2.5}', "whole number"),
        ("get_trades", '{"limit": "ten"}', "whole number"),
        ("get_trades", '{"symbol": 5}', "ticker"),
        ("get_trades", '{"symbol": "' + "A" * 40 + '"}', "ticker"),
        ("get_trades", "[1, 2]", "JSON object"),
        ("get_trades", "{not json", "JSON object"),
    ],
)
def test_bad_tool_arguments_are_an_error_the_model_reads(name, arguments, fragment):
    from chat.llm import ToolCall

    run = RunFactory()
    call = ToolCall(id="c1", name=name, arguments=arguments)
    result = json.loads(tools.run_tool(run_id=run.pk, name=name, arguments=call.parsed_arguments()))
    assert fragment in result["error"]


@pytest.mark.django_db
def test_the_first_questions_context_is_built_without_reading_the_conversation(
    django_assert_num_queries,
):
    prepared = streaming.prepare(user=UserFactory(), content="First question")
    assert prepared.reply.first_message
    context = prepared.context
    assert [m["role"] for m in context.messages] == ["system", "user"]
    assert context.messages[-1]["content"] == "First question"
    with django_assert_num_queries(0):
        again = prompting.reply_context(
            session=prepared.reply.session,
            message_id=prepared.reply.assistant_message.pk,
            first_question=prepared.reply.user_message,
        )
    assert again.messages == context.messages


async def test_serving_keeps_what_the_server_loaded_out_of_the_collectors_sight():
    import gc

    from chat.streaming import lifecycle

    lifecycle.serve()
    # Full collections stopped the loop for up to 140 ms under 200 streams when they
    # walked Django and the apps' objects (bench/README.md): those are frozen, and the
    # youngest generation is collected every 10,000 allocations, not 700.
    assert gc.get_freeze_count() > 10_000
    assert gc.get_threshold()[0] == 10_000


@pytest.mark.django_db(transaction=True)
async def test_the_first_token_goes_out_before_the_rest_of_a_burst_is_read(monkeypatch):
    """Tokens that arrived together (a fast upstream): the watchers' tasks send the
    first one before the generation reads on through the others."""
    from chat import llm

    async def burst(**kwargs):
        for i in range(50):
            yield llm.StreamEvent(text=f"tok{i} ")  # each already there: no wait between

    monkeypatch.setattr(llm, "stream_chat", burst)
    loop = asyncio.get_running_loop()
    engine = streaming.Engine.current()
    taken_when_sent = []

    class Watcher:
        def deliver(self, event):
            if event.kind == "token" and event.body["offset"] == 0:
                # What a socket's or a response's task does with it runs after this.
                generation = engine.generations[event.session]
                loop.call_soon(lambda: taken_when_sent.append(generation.length))

    user = await database_sync_to_async(UserFactory)()
    reply = await streaming.send(user=user, content="Hello", watcher=Watcher())
    await engine.generations[str(reply.session.pk)].task
    assert taken_when_sent == [len("tok0 ")]
