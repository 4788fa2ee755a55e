"""The engine of one event loop: its feeds, its replies, their saving and recovery.

The ASGI server's loop has one engine (``Engine.current()`` from async code); sync code
(a DRF view, a management command) reaches it with ``Engine.for_sync()``, or a loop of
its own in a background thread when no server runs here. Everything below runs on the
engine's loop; other threads call in with ``loop.call_soon_threadsafe``.
"""

import asyncio
import logging
import threading
import weakref

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.db import connection

from chat import metrics, prompting, selectors, services
from config.logs import context_with_request_id, current_request_id

from . import db, events, jobs
from .feeds import Feed, Watcher
from .generation import HEARTBEAT_INTERVAL, EarlyRequest, Generation
from .relay import Relay

logger = logging.getLogger(__name__)

TICK = 1.0
# Seconds between two deletions of expired temporary conversations, at most (one indexed
# query; a shorter TEMPORARY_CHAT_TTL sweeps as often as it is long).
TEMPORARY_SWEEP_EVERY = 60.0

_engines: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Engine]" = (
    weakref.WeakKeyDictionary()
)
_serving: "Engine | None" = None
_background: "Engine | None" = None
_background_lock = threading.Lock()


def _shared_layer():
    """Return the channel layer if it reaches other processes (Redis), else None."""
    layer = get_channel_layer()
    if layer is None or isinstance(layer, InMemoryChannelLayer):
        return None
    return layer


