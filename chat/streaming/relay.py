"""Streams across processes, over a shared channel layer (Redis), only where someone listens.

Each process has one channel, in the group of all processes (``ENGINES``). While a
process has watchers of a conversation, its channel is also in that conversation's group.
Per reply, the writer sends the conversation's group ``started`` and, at the end, the
final event; a process with watchers answers ``started`` with ``watch``, and from then on
the writer sends it the reply so far and every frame, directly to its channel. A reply
nobody elsewhere watches costs two channel-layer calls, whatever its length. The rare
requests whose writer is unknown (a late ``watch``, a ``stop``, a deletion) go to every
process; the writer answers, the others ignore them.

Messages (``type``): ``parlor.started`` {session, message, owner}; ``parlor.watch``
{session, channel}; ``parlor.none`` {session} (no live reply here); ``parlor.event``
{session, event, origin}; ``parlor.stop`` {session, reason}; ``parlor.deleted`` {session}.
A process ignores what it sent itself (``origin``/``owner``).
"""

import asyncio
import contextlib
import logging
import uuid

from . import events

logger = logging.getLogger(__name__)

WATCH_TIMEOUT = 1.0
SEND_QUEUE_MAX = 10_000


def _key(session) -> str:
    return uuid.UUID(str(session)).hex


def session_group(session) -> str:
    """Return the group of the processes watching a conversation."""
    return f"parlor.session.{_key(session)}"


# Every process's channel: requests for the writer of a reply, whichever process it is.
ENGINES = "parlor.engines"
# channels-redis forgets group members after a day: rejoin well within it.
REJOIN_INTERVAL = 3600.0


