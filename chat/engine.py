"""The streaming engine: one background task per reply, not tied to any connection.

A generation streams the LLM's reply, coalesces its tokens into frames every
``FRAME_INTERVAL`` seconds and sends them to the session's channel-layer group, saves the
partial content every ``SAVE_INTERVAL`` seconds (so a reply costs a bounded number of
writes, not one per token) and finishes the message as complete, stopped or error.

Every generation also listens on its own channel in the session's engine group, so any
process sharing the channel layer can stop it or ask it for the reply so far (the
snapshot a reconnecting socket starts from); token events carry their character
``offset`` so a subscriber joins a reply with no gap and no duplicate.
"""

import asyncio
import contextlib
import contextvars
import logging
import os
import threading
import time
import uuid

from asgiref.sync import SyncToAsync, async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import OperationalError, close_old_connections, connections, transaction

from . import llm, prompting, selectors, services, tools
from .models import ChatSession, Message
from .rendering import render_markdown

logger = logging.getLogger(__name__)

FRAME_INTERVAL = 0.04
SAVE_INTERVAL = 1.5
# A live reply writes at least every HEARTBEAT_INTERVAL seconds; a streaming row not
# written for ABANDONED_AFTER (twice that, services.py) has no live writer, and the sweep
# marks rows after STALE_AFTER. Keep HEARTBEAT_INTERVAL well below both.
HEARTBEAT_INTERVAL = 10.0
STALE_AFTER = 45.0
MAX_TOOL_ROUNDS = 3
FINISH_TIMEOUT = 10.0
DB_ATTEMPTS = 6

_generations: dict[str, "Generation"] = {}
_tasks: set[asyncio.Task] = set()
_summarizing: set[str] = set()
_background: asyncio.AbstractEventLoop | None = None
_background_lock = threading.Lock()
_recovery_started = False
_recovery_lock = threading.Lock()


def _key(session_id) -> str:
    return uuid.UUID(str(session_id)).hex


def session_group(session_id) -> str:
    """Return the channel-layer group that browsers of a session listen on."""
    return f"chat.session.{_key(session_id)}"


def engine_group(session_id) -> str:
    """Return the group the generation of a session listens on for stop and snapshot."""
    return f"chat.engine.{_key(session_id)}"


def _read(func):
    # Pure reads may run on any thread: they do not need the write thread's ordering.
    return sync_to_async(_closing(_retrying(func)), thread_sensitive=False)


def _write(func):
    """Run an engine write on a pool thread, not on the shared thread-sensitive one.

    One slow write (a busy SQLite, an exhausted PostgreSQL pool) must not stall every
    other stream and socket of the process; a generation awaits its own writes in order.
    """
    return sync_to_async(_closing(_retrying(func)), thread_sensitive=False)


def _closing(func):
    def wrapper(*args, **kwargs):
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            # Pool threads live on: give the connection back rather than keep one per thread.
            connections.close_all()

    return wrapper


def _retrying(func):
    """Retry a statement that met a lock (SQLite's "database is locked") a few times.

    A reply's final write must not be lost to a momentary lock held by another writer.
    """

    def wrapper(*args, **kwargs):
        for attempt in range(DB_ATTEMPTS):
            try:
                return func(*args, **kwargs)
            except OperationalError as exc:
                if attempt == DB_ATTEMPTS - 1 or services.is_pool_timeout(exc):
                    raise
                time.sleep(0.02 * (attempt + 1))
        raise AssertionError("unreachable")

    return wrapper


