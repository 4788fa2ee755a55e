"""The PostgreSQL pool's check of a connection before it hands it out (``install``).

psycopg's pool checks a connection with a round trip before handing it out, so that a
connection PostgreSQL closed while it sat idle (a restart, a failover, a killed
backend) costs no request. The streaming engine's units of database work
(chat.streaming.db) skip that round trip: such a unit that fails on its first statement
with a broken connection is run again on another one (nothing it did can have been
written), which a live connection, nearly always the case, never pays for.
"""

import threading
from contextlib import contextmanager

from psycopg_pool import ConnectionPool

_unchecked = threading.local()


def install(pool) -> None:
    """Give Django's pool (created with psycopg's check: CONN_HEALTH_CHECKS) ``check``.

    Django builds the pool itself and passes psycopg's check, so it is swapped here;
    psycopg_pool (pinned) keeps it as ``_check``. tests/chat/test_db_units.py holds
    what depends on it.
    """
    if getattr(pool, "_check", None) is ConnectionPool.check_connection:
        pool._check = check


def check(conn) -> None:
    """The pool's ``check``: psycopg's, unless this thread is in ``unchecked()``."""
    if not getattr(_unchecked, "on", False):
        ConnectionPool.check_connection(conn)


@contextmanager
def unchecked():
    """Take connections from the pool without the check, in this thread (the caller
    handles a broken one)."""
    _unchecked.on = True
    try:
        yield
    finally:
        _unchecked.on = False
