"""The stream events of SPEC 4.2, built in one place and encoded once.

An event is a dict with ``type``; an ``Event`` carries it with its JSON encoding, made
once however many sockets and streams it goes to.
"""

from dataclasses import dataclass, field

import orjson

from chat.exceptions import DomainError
from chat.rendering import render_markdown


@dataclass(frozen=True, slots=True)
class Event:
    """One event for the clients of a conversation, encoded once."""

    kind: str
    session: str
    message: int | None
    body: dict = field(repr=False)
    data: bytes = field(repr=False)

    @classmethod
    def of(cls, body: dict) -> "Event":
        message = body.get("message")
        if not isinstance(message, int):
            message = None  # a ``message`` event carries a whole message, not a reply's id
        data = encode(body)
        if body["type"] == "participant" and "_user" in body:
            # Whom a leave concerns, for this process and the others, not for clients.
            data = encode({key: value for key, value in body.items() if key != "_user"})
        return cls(body["type"], body.get("session", ""), message, body, data)

    @property
    def ends_reply(self) -> bool:
        return self.kind in ("done", "error") and self.message is not None


def encode(body: dict) -> bytes:
    return orjson.dumps(body)


def token(session: str, message: int, content: str, offset: int) -> Event:
    return Event.of(
        {
            "type": "token",
            "session": session,
            "message": message,
            "content": content,
            "offset": offset,
        }
    )


def status(session: str, message: int, content: str) -> Event:
    return Event.of({"type": "status", "session": session, "message": message, "content": content})


def done(session: str, message: int, *, html: str, status: str, usage, length: int) -> Event:
    return Event.of(
        {
            "type": "done",
            "session": session,
            "message": message,
            "html": html,
            "usage": usage,
            "status": status,
            "length": length,
        }
    )


def error(session: str | None, message: int | None, reason: str, code: str = "error") -> Event:
    body = {"type": "error", "error": reason, "code": code}
    if session:
        body["session"] = session
    if message is not None:
        body["message"] = message
    return Event.of(body)


def refused(exc: DomainError, *, session=None) -> Event:
    """Return the ``error`` event of a refused request: the same code as REST's."""
    return error(session if isinstance(session, str) else None, None, exc.message, exc.code)


def title(session: str, value: str) -> Event:
    return Event.of({"type": "title", "session": session, "title": value})


def session_started(reply, *, duplicate: bool = False) -> Event:
    """Return the ``session`` event that answers a send: where the reply will stream."""
    return Event.of(
        {
            "type": "session",
            "session": str(reply.session.pk),
            "title": reply.session.title,
            "created": reply.session_created,
            "message": reply.assistant_message.pk if reply.assistant_message else None,
            "user_message": reply.user_message.pk,
            "duplicate": duplicate,
        }
    )


def participant(session: str, *, action: str, name: str, user: int | None = None) -> Event:
    """Someone asked for a person (``requested``), or an operator ``joined`` or ``left``;
    ``user``: the operator who left (their sockets stop following; not sent to clients)."""
    body = {"type": "participant", "session": session, "action": action, "name": name}
    if user is not None:
        body["_user"] = user
    return Event.of(body)


def left_by(event: Event) -> int | None:
    """The user whose leaving ``event`` announces, or None."""
    if event.kind == "participant" and event.body.get("action") == "left":
        return event.body.get("_user")
    return None


def person_message(session: str, message, *, name: str) -> Event:
    """A message a person wrote (the owner while an operator is in, or an operator), as
    the watchers show it: rendered through the replies' sanitizer."""
    kind = "operator" if message.role == "operator" else "user"
    return Event.of(
        {
            "type": "message",
            "session": session,
            "message": {
                "id": message.pk,
                "session": session,
                "role": message.role,
                "content": message.content,
                "html": render_markdown(message.content),
                "status": message.status,
                "parent": message.parent_id,
                "author": {"kind": kind, "name": name},
                "client_id": message.client_id,
                "created_at": message.created_at.isoformat().replace("+00:00", "Z"),
            },
        }
    )