def _spawn(coro, *, loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Task:
    """Run ``coro`` as a task that outlives whoever started it."""
    loop = loop or asyncio.get_running_loop()
    # A fresh context: the task must not inherit a request's thread-sensitive executor,
    # which is shut down when that request or socket ends.
    task = loop.create_task(coro, context=contextvars.Context())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


async def _group_send(group: str, message: dict) -> None:
    layer = get_channel_layer()
    try:
        await layer.group_send(group, message)
    except Exception:
        logger.warning("channel layer send to %s failed", group, exc_info=True)


async def _send_event(session_id, event: dict) -> None:
    await _group_send(session_group(session_id), {"type": "chat.event", "event": event})


class Generation:
    """One reply being written, with its buffer, publisher and control channel."""

    def __init__(self, reply: services.Reply, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.session_id = str(reply.session.pk)
        self.message_id = reply.assistant_message.pk
        self.user_id = reply.session.user_id
        self.first_message = reply.first_message
        self.first_content = reply.user_message.content
        self.parts: list[str] = []
        self.length = 0
        self.sent_length = 0
        self.saved_length = 0
        self.outbox: list[dict] = []
        self.wake = asyncio.Event()
        self.closed = False
        self.started = False
        self.stopping = False
        self.deleted = False
        self.finishing = False
        self.last_frame = 0.0
        self.last_save = time.monotonic()
        self.save_task: asyncio.Task | None = None
        self.task: asyncio.Task | None = None
        self.control_channel: str | None = None
        self.tools_used: list[dict] = []
        self.usage = llm.Usage()
        self.frames = 0
        self.writes = 0

    def text(self) -> str:
        """Return the reply so far (joining the pieces once, not per token)."""
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    def append(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)
        self.wake.set()

    def emit(self, event: dict) -> None:
        """Queue a non-token event; it goes out after the tokens before it."""
        self.outbox.append(event)
        self.wake.set()

    def request_stop(self) -> None:
        self.stopping = True
        # A task cancelled before its first step would never save its end: run() checks
        # ``stopping`` when it starts instead.
        if self.started and self.task is not None and not self.task.done() and not self.finishing:
            self.task.cancel()

    async def _flush_tokens(self) -> None:
        if self.sent_length == self.length:
            return
        offset = self.sent_length
        chunk = self.text()[offset:]
        self.sent_length = self.length
        self.last_frame = self.loop.time()
        self.frames += 1
        await _send_event(
            self.session_id,
            {
                "type": "token",
                "session": self.session_id,
                "message": self.message_id,
                "content": chunk,
                "offset": offset,
            },
        )

    def _maybe_save(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.save_task is not None and not self.save_task.done():
            return
        changed = self.length != self.saved_length
        if force or (changed and now - self.last_save >= SAVE_INTERVAL):
            self.last_save = now
            self.saved_length = self.length
            self.writes += 1
            self.save_task = _spawn(
                _write(services.reply_save_progress)(
                    message_id=self.message_id, content=self.text()
                ),
                loop=self.loop,
            )

    async def publish(self) -> None:
        """Send coalesced token frames and queued events until the reply is closed."""
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), HEARTBEAT_INTERVAL)
            except TimeoutError:
                # A heartbeat write tells crash recovery this reply is still alive.
                self._maybe_save(force=True)
                continue
            self.wake.clear()
            wait = self.last_frame + FRAME_INTERVAL - self.loop.time()
            if wait > 0 and not self.outbox and not self.closed:
                await asyncio.sleep(wait)
            await self._flush_tokens()
            while self.outbox:
                await self._flush_tokens()
                await _send_event(self.session_id, self.outbox.pop(0))
            if not self.closed:
                self._maybe_save()
            elif self.sent_length == self.length and not self.outbox:
                return

    async def control(self) -> None:
        """Answer stop and snapshot requests sent to the session's engine group."""
        layer = get_channel_layer()
        channel = self.control_channel = await layer.new_channel()
        await layer.group_add(engine_group(self.session_id), channel)
        try:
            while True:
                try:
                    message = await layer.receive(channel)
                except Exception:
                    # A broken connection to the layer must not end the reply itself.
                    logger.warning("engine control receive failed", exc_info=True)
                    await asyncio.sleep(0.5)
                    continue
                kind = message.get("type")
                if kind == "engine.close":
                    return
                if kind == "engine.stop":
                    self.deleted = self.deleted or bool(message.get("deleted"))
                    self.request_stop()
                elif kind == "engine.snapshot" and message.get("reply_channel"):
                    if self.finishing:
                        continue  # the subscriber falls back to the stored reply
                    await layer.send(message["reply_channel"], self.snapshot())
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(layer.group_discard(engine_group(self.session_id), channel))

    async def _close_control(self, controller: asyncio.Task) -> None:
        """End the control loop by a message, not by cancelling its receive.

        channels-redis shares one blocking pop among a process's receivers; cancelling
        a receive at the wrong moment can drop a message meant for another channel.
        """
        if self.control_channel is not None and not controller.done():
            with contextlib.suppress(Exception):
                await get_channel_layer().send(self.control_channel, {"type": "engine.close"})
                await asyncio.wait_for(asyncio.shield(controller), 2.0)
        if not controller.done():
            controller.cancel()

    def snapshot(self) -> dict:
        return {
            "type": "chat.snapshot",
            "session": self.session_id,
            "message": self.message_id,
            "content": self.text(),
            "offset": 0,
            "streaming": True,
        }

    async def run(self) -> None:
        self.started = True
        publisher = _spawn(self.publish(), loop=self.loop)
        controller = _spawn(self.control(), loop=self.loop)
        status, error = Message.Status.COMPLETE, ""
        try:
            if self.stopping:
                raise asyncio.CancelledError
            await self._generate()
        except llm.LLMError as exc:
            status, error = Message.Status.ERROR, exc.reason
        except asyncio.CancelledError:
            if self.stopping:
                status = Message.Status.STOPPED
            else:
                status, error = Message.Status.ERROR, "interrupted"
        except Exception:
            logger.exception("generation of message %s failed", self.message_id)
            status, error = Message.Status.ERROR, "The reply failed unexpectedly."
        self.finishing = True
        try:
            await self._finish(status, error, publisher)
        finally:
            await self._close_control(controller)
            if _generations.get(_key(self.session_id)) is self:
                del _generations[_key(self.session_id)]
        if status == Message.Status.COMPLETE:
            _spawn(summarize_session(self.session_id), loop=self.loop)

    async def _generate(self) -> None:
        context = await _read(prompting.reply_context)(
            session_id=self.session_id, message_id=self.message_id
        )
        messages = list(context.messages)
        for round_ in range(MAX_TOOL_ROUNDS + 1):
            offered = context.tools if round_ < MAX_TOOL_ROUNDS else None
            calls: list[llm.ToolCall] = []
            async with contextlib.aclosing(
                llm.stream_chat(messages=messages, model=context.model, tools=offered)
            ) as stream:
                async for event in stream:
                    if event.text:
                        self.append(event.text)
                    if event.usage is not None:
                        self.usage.prompt_tokens += event.usage.prompt_tokens
                        self.usage.completion_tokens += event.usage.completion_tokens
                    if event.tool_calls:
                        calls = event.tool_calls
            if not calls or context.run_id is None:
                return
            messages.append(
                {
                    "role": "assistant",
                    "content": self.text() or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments or "{}"},
                        }
                        for call in calls
                    ],
                }
            )
            for call in calls:
                self.emit(
                    {
                        "type": "status",
                        "session": self.session_id,
                        "message": self.message_id,
                        "content": tools.STATUS_TEXT.get(call.name, f"Running {call.name}…"),
                    }
                )
                arguments = call.parsed_arguments()
                result = await _read(tools.run_tool)(
                    run_id=context.run_id, name=call.name, arguments=arguments
                )
                self.tools_used.append(
                    {"name": call.name, "arguments": arguments, "result": tools.short(result)}
                )
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})

    async def _finish(self, status: str, error: str, publisher: asyncio.Task) -> None:
        if self.save_task is not None:
            await asyncio.gather(self.save_task, return_exceptions=True)
        content = self.text()
        usage = {
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
        }
        stored = True
        try:
            stored = await _write(services.reply_finish)(
                message_id=self.message_id,
                content=content,
                status=status,
                error=error,
                prompt_tokens=self.usage.prompt_tokens or None,
                completion_tokens=self.usage.completion_tokens or None,
                tools_used=self.tools_used,
            )
            self.writes += 1
        except Exception:
            logger.exception("could not save the end of message %s", self.message_id)
        if self.deleted or not stored:
            # The message was deleted, or another process already ended it (and said so):
            # a `done` now would describe a message the tabs no longer have.
            pass
        elif status == Message.Status.ERROR:
            self.emit(
                {
                    "type": "error",
                    "session": self.session_id,
                    "message": self.message_id,
                    "error": error,
                }
            )
        else:
            self.emit(
                {
                    "type": "done",
                    "session": self.session_id,
                    "message": self.message_id,
                    "html": render_markdown(content),
                    "usage": usage,
                    "status": status,
                    "length": len(content),
                }
            )
        self.closed = True
        self.wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(publisher), FINISH_TIMEOUT)
        except (TimeoutError, asyncio.CancelledError):
            publisher.cancel()


