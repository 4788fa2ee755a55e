"""The streaming engine: replies written in the background, streamed to whoever watches.

What the doors (SSE, WebSocket, REST, admin, commands) call. A reply is not tied to the
connection that asked for it: it is written by a task of this process's engine and goes
to the conversation's watchers, here (a direct call) and in other processes (``relay``).

Modules, each with one job: ``db`` (database work off the event loop), ``events`` (the
events of SPEC 4.2), ``feeds`` (fan-out in this process), ``generation`` (one reply:
upstream, frames, finish), ``relay`` (across processes), ``jobs`` (titles, summaries),
``engine`` (one loop's replies, saving, recovery), ``lifecycle`` (start and drain).
"""

import asyncio
import functools
from dataclasses import dataclass

from django.db import transaction

from chat import prompting, ratelimit, selectors, services, signals
from chat.models import Message
from chat.rendering import render_markdown
from config.logs import current_request_id

from . import db, events
from .engine import Engine
from .feeds import Watcher
from .generation import EarlyRequest
from .lifecycle import draining, serve

__all__ = [
    "EarlyRequest",
    "Engine",
    "Prepared",
    "Watcher",
    "db",
    "draining",
    "events",
    "prepare",
    "send",
    "send_sync",
    "serve",
    "settle_abandoned_sync",
    "stop",
    "stop_sync",
    "store",
    "subscribe",
    "follow",
    "summarize_sync",
    "wait_idle_sync",
]

SYNC_TIMEOUT = 15.0


@dataclass(frozen=True)
class Prepared:
    """A stored message and its placeholder, with the LLM input of the reply to write."""

    reply: services.Reply
    context: prompting.ReplyContext | None

    @property
    def startable(self) -> bool:
        return self.context is not None


def prepare(
    *,
    user,
    content=None,
    session_id=None,
    model_id=None,
    run_id=None,
    client_id=None,
    edit=None,
    regenerate=None,
    temporary=False,
    llm=None,
    check_rate: bool = True,
    writing=(),
    early: EarlyRequest | None = None,
) -> Prepared:
    """Store a user message and its reply placeholder, and build the reply's context.

    A send (``temporary``: one that creates a conversation makes it a temporary one;
    ``llm``: the conversation's LLM from this reply on), or
    with ``edit`` (a user message's id) a new version of that question, or with
    ``regenerate`` (an assistant message's id) a new version of that reply. Sync: one
    unit of database work (the send rate, the service's transaction, the context).
    With ``early``, a send's LLM request is started once its turn is stored, while the
    transaction commits (generation.EarlyRequest).
    """
    if check_rate:
        ratelimit.check_send_rate(user_id=user.pk)
    built: list[tuple[services.Reply, prompting.ReplyContext]] = []

    def stored(reply: services.Reply) -> None:
        if _startable(reply):
            built.append((reply, _context(reply)))
            early.start(built[-1][1])

    if regenerate is not None:
        reply = services.reply_regenerate(user=user, message_id=regenerate, writing=writing)
    elif edit is not None:
        reply = services.reply_edit(
            user=user, message_id=edit, content=content, client_id=client_id, writing=writing
        )
    else:
        reply = services.reply_start(
            user=user,
            content=content,
            session_id=session_id,
            model_id=model_id,
            run_id=run_id,
            client_id=client_id,
            writing=writing,
            temporary=temporary,
            llm=llm,
            stored=stored if early is not None else None,
        )
    if not _startable(reply):
        return Prepared(reply, None)
    # The context built before the commit, unless a retried transaction stored another.
    if built and built[-1][0] is reply:
        return Prepared(reply, built[-1][1])
    return Prepared(reply, _context(reply))


def _startable(reply: services.Reply) -> bool:
    placeholder = reply.assistant_message
    return (
        not reply.duplicate
        and placeholder is not None
        and placeholder.status == Message.Status.STREAMING
    )


def _context(reply: services.Reply) -> prompting.ReplyContext:
    return prompting.reply_context(
        session=reply.session,
        message_id=reply.assistant_message.pk,
        first_question=reply.user_message if reply.first_message else None,
        recent=reply.recent,
    )