class Engine:
    """Feeds and generations of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.feeds: dict[str, Feed] = {}
        self.generations: dict[str, Generation] = {}
        self.tasks: set[asyncio.Task] = set()
        self.ticker: asyncio.Task | None = None
        self.sweeper: asyncio.Task | None = None
        self.summarizing: set[str] = set()
        layer = _shared_layer()
        self.relay = Relay(self, layer) if layer is not None else None

    # Finding the engine --------------------------------------------------------------

    @classmethod
    def current(cls) -> "Engine":
        """Return the engine of the running loop, creating it on first use."""
        loop = asyncio.get_running_loop()
        engine = _engines.get(loop)
        if engine is None:
            engine = _engines[loop] = cls(loop)
        return engine

    @classmethod
    def serve(cls) -> "Engine":
        """Make the running loop's engine the one sync code uses (the server's)."""
        global _serving
        if _serving is not None and _serving.loop is asyncio.get_running_loop():
            return _serving
        engine = cls.current()
        if _serving is not engine:
            _serving = engine
            engine.start_sweeping()
        return engine

    @classmethod
    def for_sync(cls) -> "Engine":
        """Return the engine sync code hands replies to (call from a thread with no loop)."""
        if _serving is not None and _serving.loop.is_running():
            return _serving
        return _background_engine()

    @staticmethod
    def shared() -> bool:
        """Return whether streams cross processes here (a Redis channel layer)."""
        return _shared_layer() is not None

    @classmethod
    def running(cls) -> list["Engine"]:
        return [engine for loop, engine in list(_engines.items()) if loop.is_running()]

    # Tasks ---------------------------------------------------------------------------

    def spawn(self, coro, *, request_id: str | None = None) -> asyncio.Task:
        """Run ``coro`` as a task of this engine that outlives whoever started it.

        It runs in a fresh context (it must not inherit a request's thread-sensitive
        executor, shut down when that request or socket ends) holding only the request
        id its logs carry.
        """
        task = self.loop.create_task(coro, context=context_with_request_id(request_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # Feeds and watchers --------------------------------------------------------------

    def feed(self, session: str) -> Feed:
        feed = self.feeds.get(session)
        if feed is None:
            feed = self.feeds[session] = Feed(session)
        return feed

    def release(self, feed: Feed) -> None:
        """Forget a feed nobody watches and no reply is written to."""
        if feed.idle and self.feeds.get(feed.session) is feed:
            del self.feeds[feed.session]
            if self.relay is not None:
                self.relay.leave(feed.session)

    async def watch(self, session: str, watcher: Watcher) -> Feed:
        """Let ``watcher`` follow a conversation: the live reply so far, then every event."""
        feed = self.feed(session)
        feed.attach(watcher)
        if self.relay is not None:
            await self.relay.join(session)
        return feed

    def unwatch(self, session: str, watcher: Watcher) -> None:
        feed = self.feeds.get(session)
        if feed is not None:
            feed.detach(watcher)
            self.release(feed)

    # Replies -------------------------------------------------------------------------

    def writing(self) -> frozenset[int]:
        """Return the ids of the replies this engine is writing (callable from any thread)."""
        return frozenset(g.message_id for g in list(self.generations.values()))

    def launch(
        self,
        reply: services.Reply,
        context,
        watcher: Watcher | None = None,
        request_id: str | None = None,
        early: EarlyRequest | None = None,
    ):
        """Start writing ``reply`` (stored by ``reply_start``); return its Generation.

        ``request_id`` (by default the caller's) follows the reply into its tasks' logs.
        ``early``: the LLM request asked for ``context`` while the turn committed.
        """
        request_id = request_id or current_request_id()
        session = str(reply.session.pk)
        if early is not None and not early.started_for(context):
            early.cancel()
            early = None
        current = self.generations.get(session)
        if current is not None and not current.finishing:
            logger.error("a second reply in %s while %s streams", session, current.message_id)
            if early is not None:
                early.cancel()
            return current
        feed = self.feed(session)
        if watcher is not None:
            feed.attach(watcher, catch_up=False)
        for message_id in reply.interrupted:
            self.announce(events.error(session, message_id, services.INTERRUPTED, "interrupted"))
        generation = Generation(self, reply, context, early)
        feed.generation = generation
        feed.reply = generation.sent
        self.generations[session] = generation
        metrics.STREAMS_ACTIVE.inc()
        generation.task = self.spawn(generation.run(), request_id=request_id)
        if reply.first_message:
            # Asked once the reply's first token is out: building a second LLM request
            # (~1.5 ms of CPU in the SDK) before it would delay that token.
            content = reply.user_message.content
            generation.after_first_token.append(
                lambda: self.spawn(
                    jobs.title(self, session=session, content=content), request_id=request_id
                )
            )
        if context.truncated:
            # The budget left messages out: a summary brings them back in a short form.
            self.spawn(self.summarize(session, force=True), request_id=request_id)
        if self.relay is not None:
            self.spawn(self.relay.reply_started(generation))
        logger.info(
            "reply %s started in conversation %s: user %s, %d context messages",
            generation.message_id,
            session,
            generation.user_id,
            len(context.messages),
        )
        if self.ticker is None or self.ticker.done():
            self.ticker = self.spawn(self._tick())
        return generation

    def publish(self, generation: Generation, event: events.Event) -> None:
        """Send an event of a reply written here to its watchers, here and elsewhere."""
        if event.ends_reply:
            generation.final = event
        feed = self.feeds.get(generation.session)
        if feed is not None:
            feed.deliver(event)
        if self.relay is not None:
            self.relay.forward(generation, event)

    def ended(self, generation: Generation) -> None:
        metrics.STREAMS_ACTIVE.dec()
        if self.generations.get(generation.session) is generation:
            del self.generations[generation.session]
        feed = self.feeds.get(generation.session)
        if feed is not None and feed.generation is generation:
            feed.generation = None
            self.release(feed)
        if self.relay is not None:
            self.relay.reply_ended(generation, generation.final)

    def after_complete(self, generation: Generation) -> None:
        message_count, summary_count = generation.counters
        if prompting.summary_due(message_count=message_count, summary_message_count=summary_count):
            self.spawn(self.summarize(generation.session))

    async def summarize(self, session: str, *, force: bool = False) -> bool:
        if session in self.summarizing:
            return False
        self.summarizing.add(session)
        try:
            return await jobs.summarize(session=session, force=force)
        finally:
            self.summarizing.discard(session)

    def announce(self, event: events.Event, *, exclude: Watcher | None = None) -> None:
        """Tell every watcher of ``event.session``, in this process and the others."""
        feed = self.feeds.get(event.session)
        if feed is not None:
            feed.publish(event, exclude=exclude)
        if self.relay is not None:
            self.relay.broadcast(event)

    async def stop(self, session: str) -> bool:
        """Stop the reply in flight in a conversation, wherever it is written.

        Return whether one was in flight. A reply no live process writes is ended as
        interrupted (and its watchers told).
        """
        generation = self.generations.get(session)
        if generation is not None:
            return generation.request_stop("stopped")
        streaming = await db.run(selectors.reply_streaming, session_id=session)
        if streaming is None:
            return False
        if self.relay is not None:
            await self.relay.stop(session, "stopped")
        await self.settle_abandoned(session=session)
        return True

    # Deletion ------------------------------------------------------------------------

    def conversations_deleted(self, session_ids: list[str]) -> None:
        """Stop the replies of deleted conversations and end every subscription to them."""
        for session in session_ids:
            self.forget(session)
            if self.relay is not None:
                self.spawn(self.relay.deleted(session))

    def forget(self, session: str) -> None:
        """Stop a deleted conversation's reply here and tell its watchers it is gone."""
        generation = self.generations.get(session)
        if generation is not None:
            generation.request_stop("deleted")
        feed = self.feeds.pop(session, None)
        if feed is not None:
            feed.reply = None
            feed.deliver(events.error(session, None, "This conversation was deleted.", "not_found"))
            feed.watchers.clear()
            if self.relay is not None:
                self.relay.leave(session)

    # Saving, heartbeats and recovery -------------------------------------------------

    async def _tick(self) -> None:
        """Save the text of long replies and renew their lease while any is written."""
        while self.generations:
            await asyncio.sleep(TICK)
            due = self.loop.time() - HEARTBEAT_INTERVAL
            contents: dict[int, str] = {}
            alive: list[int] = []
            for generation in list(self.generations.values()):
                if generation.finishing or generation.written_at > due:
                    continue
                generation.written_at = self.loop.time()
                text = generation.progress()
                if text is None:
                    alive.append(generation.message_id)
                else:
                    contents[generation.message_id] = text
            if contents or alive:
                try:
                    await db.run(services.replies_save_progress, contents=contents, alive=alive)
                except Exception:
                    logger.warning(
                        "could not save %d replies' progress", len(contents) + len(alive)
                    )

    def start_sweeping(self) -> None:
        """Settle, every RECOVERY_INTERVAL, replies whose writer died, and delete the
        temporary conversations past TEMPORARY_CHAT_TTL (0: never)."""
        interval = float(settings.RECOVERY_INTERVAL)
        if interval > 0 and (self.sweeper is None or self.sweeper.done()):
            self.sweeper = self.spawn(self._sweep(interval))

    async def _sweep(self, interval: float) -> None:
        temporary_due = self.loop.time()
        while True:
            try:
                await self.settle_abandoned()
            except Exception as exc:
                logger.warning("the interrupted-reply sweep failed: %s", exc)
            if self.loop.time() >= temporary_due:
                every = min(TEMPORARY_SWEEP_EVERY, float(settings.TEMPORARY_CHAT_TTL))
                temporary_due = self.loop.time() + every
                try:
                    await self.delete_expired_temporary()
                except Exception as exc:
                    logger.warning("the temporary-conversation sweep failed: %s", exc)
            _record_pool_use()
            await asyncio.sleep(interval)

    async def delete_expired_temporary(self) -> int:
        """Delete temporary conversations past TEMPORARY_CHAT_TTL, a batch at most; return
        how many. Their watchers, here and elsewhere, are told (the deletion's signal)."""
        return await db.run(services.conversations_delete_expired_temporary)

    async def settle_abandoned(self, *, session: str | None = None) -> int:
        """End as interrupted the replies whose writer died (of one conversation, or all).

        Their watchers, here and in the other processes, are told.
        """
        settled = await db.run(
            services.replies_settle_abandoned, writing=self.writing(), session_id=session
        )
        for message_id, session in settled:
            self.announce(events.error(session, message_id, services.INTERRUPTED, "interrupted"))
        if settled:
            logger.warning("ended %d replies left streaming by a dead process", len(settled))
        return len(settled)

    # Shutdown ------------------------------------------------------------------------

    async def drain(self, grace: float) -> None:
        """Let replies in flight finish within ``grace`` seconds, then end the rest.

        A reply cut short keeps every character its readers saw and ends as interrupted;
        its watchers are told.
        """
        deadline = self.loop.time() + max(grace, 0.0)
        while self.generations and self.loop.time() < deadline:
            await asyncio.sleep(min(0.1, max(deadline - self.loop.time(), 0.0)))
        remaining = list(self.generations.values())
        for generation in remaining:
            generation.request_stop("interrupted")
        if remaining:
            await asyncio.wait([g.task for g in remaining if g.task], timeout=10)
        if self.relay is not None:
            await self.relay.flush()

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait for this engine's replies and background jobs to finish (tests, shutdown)."""
        deadline = self.loop.time() + timeout
        while True:
            pending = [
                t
                for t in self.tasks
                if not t.done() and t is not self.sweeper and not self._is_relay_task(t)
            ]
            if not pending or self.loop.time() >= deadline:
                return
            await asyncio.wait(pending, timeout=max(0.0, deadline - self.loop.time()))

    def _is_relay_task(self, task: asyncio.Task) -> bool:
        return self.relay is not None and task in self.relay.tasks


def _record_pool_use() -> None:
    """Publish how many pooled database connections this process has checked out."""
    pool = getattr(connection, "pool", None)
    if pool is not None:
        stats = pool.get_stats()
        metrics.DB_POOL_IN_USE.set(stats.get("pool_size", 0) - stats.get("pool_available", 0))


def _background_engine() -> Engine:
    """Return the engine of a process-wide loop in a daemon thread (no server loop here)."""
    global _background
    with _background_lock:
        if _background is None or not _background.loop.is_running():
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            holder: list[Engine] = []

            def serve():
                asyncio.set_event_loop(loop)

                async def bind():
                    holder.append(Engine.current())
                    ready.set()

                loop.create_task(bind())
                loop.run_forever()

            threading.Thread(target=serve, name="parlor-engine", daemon=True).start()
            if not ready.wait(5):
                raise RuntimeError("the background engine did not start")
            _background = holder[0]
        return _background