async def _title_job(session_id: str, content: str) -> None:
    """Generate a title in the background; the provisional title stays on failure."""
    try:
        title = await llm.complete(
            messages=prompting.title_messages(content),
            model=settings.LLM_TITLE_MODEL,
            max_tokens=30,
        )
    except llm.LLMError as exc:
        logger.info("title generation for %s failed: %s", session_id, exc.reason)
        return
    stored = await _write(_store_title)(session_id=session_id, title=title)
    if stored:
        await _send_event(session_id, {"type": "title", "session": session_id, "title": stored})


def _store_title(*, session_id, title: str) -> str | None:
    if not services.conversation_set_auto_title(session_id=session_id, title=title):
        return None
    return ChatSession.objects.filter(pk=session_id).values_list("title", flat=True).first()


async def summarize_session(session_id) -> bool:
    """Bring the rolling summary of a conversation up to date; return if it changed."""
    key = _key(session_id)
    if key in _summarizing:
        return False
    _summarizing.add(key)
    try:
        job = await _read(prompting.summary_job)(session_id=session_id)
        if job is None:
            return False
        summary = await llm.complete(
            messages=job.messages, model=settings.LLM_SUMMARY_MODEL, max_tokens=400
        )
        if not summary.strip():
            return False
        await _write(services.conversation_set_summary)(
            session_id=session_id,
            summary=summary.strip(),
            until_message_id=job.until_id,
            message_count=job.message_count,
        )
        return True
    except llm.LLMError as exc:
        logger.info("summary of %s failed: %s", session_id, exc.reason)
        return False
    finally:
        _summarizing.discard(key)