async def send(*, user, watcher: Watcher | None = None, **fields) -> services.Reply:
    """Store a message and start its reply; ``watcher`` gets the ``session`` event first.

    ``fields`` are ``prepare``'s. A duplicate (the same ``client_id`` again) starts
    nothing; the watcher is then caught up as by ``subscribe``.
    """
    engine = Engine.current()
    prepared, early = await store(engine, prepare, user=user, writing=engine.writing(), **fields)
    reply = prepared.reply
    if watcher is not None:
        watcher.deliver(events.session_started(reply, duplicate=reply.duplicate))
    if prepared.startable:
        engine.launch(reply, prepared.context, watcher, early=early)
    elif watcher is not None and reply.assistant_message is not None:
        await follow(engine, str(reply.session.pk), watcher)
    return reply


async def store(engine: Engine, unit, /, *args, **kwargs) -> tuple[Prepared, EarlyRequest]:
    """Run ``unit`` (``prepare``, or a caller's unit around it, given ``early=``) on a
    database thread; return what it prepared and its early LLM request, for ``launch``.

    The request is closed unread if the unit fails or prepares no reply to write (a
    duplicate). A caller cancelled while the unit runs (its client left) does not undo
    what the unit stores: the reply is launched once it is stored, as the reply of a
    client that leaves later goes on.
    """
    early = EarlyRequest(engine.loop)
    work = asyncio.ensure_future(db.run(unit, *args, early=early, **kwargs))
    try:
        prepared = await asyncio.shield(work)
    except asyncio.CancelledError:
        # (Called at once, on the loop's next turn, if the unit has already ended.)
        work.add_done_callback(functools.partial(_launch_unwatched, engine, early))
        raise
    except BaseException:
        early.cancel()
        raise
    if not prepared.startable:
        early.cancel()
    return prepared, early


def _launch_unwatched(engine: Engine, early: EarlyRequest, work: asyncio.Future) -> None:
    """Launch the reply a unit stored for a caller that has gone (``store``)."""
    if work.cancelled() or work.exception() is not None:
        early.cancel()
        return
    prepared = work.result()
    if prepared.startable:
        engine.launch(prepared.reply, prepared.context, early=early)
    else:
        early.cancel()


def send_sync(*, user, **fields) -> services.Reply:
    """Store a message and start its reply from sync code (a DRF view, a command).

    The reply starts once the caller's transaction commits, on the server's loop when
    there is one here, else on a background loop.
    """
    engine = Engine.for_sync()
    prepared = prepare(user=user, writing=engine.writing(), **fields)
    if prepared.startable:
        reply, context = prepared.reply, prepared.context
        request_id = current_request_id()  # the callback runs in the loop's context
        transaction.on_commit(
            lambda: engine.loop.call_soon_threadsafe(
                lambda: engine.launch(reply, context, request_id=request_id)
            )
        )
    return prepared.reply


async def stop(*, user, session_id) -> bool:
    """Stop the reply in flight in one of ``user``'s conversations; return if one was."""
    session = await db.run(selectors.session_get, user=user, session_id=session_id)
    return await Engine.current().stop(str(session.pk))


def stop_sync(*, user, session_id) -> bool:
    """``stop`` from sync code: the engine that writes replies started from here."""
    session = selectors.session_get(user=user, session_id=session_id)
    engine = Engine.for_sync()
    future = asyncio.run_coroutine_threadsafe(engine.stop(str(session.pk)), engine.loop)
    return future.result(SYNC_TIMEOUT)


async def subscribe(*, user, session_id, watcher: Watcher) -> str:
    """Let ``watcher`` follow one of ``user``'s conversations (or one they joined as an
    operator); return its id.

    It gets the latest reply: a live one so far and then every frame (wherever it is
    written), or a finished one as stored (its text, then ``done`` or ``error``).
    """
    session = await db.run(selectors.session_readable, user=user, session_id=session_id)
    session_key = str(session.pk)
    await follow(Engine.current(), session_key, watcher)
    return session_key


