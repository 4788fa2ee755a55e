"""Fan-out in this process: who watches a conversation, and its reply so far.

A ``Feed`` exists while someone in this process watches a conversation (a socket, an
SSE response) or a reply is written here. Events reach its watchers by a direct call,
with no channel layer in between; a watcher that attaches mid-reply gets the reply so
far first (one ``token`` event at offset 0), then every later frame, so it misses and
repeats nothing. A reply written by another process is mirrored into the feed by
``relay`` as its frames arrive, and watchers cannot tell the difference.
"""

from typing import Protocol

from . import events
from .events import Event


class Watcher(Protocol):
    """Something that shows a conversation's events: a socket, an SSE response."""

    def deliver(self, event: Event) -> None:
        """Take one event; called on the engine's loop, must return without waiting."""


class ReplyText:
    """The text of the reply being streamed, as its watchers have received it."""

    __slots__ = ("message", "chunks", "length", "live")

    def __init__(self, message: int):
        self.message = message
        self.chunks: list[str] = []
        self.length = 0
        self.live = True

    def text(self) -> str:
        if len(self.chunks) > 1:
            self.chunks[:] = ["".join(self.chunks)]
        return self.chunks[0] if self.chunks else ""

    def put(self, content: str, offset: int) -> None:
        """Place ``content`` at ``offset`` (the end, or a replay from an earlier point)."""
        if offset < self.length:
            self.chunks[:] = [self.text()[:offset]]
            self.length = offset
        self.chunks.append(content)
        self.length += len(content)


class Feed:
    """Everyone in this process who watches one conversation, and its reply so far."""

    def __init__(self, session: str):
        self.session = session
        self.watchers: dict[Watcher, None] = {}
        self.reply: ReplyText | None = None
        self.generation = None  # the Generation writing this conversation's reply here
        self.mirroring = False  # a reply written elsewhere is relayed into this feed

    def __repr__(self):
        return f"<Feed {self.session} watchers={len(self.watchers)}>"

    @property
    def idle(self) -> bool:
        return not self.watchers and self.generation is None

    @property
    def live_reply(self) -> ReplyText | None:
        return self.reply if self.reply is not None and self.reply.live else None

    def attach(self, watcher: Watcher, *, catch_up: bool = True) -> None:
        """Add a watcher; with ``catch_up`` it first gets the live reply so far."""
        if watcher in self.watchers:
            return
        self.watchers[watcher] = None
        if catch_up and (snapshot := self.snapshot()) is not None:
            watcher.deliver(snapshot)

    def detach(self, watcher: Watcher) -> None:
        self.watchers.pop(watcher, None)

    def snapshot(self) -> Event | None:
        """Return the live reply so far as one token event at offset 0, if there is one."""
        reply = self.live_reply
        if reply is None:
            return None
        return events.token(self.session, reply.message, reply.text(), 0)

    def publish(self, event: Event, *, exclude: Watcher | None = None) -> None:
        """Record what ``event`` does to the reply (one written elsewhere), then hand it on."""
        self._follow(event)
        self.deliver(event, exclude=exclude)

    def deliver(self, event: Event, *, exclude: Watcher | None = None) -> None:
        """Hand ``event`` to every watcher (but ``exclude``)."""
        for watcher in list(self.watchers):
            if watcher is not exclude:
                watcher.deliver(event)

    def _follow(self, event: Event) -> None:
        if event.kind == "token":
            if self.reply is None or self.reply.message != event.message:
                self.reply = ReplyText(event.message)
            self.reply.put(event.body["content"], event.body.get("offset", self.reply.length))
        elif event.ends_reply and self.reply is not None and self.reply.message == event.message:
            self.reply.live = False
            self.mirroring = False
