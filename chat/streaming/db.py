"""Database work of the streaming path, on a pool of threads of its own.

Every unit of work (start a reply, save progress, finish it) runs on one thread of a
bounded executor, never on asgiref's single thread-sensitive thread that Django's sync
views and middleware share: a slow write must not stall the other streams, nor wait
behind a page. A unit gets a connection (from psycopg's pool with PostgreSQL; a
persistent one per thread with SQLite) and gives it back when it ends.

The pool hands a unit its connection without the round trip that checks it
(config/dbpool.py). A connection PostgreSQL closed while it sat in the pool fails the
unit's first statement: nothing can have been written then, so the pool's idle
connections are checked and the unit runs once more, on a live one.
"""

import functools
import logging
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from config import dbpool

logger = logging.getLogger(__name__)

_executor: ThreadPoolExecutor | None = None


def executor() -> ThreadPoolExecutor:
    """Return the executor of database work (created on first use)."""
    global _executor
    if _executor is None:
        pool = getattr(connection, "pool", None)
        if pool is not None:
            dbpool.install(pool)
        _executor = ThreadPoolExecutor(
            max_workers=settings.STREAMING_DB_THREADS, thread_name_prefix="parlor-db"
        )
    return _executor


class _Statements:
    """An execute wrapper that counts the statements that succeeded."""

    def __init__(self):
        self.done = 0

    def __call__(self, execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        self.done += 1
        return result


def _broken() -> bool:
    """Whether the thread's connection was lost (not an error of the statement's own)."""
    raw = connection.connection
    return raw is None or getattr(raw, "broken", False) or getattr(raw, "closed", False)


def _unit(func):
    @functools.wraps(func)
    def unit(*args, **kwargs):
        for attempt in (1, 2):
            statements = _Statements()
            try:
                with dbpool.unchecked(), connection.execute_wrapper(statements):
                    return func(*args, **kwargs)
            except (OperationalError, InterfaceError):
                if attempt == 2 or statements.done or not _broken():
                    raise
                logger.warning("a pooled database connection was closed; running again")
            finally:
                # Pooled connections go back to the pool; a broken or obsolete one is closed.
                close_old_connections()
            # The broken one is gone: the others PostgreSQL closed with it go too.
            pool = getattr(connection, "pool", None)
            if pool is not None:
                pool.check()

    return unit


async def run(func, /, *args, **kwargs):
    """Run the sync ``func`` on a database thread and return its result."""
    return await sync_to_async(_unit(func), thread_sensitive=False, executor=executor())(
        *args, **kwargs
    )
