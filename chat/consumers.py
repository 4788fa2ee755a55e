"""The chat WebSocket (``/ws/chat/``): send, stop and subscribe (SPEC 4.2).

The consumer only parses frames and calls the services and the engine. A reply is not
tied to the socket that started it; a socket that subscribes gets the reply so far (a
snapshot from the engine writing it, wherever that runs, or the database) and then the
live token frames, trimmed by their offsets so nothing is missing or repeated.
"""

import asyncio
import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from . import engine, ratelimit, selectors, services
from .exceptions import DomainError
from .models import Message
from .rendering import render_markdown

logger = logging.getLogger(__name__)

SNAPSHOT_TIMEOUT = 1.0
FRAME_MARGIN = 4096
FIELDS = {
    "send": ({"content"}, {"type", "session", "model", "run", "content", "client_id"}),
    "stop": ({"session"}, {"type", "session"}),
    "subscribe": ({"session"}, {"type", "session"}),
}


class FrameError(Exception):
    pass


class _Stream:
    """What one socket has forwarded of one session's current reply."""

    def __init__(self):
        self.message: int | None = None
        self.offset = 0
        self.waiting = False
        self.buffer: list[dict] = []
        self.finished: set[int] = set()


class ChatConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.user = user
        self.streams: dict[str, _Stream] = {}
        self.groups_joined: set[str] = set()
        engine.ensure_recovery()
        # A client authenticating by subprotocol (chat.auth) is answered with "parlor".
        await self.accept(subprotocol=self.scope.get("accept_subprotocol"))

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    # Client frames -------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        # JSON escaping can make each character up to six (\uXXXX): bound the raw frame
        # loosely; services.check_message_content enforces the real length limit.
        limit = 6 * settings.MAX_MESSAGE_CHARS + FRAME_MARGIN
        raw = text_data if text_data is not None else bytes_data
        if raw is None or len(raw) > limit:
            await self._error(f"The frame is larger than {limit:,} characters.")
            return
        try:
            frame = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            await self._error("The frame is not valid JSON.")
            return
        try:
            kind = self._check(frame)
        except FrameError as exc:
            session = frame.get("session") if isinstance(frame, dict) else None
            await self._error(str(exc), session=session)
            return
        try:
            await getattr(self, f"_on_{kind}")(frame)
        except DomainError as exc:
            await self._error(exc.message, session=frame.get("session"), code=exc.code)
        except Exception:
            # One failed frame must not take the socket (and its other streams) down.
            logger.exception("chat frame %s failed", kind)
            await self._error("Something went wrong; please try again.", code="server_error")

    def _check(self, frame) -> str:
        if not isinstance(frame, dict):
            raise FrameError("A frame must be a JSON object.")
        kind = frame.get("type")
        if kind not in FIELDS:
            raise FrameError("Unknown frame type; expected send, stop or subscribe.")
        required, allowed = FIELDS[kind]
        missing = sorted(required - frame.keys())
        if missing:
            raise FrameError(f"The {kind} frame is missing: {', '.join(missing)}.")
        unknown = sorted(frame.keys() - allowed)
        if unknown:
            raise FrameError(f"Unknown fields in the {kind} frame: {', '.join(unknown)}.")
        for name in ("session", "client_id", "content"):
            value = frame.get(name)
            if value is not None and not isinstance(value, str):
                raise FrameError(f"{name} must be a string.")
        for name in ("model", "run"):
            value = frame.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | str)):
                raise FrameError(f"{name} must be an integer id.")
        return kind

    async def _on_send(self, frame):
        try:
            await database_sync_to_async(ratelimit.check_send_rate)(user_id=self.user.pk)
        except ratelimit.RateLimited as exc:
            await self._error(exc.message, session=frame.get("session"), code=exc.code)
            return
        reply = await database_sync_to_async(services.reply_start)(
            user=self.user,
            content=frame["content"],
            session_id=frame.get("session"),
            model_id=frame.get("model"),
            run_id=frame.get("run"),
            client_id=frame.get("client_id"),
        )
        session_id = str(reply.session.pk)
        await self.send_json(
            {
                "type": "session",
                "session": session_id,
                "title": reply.session.title,
                "created": reply.session_created,
                "message": reply.assistant_message.pk if reply.assistant_message else None,
                "user_message": reply.user_message.pk,
                "duplicate": reply.duplicate,
            }
        )
        await self._join(session_id)
        stream = self.streams.setdefault(session_id, _Stream())
        if reply.duplicate:
            # The reply already exists: show it as a subscriber would.
            await self._on_subscribe({"session": session_id})
            return
        stream.message = reply.assistant_message.pk
        stream.offset = 0
        stream.waiting = False
        stream.buffer.clear()
        engine.start_generation(reply)

    async def _on_stop(self, frame):
        await engine.astop_generation(user=self.user, session_id=frame["session"])

    async def _on_subscribe(self, frame):
        session = await database_sync_to_async(selectors.session_get)(
            user=self.user, session_id=frame["session"]
        )
        session_id = str(session.pk)
        await self._join(session_id)
        # An explicit subscribe asks for the reply from its start, even on this socket.
        stream = self.streams[session_id] = _Stream()
        state = await database_sync_to_async(engine.reply_state)(session_id=session_id)
        if state is None:
            return
        if state["status"] != Message.Status.STREAMING:
            await self._replay_stored(session_id, stream, state)
            return
        stream.waiting = True
        stream.buffer.clear()
        await engine.request_snapshot(session_id=session_id, reply_channel=self.channel_name)
        asyncio.get_running_loop().call_later(
            SNAPSHOT_TIMEOUT,
            lambda: asyncio.ensure_future(self._snapshot_timeout(session_id)),
        )

    async def _snapshot_timeout(self, session_id):
        try:
            await self.channel_layer.send(
                self.channel_name, {"type": "chat.snapshot_timeout", "session": session_id}
            )
        except Exception:
            logger.debug("socket gone before its snapshot timeout", exc_info=True)

    # Channel-layer messages ----------------------------------------------------------

    async def chat_event(self, message):
        event = message["event"]
        stream = self.streams.get(event.get("session"))
        if stream is None:
            return
        if stream.waiting:
            stream.buffer.append(event)
            return
        await self._forward(stream, event)

    async def chat_snapshot(self, message):
        stream = self.streams.get(message["session"])
        if stream is None or not stream.waiting:
            return
        stream.waiting = False
        stream.message = message["message"]
        stream.offset = 0
        await self._forward(
            stream,
            {
                "type": "token",
                "session": message["session"],
                "message": message["message"],
                "content": message["content"],
                "offset": 0,
            },
        )
        await self._drain(stream)

    async def chat_snapshot_timeout(self, message):
        session_id = message["session"]
        stream = self.streams.get(session_id)
        if stream is None or not stream.waiting:
            return
        # No engine answered: the reply is written by no live process, or has just ended.
        stream.waiting = False
        try:
            state = await database_sync_to_async(engine.reply_state)(session_id=session_id)
        except Exception:
            logger.exception("could not read the stored reply of %s", session_id)
            await self._error("The reply could not be loaded; please retry.", session=session_id)
            return
        if (
            state is not None
            and state["status"] == Message.Status.STREAMING
            and await engine.afinish_abandoned(session_id=session_id)
        ):
            # Left streaming by a dead process: now ended as interrupted.
            state = await database_sync_to_async(engine.reply_state)(session_id=session_id)
        if state is not None:
            await self._replay_stored(session_id, stream, state)
        await self._drain(stream)

    # Helpers ------------------------------------------------------------------------

    async def _replay_stored(self, session_id, stream, state):
        stream.message = state["message"]
        stream.offset = 0
        await self._forward(
            stream,
            {
                "type": "token",
                "session": session_id,
                "message": state["message"],
                "content": state["content"],
                "offset": 0,
            },
        )
        if state["status"] == Message.Status.ERROR:
            await self._forward(
                stream,
                {
                    "type": "error",
                    "session": session_id,
                    "message": state["message"],
                    "error": state["error"] or "The reply failed.",
                },
            )
        elif state["status"] != Message.Status.STREAMING:
            await self._forward(
                stream,
                {
                    "type": "done",
                    "session": session_id,
                    "message": state["message"],
                    "html": render_markdown(state["content"]),
                    "usage": None,
                    "status": state["status"],
                },
            )

    async def _drain(self, stream):
        buffered, stream.buffer = stream.buffer, []
        for event in buffered:
            await self._forward(stream, event)

    async def _forward(self, stream, event):
        """Send an event to the client, trimming what it already has."""
        message = event.get("message")
        if message is not None and message in stream.finished:
            return
        if event["type"] == "token":
            if message != stream.message:
                stream.message = message
                stream.offset = 0
            start, text = event.get("offset", stream.offset), event["content"]
            if start + len(text) <= stream.offset and text:
                return
            if start < stream.offset:
                text = text[stream.offset - start :]
                start = stream.offset
            if not text and start:
                return
            stream.offset = start + len(text)
            event = dict(event, content=text, offset=start)
        elif event["type"] in ("done", "error") and message is not None:
            stream.finished.add(message)
        await self.send_json(event)

    async def _join(self, session_id):
        group = engine.session_group(session_id)
        if group not in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)

    async def _error(self, text, *, session=None, code="invalid"):
        event = {"type": "error", "error": text, "code": code}
        if isinstance(session, str):
            event["session"] = session
        await self.send_json(event)
