"""A server process's streaming life: started with the server, drained on SIGTERM.

``serve()`` runs once on the server's loop (config/asgi.py calls it on the first
connection): it makes that loop's engine the one sync code uses, starts the sweep of
replies whose writer died, and puts a drain in front of the server's own SIGTERM and
SIGINT handlers. On SIGTERM the process reports not ready (``/readyz``), lets replies in
flight finish within SHUTDOWN_GRACE, ends the rest as interrupted with their text saved
and their watchers told, and only then hands the signal to the server (uvicorn, daphne),
which closes its connections and exits. SIGINT does the same with no grace.
"""

import gc
import logging
import os
import signal
import sys
import threading

from django.conf import settings

from .engine import Engine

logger = logging.getLogger(__name__)

_state = {"serving": False, "draining": False}
_lock = threading.Lock()


def draining() -> bool:
    """Return whether this process is shutting down (not ready for new work)."""
    return _state["draining"]


def serve() -> None:
    """Bind streaming to the running server loop, once per loop (the first connection)."""
    engine = Engine.serve()
    if _state["serving"]:
        return
    with _lock:
        if _state["serving"]:
            return
        _state["serving"] = True
    # The cyclic garbage collector stops the loop, and every stream with it, while it
    # runs: under 200 WebSocket streams its full collections took up to 140 ms (527 ms
    # in 30 s), walking mostly what the server loaded to start, which lives as long as
    # the process. That is frozen (out of the collector's sight), and the youngest
    # generation is collected every 10,000 allocations instead of 700 (most objects
    # here die by reference counting): 4 full collections instead of 6-7, 180 ms in
    # all (bench/README.md).
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
    if settings.STREAMING_SWITCH_INTERVAL > 0:
        # The loop and the database threads pass the interpreter to each other on every
        # query: Python's 5 ms default keeps a query's answer waiting behind the loop.
        sys.setswitchinterval(settings.STREAMING_SWITCH_INTERVAL)
    logger.info(
        "streaming: serving, %d database threads, thread switch every %g ms",
        settings.STREAMING_DB_THREADS,
        sys.getswitchinterval() * 1000,
    )
    _install_signal_handlers(engine)


def _install_signal_handlers(engine: Engine) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signals can only be handled on the main thread (runserver's reloader)
    for signum, grace in (
        (signal.SIGTERM, float(settings.SHUTDOWN_GRACE)),
        (signal.SIGINT, 0.0),
    ):
        previous = signal.getsignal(signum)
        signal.signal(signum, _handler(engine, signum, grace, previous))


def _handler(engine: Engine, signum: int, grace: float, previous):
    def handle(received, frame):
        if _state["draining"]:
            _hand_on(signum, previous, frame)  # a second signal: stop waiting
            return
        _state["draining"] = True
        logger.info("draining: %d replies in flight, %.0f s grace", len(engine.generations), grace)
        engine.loop.call_soon_threadsafe(
            lambda: engine.spawn(_drain_then_hand_on(engine, signum, grace, previous))
        )

    return handle


async def _drain_then_hand_on(engine: Engine, signum: int, grace: float, previous) -> None:
    try:
        await engine.drain(grace)
    except Exception:
        logger.exception("draining failed")
    logger.info("drained; shutting down")
    _hand_on(signum, previous, None)


def _hand_on(signum: int, previous, frame) -> None:
    """Give the signal to whoever handled it before us (the server), or the default."""
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
