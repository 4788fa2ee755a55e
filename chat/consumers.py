"""The chat WebSocket (``/ws/chat/``): send, edit, regenerate, stop and subscribe (SPEC 4.2,
4.6).

The consumer parses frames and calls the streaming engine; it is a watcher of the
conversations it sent into or subscribed to, and writes their events to the socket in
order from one outbox. A reply is not tied to the socket that started it.
"""

import asyncio
import logging
import uuid

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from config.logs import bind_request_id, scope_request_id

from . import metrics, streaming
from .exceptions import DomainError
from .streaming import events
from .text import parse_json

logger = logging.getLogger(__name__)

FRAME_MARGIN = 4096
# Frame type: (required fields, allowed fields).
FIELDS = {
    "send": (
        {"content"},
        {"type", "session", "model", "run", "content", "client_id", "temporary", "llm"},
    ),
    "edit": ({"message", "content"}, {"type", "message", "content", "client_id"}),
    "regenerate": ({"message"}, {"type", "message"}),
    "stop": ({"session"}, {"type", "session"}),
    "subscribe": ({"session"}, {"type", "session"}),
}


class FrameError(DomainError):
    """A client frame that is not well formed."""


class FrameFailed(DomainError):
    code = "server_error"
    default_message = "Something went wrong; please try again."


class ChatConsumer(AsyncWebsocketConsumer):
    # Events come from the engine's feeds, not from a channel-layer channel per socket.
    channel_layer_alias = None

    async def connect(self):
        bind_request_id(scope_request_id(self.scope))
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        if streaming.draining():
            await self.close(code=1013)  # "try again later": another worker takes it
            return
        self.user = user
        self.sessions: set[str] = set()
        self.outbox: asyncio.Queue[events.Event | None] = asyncio.Queue()
        self.writer = asyncio.create_task(self._write())
        # A client authenticating by subprotocol (chat.auth) is answered with "parlor".
        await self.accept(subprotocol=self.scope.get("accept_subprotocol"))
        metrics.SOCKETS_OPEN.inc()

    async def disconnect(self, code):
        if hasattr(self, "writer"):
            metrics.SOCKETS_OPEN.dec()
        engine = streaming.Engine.current()
        for session in getattr(self, "sessions", ()):
            engine.unwatch(session, self)
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.cancel()

    # The watcher: events in order, through one outbox -----------------------------------

    def deliver(self, event: events.Event) -> None:
        if event.kind == "error" and event.body.get("code") == "not_found" and event.session:
            self.sessions.discard(event.session)  # deleted: no further frames for it
        elif events.left_by(event) == self.user.pk and event.session in self.sessions:
            # This operator left the conversation: it is no longer theirs to follow.
            self.sessions.discard(event.session)
            streaming.Engine.current().unwatch(event.session, self)
        self.outbox.put_nowait(event)

    async def _write(self):
        while True:
            event = await self.outbox.get()
            try:
                await self.send(text_data=event.data.decode())
            except Exception:
                logger.debug("socket gone while writing", exc_info=True)
                return

    def _refuse(self, exc: DomainError, session=None) -> None:
        self.outbox.put_nowait(events.refused(exc, session=session))

    # Client frames -------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        # JSON escaping can make each character up to six (\uXXXX): bound the raw frame
        # loosely; services.check_message_content enforces the real length limit.
        limit = 6 * settings.MAX_MESSAGE_CHARS + FRAME_MARGIN
        raw = text_data if text_data is not None else bytes_data
        if raw is None or len(raw) > limit:
            self._refuse(FrameError(f"The frame is larger than {limit:,} characters."))
            return
        try:
            frame = parse_json(raw)
        except ValueError as exc:
            self._refuse(FrameError(f"The frame is not valid JSON: {exc}"))
            return
        session = frame.get("session") if isinstance(frame, dict) else None
        try:
            kind = _check(frame)
            await getattr(self, f"_on_{kind}")(frame)
        except DomainError as exc:
            self._refuse(exc, session=session)
        except Exception:
            # One failed frame must not take the socket (and its other streams) down.
            logger.exception("chat frame failed")
            self._refuse(FrameFailed(), session=session)

    async def _on_send(self, frame):
        reply = await streaming.send(
            user=self.user,
            watcher=self,
            content=frame["content"],
            session_id=frame.get("session"),
            model_id=frame.get("model"),
            run_id=frame.get("run"),
            client_id=frame.get("client_id"),
            temporary=frame.get("temporary", False),
            llm=frame.get("llm"),
        )
        await self._follow(str(reply.session.pk))

    async def _on_edit(self, frame):
        reply = await streaming.send(
            user=self.user,
            watcher=self,
            edit=frame["message"],
            content=frame["content"],
            client_id=frame.get("client_id"),
        )
        await self._follow(str(reply.session.pk))

    async def _on_regenerate(self, frame):
        reply = await streaming.send(user=self.user, watcher=self, regenerate=frame["message"])
        await self._follow(str(reply.session.pk))

    async def _on_stop(self, frame):
        await streaming.stop(user=self.user, session_id=frame["session"])

    async def _on_subscribe(self, frame):
        session = await streaming.subscribe(
            user=self.user, session_id=frame["session"], watcher=self
        )
        self.sessions.add(session)

    async def _follow(self, session: str) -> None:
        """Keep watching a conversation this socket sent into (other tabs' replies too)."""
        if session not in self.sessions:
            self.sessions.add(session)
            await streaming.Engine.current().watch(session, self)


def _check(frame) -> str:
    """Return the frame's type if it is well formed; raise FrameError otherwise."""
    if not isinstance(frame, dict):
        raise FrameError("A frame must be a JSON object.")
    kind = frame.get("type")
    if not isinstance(kind, str) or kind not in FIELDS:
        raise FrameError("Unknown frame type; expected send, edit, regenerate, stop or subscribe.")
    required, allowed = FIELDS[kind]
    missing = sorted(required - frame.keys())
    if missing:
        raise FrameError(f"The {kind} frame is missing: {', '.join(missing)}.")
    unknown = sorted(frame.keys() - allowed)
    if unknown:
        raise FrameError(f"Unknown fields in the {kind} frame: {', '.join(unknown)}.")
    for name in ("client_id", "content", "llm"):
        value = frame.get(name)
        if value is not None and not isinstance(value, str):
            raise FrameError(f"{name} must be a string.", field=name)
    session = frame.get("session")
    if session is not None:
        if not isinstance(session, str):
            raise FrameError("session must be a conversation id (a UUID string).", field="session")
        try:
            uuid.UUID(session)
        except ValueError:
            raise FrameError(f"'{session[:64]}' is not a valid conversation id.", field="session")
    for name in ("model", "run", "message"):
        value = frame.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise FrameError(f"{name} must be an integer id.", field=name)
    if not isinstance(frame.get("temporary", False), bool):
        raise FrameError("temporary must be true or false.", field="temporary")
    return kind
