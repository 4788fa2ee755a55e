"""The hot path's hand-written statements, prepared once per connection on PostgreSQL.

Django's psycopg cursors bind parameters on the client (the value is written into the
SQL text) and never prepare: PostgreSQL parses and plans every statement of every send
again. For the reply path's few statements that was most of what the server spent on
them: a send's five statements ran in 1.9 ms with their text each time and in 1.1 ms
prepared (pgbench, the statements PostgreSQL logged for one send, this machine).

``cursor()`` is a Django cursor (execute wrappers, the query log and error translation
as any other) that sends each statement with its parameters bound on the server,
prepared on the connection the first time and executed by name after (psycopg's
prepared-statement cache, which survives the pool handing the connection on).

A ``Joined`` query is several statements sent in one round trip (psycopg's pipeline
mode): they run in order, each with a snapshot of its own, and an error stops the
rest, as when statements are joined with ``;`` in one query (which server-side binding
does not allow). ``execute`` returns once all of them ran; ``nextset`` steps from one
statement's result to the next. Elsewhere (SQLite) ``cursor()`` is Django's own, and a
query of one statement is a plain string.

A transaction's first query through ``cursor()`` carries its BEGIN. psycopg sends the
BEGIN of a transaction Django opened (``atomic``) on its own and waits for its answer
before the first statement, pipeline or not: a round trip that answers nothing. Here
the BEGIN (psycopg's own, with the connection's isolation level) goes first in the
query's pipeline, so the transaction opens and its first statements run in one round
trip.
"""

from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connection, connections
from psycopg.pq import TransactionStatus


class Joined(str):
    """SQL of several statements, joined with ``"; "`` (what the query log shows), that
    knows its statements and how many parameters each takes."""

    parts: tuple[tuple[str, int], ...]

    def __new__(cls, parts):
        parts = tuple(parts)
        joined = super().__new__(cls, "; ".join(text for text, _ in parts))
        joined.parts = parts
        return joined


def parts(sql: str, params: list) -> tuple[tuple[str, int], ...]:
    """Return the statements of a query with ``params``: (sql, how many parameters) each."""
    return getattr(sql, "parts", None) or ((sql, len(params)),)


def join(*statements: tuple[str, list]) -> tuple[str, list]:
    """Return the query that runs ``statements`` ((sql, params) each, in order) in one
    round trip, and its parameters."""
    joined, params = [], []
    for sql, values in statements:
        joined.extend(parts(sql, values))
        params.extend(values)
    if len(joined) == 1:
        return joined[0][0], params
    return Joined(joined), params


@dataclass(frozen=True)
class _Query:
    """What Django's query log reads of the last query (``last_executed_query``): its
    SQL with the parameters written in, composed only when something reads it."""

    sql: str
    params: list

    @property
    def query(self) -> bytes:
        offset, texts = 0, []
        for text, count in parts(self.sql, self.params):
            texts.append(connection.ops.compose_sql(text, self.params[offset : offset + count]))
            offset += count
        return "; ".join(texts).encode()


class PreparedCursor:
    """A psycopg cursor stand-in that runs statements prepared (see the module)."""

    def __init__(self, raw):
        from django.db.backends.postgresql.base import ServerBindingCursor

        self._raw = raw
        self._factory = ServerBindingCursor
        self._cursors = []
        self._index = 0
        self._query = None
        # None: prepared statements are off for this connection (DB_PREPARE).
        self._prepare = None if raw.prepare_threshold is None else True

    def execute(self, sql, params=None):
        self.close()
        params = list(params or ())
        statements = parts(sql, params)
        self._query = _Query(sql, params)
        raw = self._raw
        begin = not raw.autocommit and raw.pgconn.transaction_status == TransactionStatus.IDLE
        if len(statements) == 1 and not begin:
            cursor = self._factory(raw)
            self._cursors = [cursor]
            cursor.execute(sql, params, prepare=self._prepare)
            return self
        if begin:
            # psycopg starts a transaction before a statement unless the connection is
            # in autocommit: its flag is set while the pipeline is sent, the BEGIN
            # queued first (see the module).
            raw._autocommit = True
        try:
            with raw.pipeline():
                if begin:
                    command = raw._get_tx_start_command().decode()
                    self._factory(raw).execute(command, prepare=False)
                offset = 0
                for text, count in statements:
                    cursor = self._factory(raw)
                    self._cursors.append(cursor)
                    cursor.execute(text, params[offset : offset + count], prepare=self._prepare)
                    offset += count
        finally:
            if begin:
                raw._autocommit = False
        # Leaving the pipeline waited for every result: all of them ran.
        return self

    @property
    def _current(self):
        return self._cursors[self._index]

    def fetchone(self):
        return self._current.fetchone()

    def fetchall(self):
        return self._current.fetchall()

    def fetchmany(self, size=None):
        return self._current.fetchmany(size) if size else self._current.fetchmany()

    def nextset(self):
        if self._index + 1 >= len(self._cursors):
            return None
        self._index += 1
        return True

    @property
    def rowcount(self):
        return self._current.rowcount if self._cursors else -1

    @property
    def description(self):
        return self._current.description if self._cursors else None

    def close(self):
        for cursor in self._cursors:
            cursor.close()
        self._cursors, self._index = [], 0

    def __iter__(self):
        return iter(self._current)


def joins() -> bool:
    """Whether ``Joined`` queries (and data-modifying WITH) can be used: PostgreSQL."""
    return connection.vendor == "postgresql"


def cursor():
    """Return a cursor of the default connection whose statements are prepared (on
    PostgreSQL; elsewhere Django's plain cursor)."""
    db = connections[DEFAULT_DB_ALIAS]  # (each ``connection.x`` looks the thread's up)
    if db.vendor != "postgresql":
        return db.cursor()
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_thread_sharing()
    raw = PreparedCursor(db.connection)
    if db.queries_logged:
        return db.make_debug_cursor(raw)
    return db.make_cursor(raw)
