"""One reply being written: read the LLM's stream, send frames, save, finish.

The first token goes out at once; later ones are coalesced into frames every
``FRAME_INTERVAL`` (about a display frame), so a 200-token reply that arrives in a
burst is a handful of writes to each socket. The text is saved by the engine's ticker
(at most every ``HEARTBEAT_INTERVAL``, and only while the reply lasts that long) and
once at the end: a reply costs a bounded number of writes, however many tokens it has.
"""

import asyncio
import contextlib
import logging

from chat import llm, metrics, services, tools
from chat.models import Message
from chat.rendering import render_markdown

from . import db, events
from .feeds import ReplyText

logger = logging.getLogger(__name__)

FRAME_INTERVAL = 0.016
# A live reply is written at least this often (its lease, services.REPLY_LEASE).
HEARTBEAT_INTERVAL = 2.0
MAX_TOOL_ROUNDS = 3
FINISH_ATTEMPTS = 3
assert HEARTBEAT_INTERVAL * 2 < services.REPLY_LEASE

UNEXPECTED = "The reply failed unexpectedly."
NOT_SAVED = "The reply could not be saved; please try again."


class EarlyRequest:
    """A reply's first LLM request, asked while the message is being stored.

    A send's unit of database work calls ``start`` (from its thread) once the turn is
    stored, before the transaction commits: the request travels while the commit does,
    and the unit hands back. Only the Generation launched after the commit reads its
    answer (``events``), so nothing is shown of a reply whose message is not stored. A
    send that fails or stores a duplicate ``cancel``s it, which closes the request.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.context = None
        self._stream = None
        self._first: asyncio.Task | None = None
        self._cancelled = False

    def start(self, context) -> None:
        """Ask the LLM for ``context``'s reply (from any thread)."""
        self.loop.call_soon_threadsafe(self._start, context)

    def _start(self, context) -> None:
        if self._cancelled:
            return  # the send was given up (it failed, or stored no reply to write) first
        self._close()  # a transaction retried after a start: its context is the new one
        self.context = context
        self._stream = llm.stream_chat(
            messages=context.messages, model=context.model, tools=context.tools
        )
        self._first = self.loop.create_task(_first_event(self._stream))
        self._first.add_done_callback(_retrieved)

    def started_for(self, context) -> bool:
        return self._stream is not None and self.context is context

    async def events(self):
        """The request's events, as ``llm.stream_chat`` yields them (read once)."""
        first, stream = self._first, self._stream
        self._first = self._stream = self.context = None
        try:
            try:
                event = await first
            except StopAsyncIteration:
                return
            yield event
            async for event in stream:
                yield event
        finally:
            if not first.done():
                first.cancel()  # the request ends with its task
            else:
                await stream.aclose()

    def cancel(self) -> None:
        """Close the request, and any started after, if nobody reads it (idempotent)."""
        self._cancelled = True
        self._close()

    def _close(self) -> None:
        first, stream = self._first, self._stream
        self._first = self._stream = self.context = None
        if first is None:
            return
        if not first.done():
            first.cancel()
        else:
            self.loop.create_task(stream.aclose())


async def _first_event(stream):
    return await stream.__anext__()


def _retrieved(task: asyncio.Task) -> None:
    """Mark a first read's failure as seen: its reader (if any) gets it when it awaits."""
    if not task.cancelled():
        task.exception()