async def follow(engine: Engine, session: str, watcher: Watcher) -> None:
    """Let ``watcher`` follow a conversation whose access was checked; catch it up first.

    A live reply (written here, or elsewhere and relayed) comes as the text so far and
    then every frame. A reply left streaming by a dead writer is ended as interrupted
    here and now. A finished reply is replayed as stored: its text, then how it ended.
    """
    feed = await engine.watch(session, watcher)
    if feed.live_reply is not None:
        return  # the attach delivered the reply so far
    latest = await db.run(_latest_reply, session)
    if latest is not None and latest.streaming:
        if engine.relay is not None and await engine.relay.request_watch(session):
            return  # its writer streams it into the feed, the reply so far first
        if feed.live_reply is not None:
            return
        settled = await db.run(
            services.replies_settle_abandoned, writing=engine.writing(), session_id=session
        )
        for message_id, _ in settled:
            # The others watching it hear that it ended; this watcher gets it replayed.
            engine.announce(
                events.error(session, message_id, services.INTERRUPTED, "interrupted"),
                exclude=watcher,
            )
        latest = await db.run(_latest_reply, session)
    if latest is None or feed.live_reply is not None:
        return
    for event in latest.replay:
        watcher.deliver(event)


@dataclass(frozen=True)
class _Latest:
    streaming: bool
    replay: list


def _latest_reply(session: str) -> _Latest | None:
    """Read a conversation's latest reply and, when it is final, the events replaying it.

    Sync, on a database thread: rendering a long reply's Markdown takes tens of ms.
    """
    state = selectors.reply_state(session_id=session)
    if state is None:
        return None
    if state["status"] == Message.Status.STREAMING:
        # Written by a process that did not answer: show the text saved so far.
        saved = state["content"]
        return _Latest(True, [events.token(session, state["pk"], saved, 0)] if saved else [])
    return _Latest(False, stored_reply_events(session, state))


def stored_reply_events(session: str, state: dict) -> list[events.Event]:
    """Return the events that replay a final stored reply: its text, then how it ended."""
    replay = [events.token(session, state["pk"], state["content"], 0)]
    if state["status"] == Message.Status.ERROR:
        error = state["error"] or "The reply failed."
        code = "interrupted" if error == services.INTERRUPTED else "error"
        replay.append(events.error(session, state["pk"], error, code))
    else:
        replay.append(
            events.done(
                session,
                state["pk"],
                html=render_markdown(state["content"]),
                status=state["status"],
                usage=None,
                length=len(state["content"]),
            )
        )
    return replay


def _conversations_deleted(sender, *, session_ids, **kwargs) -> None:
    """Stop deleted conversations' replies and end their subscriptions, everywhere."""
    engines = Engine.running()
    if not engines and Engine.shared():
        engines = [Engine.for_sync()]  # no server here: still tell the other processes
    for engine in engines:
        engine.loop.call_soon_threadsafe(engine.conversations_deleted, list(session_ids))


signals.conversations_deleted.connect(_conversations_deleted, dispatch_uid="parlor.streaming")


def _conversation_news(sender, *, session_id, message=None, name="", participant=None, **kw):
    """Tell a conversation's watchers, everywhere, what a person did in it (SPEC 4.6)."""
    if message is not None:
        event = events.person_message(session_id, message, name=name)
    else:
        event = events.participant(session_id, **participant)
    engines = Engine.running()
    if not engines and Engine.shared():
        engines = [Engine.for_sync()]  # no server here: still tell the other processes
    for engine in engines:
        engine.loop.call_soon_threadsafe(engine.announce, event)


signals.conversation_news.connect(_conversation_news, dispatch_uid="parlor.streaming.news")


def settle_abandoned_sync() -> int:
    """End the replies whose writer died, from sync code (a command); return how many."""
    engine = Engine.for_sync()
    future = asyncio.run_coroutine_threadsafe(engine.settle_abandoned(), engine.loop)
    return future.result(SYNC_TIMEOUT)


def wait_idle_sync(timeout: float = 10.0) -> None:
    """Wait until the replies and jobs started from sync code have finished (tests)."""
    engine = Engine.for_sync()
    asyncio.run_coroutine_threadsafe(engine.wait_idle(timeout), engine.loop).result(timeout + 5)


def summarize_sync(*, session_id, force: bool = False) -> bool:
    """Bring one conversation's summary up to date from sync code; return if it changed."""
    engine = Engine.for_sync()
    future = asyncio.run_coroutine_threadsafe(
        engine.summarize(str(session_id), force=force), engine.loop
    )
    return future.result(120)