def _launch(reply: services.Reply, loop: asyncio.AbstractEventLoop) -> None:
    key = _key(reply.session.pk)
    current = _generations.get(key)
    if current is not None and not current.finishing:
        return
    for message_id in reply.interrupted:
        _spawn(_send_interrupted(reply.session.pk, message_id), loop=loop)
    generation = Generation(reply, loop)
    _generations[key] = generation
    generation.task = _spawn(generation.run(), loop=loop)
    if reply.first_message:
        _spawn(_title_job(str(reply.session.pk), reply.user_message.content), loop=loop)


def _asgi_loop() -> asyncio.AbstractEventLoop | None:
    """Return the server's event loop when called from a sync view running under ASGI."""
    threadlocal = SyncToAsync.threadlocal
    if getattr(threadlocal, "main_event_loop_pid", None) != os.getpid():
        return None
    loop = getattr(threadlocal, "main_event_loop", None)
    return loop if loop is not None and loop.is_running() else None


def _background_loop() -> asyncio.AbstractEventLoop:
    """Return the process-wide loop for generations started from sync code."""
    global _background
    with _background_lock:
        if _background is None or not _background.is_running():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve():
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=serve, name="parlor-engine", daemon=True).start()
            ready.wait(5)
            _background = loop
        return _background


def start_generation(reply: services.Reply) -> None:
    """Start writing the reply of ``reply`` in the background and return at once.

    From async code the generation runs on the running loop (the ASGI server's, so the
    in-memory channel layer reaches its sockets); from a sync view under ASGI it runs
    on the server's loop; from plain sync code on a process-wide background loop, after
    the caller's transaction commits. A duplicate reply starts nothing.
    """
    if reply.duplicate or reply.assistant_message is None:
        return
    if reply.assistant_message.status != Message.Status.STREAMING:
        return
    ensure_recovery()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None:
        _launch(reply, running)
        return
    target = _asgi_loop() or _background_loop()
    transaction.on_commit(lambda: target.call_soon_threadsafe(_launch, reply, target))


def _streaming_message_id(*, session_id) -> int | None:
    return (
        Message.objects.filter(session_id=session_id, status=Message.Status.STREAMING)
        .values_list("pk", flat=True)
        .first()
    )


async def _send_interrupted(session_id, message_id: int) -> None:
    await _send_event(
        session_id,
        {
            "type": "error",
            "session": str(session_id),
            "message": message_id,
            "error": "interrupted",
        },
    )


async def afinish_abandoned(*, session_id) -> bool:
    """End as interrupted a streaming reply that no live process writes; return if one was.

    A reply this process writes is alive. One written elsewhere heartbeats at least every
    HEARTBEAT_INTERVAL, so a row untouched for services.ABANDONED_AFTER has no writer.
    Open tabs get an ``error`` event.
    """
    generation = _generations.get(_key(session_id))
    if generation is not None and not generation.finishing:
        return False
    ended = await _write(services.replies_interrupt_abandoned)(session_id=session_id)
    for message_id in ended:
        await _send_interrupted(session_id, message_id)
    return bool(ended)