class Relay:
    """This process's side of cross-process streaming, for one engine."""

    def __init__(self, engine, layer):
        self.engine = engine
        self.layer = layer
        self.channel: str | None = None
        self.joined: set[str] = set()
        # Channels of other processes watching the replies written here, by session.
        self.remotes: dict[str, list[str]] = {}
        self.answers: dict[str, asyncio.Event] = {}
        self.outbox: asyncio.Queue = asyncio.Queue(SEND_QUEUE_MAX)
        self._started = asyncio.Lock()
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> str:
        """Create this process's channel and its listener, once."""
        if self.channel is not None:
            return self.channel
        async with self._started:
            if self.channel is None:
                channel = await self.layer.new_channel("parlor.process.")
                await self.layer.group_add(ENGINES, channel)
                self.tasks = [
                    self.engine.spawn(self._listen(channel)),
                    self.engine.spawn(self._send_loop()),
                    self.engine.spawn(self._rejoin(channel)),
                ]
                self.channel = channel
        return self.channel

    # Sending, in order ---------------------------------------------------------------

    def post(self, call: str, *args) -> None:
        """Queue a channel-layer call; calls run one at a time, in the order queued."""
        try:
            self.outbox.put_nowait((call, args))
        except asyncio.QueueFull:
            logger.warning("relay queue full; dropping a %s", call)

    async def _rejoin(self, channel: str) -> None:
        while True:
            await asyncio.sleep(REJOIN_INTERVAL)
            self.post("group_add", ENGINES, channel)
            for session in list(self.joined):
                self.post("group_add", session_group(session), channel)

    async def _send_loop(self) -> None:
        while True:
            call, args = await self.outbox.get()
            try:
                await getattr(self.layer, call)(*args)
            except Exception:
                logger.warning("channel layer %s failed", call, exc_info=True)

    # What the engine tells the relay -------------------------------------------------

    async def join(self, session: str) -> None:
        """Hear about replies of ``session`` written by other processes."""
        channel = await self.start()
        if session not in self.joined:
            self.joined.add(session)
            await self.layer.group_add(session_group(session), channel)

    def leave(self, session: str) -> None:
        if session in self.joined and self.channel is not None:
            self.joined.discard(session)
            self.post("group_discard", session_group(session), self.channel)

    async def reply_started(self, generation) -> None:
        channel = await self.start()
        session = generation.session
        self.post(
            "group_send",
            session_group(session),
            {
                "type": "parlor.started",
                "session": session,
                "message": generation.message_id,
                "owner": channel,
            },
        )

    def forward(self, generation, event: events.Event) -> None:
        """Send a frame of a reply written here to the processes watching it."""
        if event.ends_reply:
            # The end goes to the whole group (``reply_ended``), so no watcher misses it.
            return
        for channel in self.remotes.get(generation.session, ()):
            self.post("send", channel, self._event(event))

    def reply_ended(self, generation, final: events.Event | None) -> None:
        session = generation.session
        self.remotes.pop(session, None)
        if self.channel is None:
            return
        if final is not None:
            self.post("group_send", session_group(session), self._event(final))

    def broadcast(self, event: events.Event) -> None:
        """Send an event (a title, an interruption) to every process watching its session."""
        if self.channel is not None or self.joined:
            self.post("group_send", session_group(event.session), self._event(event))
        else:
            self.engine.spawn(self._broadcast_later(event))

    async def _broadcast_later(self, event: events.Event) -> None:
        await self.start()
        self.post("group_send", session_group(event.session), self._event(event))

    async def stop(self, session: str, reason: str) -> None:
        await self.start()
        self.post(
            "group_send", ENGINES, {"type": "parlor.stop", "session": session, "reason": reason}
        )

    async def deleted(self, session: str) -> None:
        channel = await self.start()
        self.post(
            "group_send",
            session_group(session),
            {"type": "parlor.deleted", "session": session, "origin": channel},
        )
        await self.stop(session, "deleted")

    async def request_watch(self, session: str) -> bool:
        """Ask the process writing ``session``'s reply to stream it here.

        Return True once it answered with the reply so far (the feed is mirroring it),
        False if no process answered within WATCH_TIMEOUT or none writes it.
        """
        channel = await self.start()
        answered = self.answers.setdefault(session, asyncio.Event())
        answered.clear()
        self.post(
            "group_send", ENGINES, {"type": "parlor.watch", "session": session, "channel": channel}
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WATCH_TIMEOUT):
                await answered.wait()
        self.answers.pop(session, None)
        feed = self.engine.feeds.get(session)
        return feed is not None and feed.mirroring

    def _event(self, event: events.Event) -> dict:
        return {
            "type": "parlor.event",
            "session": event.session,
            "event": event.body,
            "origin": self.channel,
        }

    # What other processes tell this one ----------------------------------------------

    async def _listen(self, channel: str) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A broken connection to Redis must not end the relay; it reconnects.
                logger.warning("relay receive failed", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            try:
                self._dispatch(message)
            except Exception:
                logger.exception("relay message %s failed", message.get("type"))

    def _dispatch(self, message: dict) -> None:
        kind, session = message.get("type"), message.get("session")
        if not isinstance(session, str):
            return
        engine = self.engine
        if kind == "parlor.event":
            if message.get("origin") == self.channel:
                return
            feed = engine.feeds.get(session)
            if feed is None:
                return
            event = events.Event.of(message["event"])
            mine = feed.generation
            if mine is not None and event.message == mine.message_id:
                return  # this process writes that reply
            if not _repeats_what_the_feed_has(feed, event):
                if event.kind == "token":
                    feed.mirroring = True
                feed.publish(event)
            if (answered := self.answers.get(session)) is not None:
                answered.set()
        elif kind == "parlor.started":
            if message.get("owner") == self.channel:
                return
            feed = engine.feeds.get(session)
            if feed is not None and feed.watchers:
                self.post(
                    "send",
                    message["owner"],
                    {"type": "parlor.watch", "session": session, "channel": self.channel},
                )
        elif kind == "parlor.watch":
            generation = engine.generations.get(session)
            requester = message.get("channel")
            if not isinstance(requester, str) or requester == self.channel:
                return
            if generation is None:
                return  # written elsewhere, or by no one: the requester times out
            if generation.finishing:
                self.post("send", requester, {"type": "parlor.none", "session": session})
                return
            # The reply so far, then (registered after it) every later frame: all on this
            # loop with no await in between, so nothing falls between the two.
            generation.flush()
            snapshot = events.token(session, generation.message_id, generation.sent.text(), 0)
            self.post("send", requester, self._event(snapshot))
            remotes = self.remotes.setdefault(session, [])
            if requester not in remotes:
                remotes.append(requester)
        elif kind == "parlor.none":
            if (answered := self.answers.get(session)) is not None:
                answered.set()
        elif kind == "parlor.stop":
            generation = engine.generations.get(session)
            if generation is not None:
                generation.request_stop(message.get("reason") or "stopped")
        elif kind == "parlor.deleted" and message.get("origin") != self.channel:
            engine.forget(session)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued channel-layer call has been made (at shutdown)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.outbox.empty() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)


def _repeats_what_the_feed_has(feed, event: events.Event) -> bool:
    """Whether ``event`` is a second "reply so far" of a reply this feed already mirrors.

    A process can ask a reply's writer for it twice: its ``watch`` answering a late
    ``started`` and the one a new watcher's ``request_watch`` sends. The writer answers
    each with the text so far at offset 0, after the frames it had already sent here, so
    the second holds exactly the text the feed has: passed on, it would show the watchers
    their reply again from the start.
    """
    reply = feed.reply
    return (
        event.kind == "token"
        and event.body.get("offset") == 0
        and feed.mirroring
        and reply is not None
        and reply.live
        and reply.message == event.message
        and reply.length == len(event.body.get("content", ""))
        and reply.text() == event.body.get("content")
    )
