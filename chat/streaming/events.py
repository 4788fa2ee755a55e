"""The stream events of SPEC 4.2, built in one place and encoded once.

An event is a dict with ``type``; an ``Event`` carries it with its JSON encoding, made
once however many sockets and streams it goes to.
"""

from dataclasses import dataclass, field

import orjson

from chat.exceptions import DomainError


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
        return cls(body["type"], body.get("session", ""), body.get("message"), body, encode(body))

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