async def astop_generation(*, user, session_id) -> bool:
    """Stop the reply in flight in a session, in whichever process writes it.

    Return whether one was in flight. Raise NotFound for another user's session. A reply
    no live process writes is ended as interrupted here.
    """
    session = await _read(selectors.session_get)(user=user, session_id=session_id)
    generation = _generations.get(_key(session.pk))
    if generation is not None:
        if generation.finishing:
            return False
        generation.loop.call_soon_threadsafe(generation.request_stop)
        return True
    if await _read(_streaming_message_id)(session_id=session.pk) is None:
        return False
    if await afinish_abandoned(session_id=session.pk):
        return True
    await _group_send(engine_group(session.pk), {"type": "engine.stop"})
    return True


def _stop_deleted_here(session_ids) -> None:
    for session_id in session_ids:
        generation = _generations.get(_key(session_id))
        if generation is not None and not generation.finishing:
            generation.deleted = True
            generation.request_stop()


async def _astop_deleted(session_ids) -> None:
    for session_id in session_ids:
        generation = _generations.get(_key(session_id))
        if generation is not None:
            generation.loop.call_soon_threadsafe(_stop_deleted_here, [session_id])
        else:
            # Maybe written by another process sharing the channel layer.
            await _group_send(engine_group(session_id), {"type": "engine.stop", "deleted": True})


def stop_deleted(*, session_ids) -> None:
    """Stop the replies of deleted sessions, wherever they are written; tell no tab."""
    try:
        async_to_sync(_astop_deleted)(list(session_ids))
    except RuntimeError:
        # Called on a thread running an event loop: stop this process's generations only.
        for session_id in session_ids:
            generation = _generations.get(_key(session_id))
            if generation is not None:
                generation.loop.call_soon_threadsafe(_stop_deleted_here, [session_id])


def stop_generation(*, user, session_id) -> bool:
    """Stop the reply in flight in a session (from sync code); see ``astop_generation``."""
    return async_to_sync(astop_generation)(user=user, session_id=session_id)


async def request_snapshot(*, session_id, reply_channel: str) -> None:
    """Ask the generation of a session, wherever it runs, to send its text so far."""
    await _group_send(
        engine_group(session_id), {"type": "engine.snapshot", "reply_channel": reply_channel}
    )


def reply_state(*, session_id) -> dict | None:
    """Return the latest reply of a session as stored: message, content, status, error."""
    message = (
        Message.objects.filter(session_id=session_id, role=Message.Role.ASSISTANT)
        .order_by("-created_at", "-id")
        .values("pk", "content", "status", "error")
        .first()
    )
    if message is None:
        return None
    return {
        "message": message["pk"],
        "content": message["content"],
        "status": message["status"],
        "error": message["error"],
    }


async def _send_all_interrupted(rows) -> None:
    for message_id, session_id in rows:
        await _send_interrupted(session_id, message_id)


def recover_interrupted() -> int:
    """Mark replies whose writer stopped saving (a crashed process) as interrupted.

    Open tabs of those conversations get an ``error`` event. Return how many were marked.
    """
    try:
        rows = services.replies_interrupt(stale_after=STALE_AFTER)
    finally:
        connections.close_all()
    if rows:
        try:
            async_to_sync(_send_all_interrupted)(rows)
        except Exception:
            logger.warning("could not announce %d interrupted replies", len(rows), exc_info=True)
    return len(rows)


def ensure_recovery() -> None:
    """Start, once per process, the sweep that marks crashed processes' replies.

    Every ``settings.RECOVERY_INTERVAL`` seconds; 0 disables it (the test settings: tests
    call ``recover_interrupted`` themselves, so no sweep races them).
    """
    global _recovery_started
    interval = float(getattr(settings, "RECOVERY_INTERVAL", 60))
    with _recovery_lock:
        if _recovery_started or interval <= 0:
            return
        _recovery_started = True

    def sweep():
        while True:
            try:
                count = recover_interrupted()
                if count:
                    logger.warning("marked %d interrupted replies", count)
            except Exception as exc:
                logger.debug("interrupted-reply sweep failed: %s", exc)
            time.sleep(interval)

    threading.Thread(target=sweep, name="parlor-recovery", daemon=True).start()


async def drain(timeout: float = 10.0) -> None:
    """Wait for this loop's generations and background jobs to finish (tests, shutdown)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pending = [t for t in _tasks if t.get_loop() is loop and not t.done()]
        if not pending or loop.time() >= deadline:
            return
        await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
