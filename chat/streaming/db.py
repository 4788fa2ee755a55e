"""Database work of the streaming path, on a pool of threads of its own.

Every unit of work (start a reply, save progress, finish it) runs on one thread of a
bounded executor, never on asgiref's single thread-sensitive thread that Django's sync
views and middleware share: a slow write must not stall the other streams, nor wait
behind a page. A unit gets a connection (from psycopg's pool with PostgreSQL, checked
before use; a persistent one per thread with SQLite) and gives it back when it ends.
"""

import functools
import logging
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

_executor: ThreadPoolExecutor | None = None


def executor() -> ThreadPoolExecutor:
    """Return the executor of database work (created on first use)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=settings.STREAMING_DB_THREADS, thread_name_prefix="parlor-db"
        )
    return _executor


def _unit(func):
    @functools.wraps(func)
    def unit(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        finally:
            # Pooled connections go back to the pool; a broken or obsolete one is closed.
            close_old_connections()

    return unit


async def run(func, /, *args, **kwargs):
    """Run the sync ``func`` on a database thread and return its result."""
    return await sync_to_async(_unit(func), thread_sensitive=False, executor=executor())(
        *args, **kwargs
    )