class Generation:
    """The reply to one user message, written by this process."""

    def __init__(self, engine, reply: services.Reply, context, early: EarlyRequest | None = None):
        self.engine = engine
        # The first LLM request, if it was asked while the turn committed.
        self.early = early
        self.loop = engine.loop
        self.user_id = reply.session.user_id
        self.session = str(reply.session.pk)
        self.message_id = reply.assistant_message.pk
        self.user_message_id = reply.user_message.pk
        self.context = context
        self.counters = (reply.session.message_count, reply.session.summary_message_count)
        self.sent = ReplyText(self.message_id)
        self.pending: list[str] = []
        self.flush_handle: asyncio.TimerHandle | None = None
        self.last_flush = -1.0
        self.launched_at = self.written_at = self.loop.time()  # reply_start wrote the row
        self.saved_length = 0
        self.ending: str | None = None  # why it is being stopped: stopped, deleted, interrupted
        self.finishing = False
        self.started = False
        self.task: asyncio.Task | None = None
        self.tools_used: list[dict] = []
        self.usage = llm.Usage()
        self.frames = 0
        self.final: events.Event | None = None  # the done or error that ended it
        self.ttft: float | None = None
        # Work that waits for the first token (or the end, if none comes): a new
        # conversation's title request, so that building it does not delay the reply.
        self.after_first_token: list = []

    def __repr__(self):
        return f"<Generation {self.session} message={self.message_id}>"

    # Text and frames ------------------------------------------------------------------

    @property
    def length(self) -> int:
        return self.sent.length + sum(map(len, self.pending))

    def text(self) -> str:
        """Return the whole reply so far, sent or not."""
        if self.pending:
            return self.sent.text() + "".join(self.pending)
        return self.sent.text()

    def _take(self, text: str) -> None:
        self.pending.append(text)
        if self.flush_handle is None:
            wait = self.last_flush + FRAME_INTERVAL - self.loop.time()
            if wait <= 0:
                self.flush()
            else:
                self.flush_handle = self.loop.call_later(wait, self.flush)

    def flush(self) -> None:
        """Send the text not sent yet as one token frame."""
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        if not self.pending:
            return
        chunk = "".join(self.pending)
        self.pending.clear()
        self.last_flush = self.loop.time()
        self.frames += 1
        offset = self.sent.length
        if offset == 0:
            self.ttft = self.loop.time() - self.launched_at
            metrics.TTFT.observe(self.ttft)
        self.sent.put(chunk, offset)
        self.engine.publish(self, events.token(self.session, self.message_id, chunk, offset))
        if offset == 0:
            self._first_token_sent()

    def _first_token_sent(self) -> None:
        """Start what waited for the first token (once)."""
        waiting, self.after_first_token = self.after_first_token, []
        for start in waiting:
            start()

    def progress(self) -> str | None:
        """Return the text to save now if it changed since the last save, else None."""
        length = self.length
        if length == self.saved_length:
            return None
        self.saved_length = length
        return self.text()

    # Control ---------------------------------------------------------------------------

    def request_stop(self, reason: str = "stopped") -> bool:
        """Stop the reply; return False if it was already ending."""
        if self.finishing or self.ending is not None:
            return False
        self.ending = reason
        if self.started and self.task is not None and not self.task.done():
            # (A task cancelled before its first step would never run its ``finally``:
            # run() checks ``ending`` when it starts instead.)
            self.task.cancel()
        return True

    # The reply -------------------------------------------------------------------------

    async def run(self) -> None:
        self.started = True
        status, error, code = Message.Status.COMPLETE, "", "error"
        try:
            if self.ending is not None:
                raise asyncio.CancelledError
            await self._generate()
        except llm.LLMError as exc:
            status, error, code = Message.Status.ERROR, exc.reason, "upstream_error"
            metrics.UPSTREAM_ERRORS.labels(exc.kind).inc()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.ending is None:
                raise  # cancelled from outside (the loop is closing): nothing to save to
            if task is not None:
                task.uncancel()
            if self.ending == "interrupted":
                status, error, code = Message.Status.ERROR, services.INTERRUPTED, "interrupted"
            else:
                status = Message.Status.STOPPED
        except Exception:
            logger.exception("generation of message %s failed", self.message_id)
            status, error = Message.Status.ERROR, UNEXPECTED
        self.finishing = True
        if self.early is not None:
            self.early.cancel()  # stopped before it was read
            self.early = None
        self._first_token_sent()  # none came: what waited for it starts now
        try:
            await self._finish(status, error, code)
        finally:
            self.engine.ended(self)
            duration = self.loop.time() - self.launched_at
            metrics.REPLIES.labels(status).inc()
            metrics.REPLY_SECONDS.observe(duration)
            metrics.TOKENS.inc(self.usage.completion_tokens)
            logger.info(
                "reply %s ended %s: %d prompt + %d completion tokens, %d characters, "
                "first token after %s, %.0f ms",
                self.message_id,
                f"{status} ({code})" if status == Message.Status.ERROR else status,
                self.usage.prompt_tokens,
                self.usage.completion_tokens,
                self.sent.length,
                f"{self.ttft * 1000:.0f} ms" if self.ttft is not None else "none",
                duration * 1000,
            )

    async def _generate(self) -> None:
        context = self.context
        messages = list(context.messages)
        for round_ in range(MAX_TOOL_ROUNDS + 1):
            offered = context.tools if round_ < MAX_TOOL_ROUNDS else None
            calls: list[llm.ToolCall] = []
            if self.early is not None:
                stream, self.early = self.early.events(), None
            else:
                stream = llm.stream_chat(messages=messages, model=context.model, tools=offered)
            async with contextlib.aclosing(stream):
                async for event in stream:
                    if event.text:
                        first = self.frames == 0
                        self._take(event.text)
                        if first and self.frames:
                            # The watchers' tasks send the first token now, before
                            # this task reads on through what else has arrived.
                            await asyncio.sleep(0)
                    elif event.usage is not None:
                        self.usage.prompt_tokens += event.usage.prompt_tokens
                        self.usage.completion_tokens += event.usage.completion_tokens
                    elif event.tool_calls:
                        calls = event.tool_calls
            if not calls or context.run_id is None:
                return
            await self._run_tools(messages, calls)

    async def _run_tools(self, messages: list[dict], calls: list[llm.ToolCall]) -> None:
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
            self.flush()
            label = tools.STATUS_TEXT.get(call.name, "Looking something up…")
            self.engine.publish(self, events.status(self.session, self.message_id, label))
            arguments = call.parsed_arguments()
            result = await db.run(
                tools.run_tool, run_id=self.context.run_id, name=call.name, arguments=arguments
            )
            self.tools_used.append(
                {"name": call.name, "arguments": arguments or {}, "result": tools.short(result)}
            )
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})

    def _finish_unit(self, status: str, error: str, content: str) -> tuple[bool, str]:
        """Store the end of the reply; return whether stored and its rendered html."""
        stored = services.reply_finish(
            message_id=self.message_id,
            status=status,
            content=content,
            error=error,
            prompt_tokens=self.usage.prompt_tokens or None,
            completion_tokens=self.usage.completion_tokens or None,
            tools_used=self.tools_used,
        )
        # Rendering a long reply takes tens of milliseconds: here, not on the loop.
        html = render_markdown(content) if stored and status != Message.Status.ERROR else ""
        return stored, html

    async def _finish(self, status: str, error: str, code: str) -> None:
        self.flush()
        content = self.text()
        stored, html = None, ""
        for attempt in range(FINISH_ATTEMPTS):
            try:
                stored, html = await db.run(self._finish_unit, status, error, content)
                break
            except Exception:
                logger.warning(
                    "could not save the end of message %s (attempt %d)",
                    self.message_id,
                    attempt + 1,
                    exc_info=True,
                )
                await asyncio.sleep(0.25 * (attempt + 1))
        self.sent.live = False
        if self.ending == "deleted" or stored is False:
            # Deleted, or already ended by someone else (who said so): no done now.
            return
        if stored is None:
            status, error, code = Message.Status.ERROR, NOT_SAVED, "not_saved"
        if status == Message.Status.ERROR:
            event = events.error(self.session, self.message_id, error, code)
        else:
            usage = {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
            }
            event = events.done(
                self.session,
                self.message_id,
                html=html,
                status=status,
                usage=usage,
                length=len(content),
            )
        self.engine.publish(self, event)
        if status == Message.Status.COMPLETE and stored:
            self.engine.after_complete(self)
