"""The streaming engine's units of database work on a connection PostgreSQL closed
(issue 9: the pool's check round trip is skipped there; config/dbpool.py)."""

import psycopg
import pytest
from django.db import OperationalError, connection
from psycopg_pool import ConnectionPool

from accounts.models import User
from chat.streaming import db
from config import dbpool

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def terminate(pid: int) -> None:
    """Close a backend from another connection, as a restart or a failover would."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_unit_whose_connection_was_closed_runs_again_on_a_new_one():
    connection.ensure_connection()
    terminate(connection.connection.info.backend_pid)
    calls = []

    def count_users():
        calls.append(1)
        return User.objects.count()

    assert db._unit(count_users)() == 0
    assert len(calls) == 2  # the first try failed on the closed connection
    assert User.objects.count() == 0  # and the thread's connection works again


def test_a_unit_that_had_run_a_statement_is_not_run_again():
    calls = []

    def read_then_lose_the_connection():
        calls.append(1)
        User.objects.count()
        terminate(connection.connection.info.backend_pid)
        return User.objects.count()

    with pytest.raises(OperationalError):
        db._unit(read_then_lose_the_connection)()
    assert len(calls) == 1


def test_a_statement_error_is_not_a_lost_connection():
    calls = []

    def bad_sql():
        calls.append(1)
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    with pytest.raises(Exception, match="no_such_table"):
        db._unit(bad_sql)()
    assert len(calls) == 1


def test_the_pool_checks_connections_except_in_the_streaming_units():
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    pool = ConnectionPool(
        kwargs=params, min_size=1, max_size=1, check=ConnectionPool.check_connection, open=True
    )
    try:
        dbpool.install(pool)

        def lose_the_idle_connection():
            with pool.connection() as conn:
                pid = conn.info.backend_pid
            terminate(pid)
            return pid

        # Outside the units the check finds the closed connection: a new one is made.
        pid = lose_the_idle_connection()
        with pool.connection() as conn:
            assert conn.info.backend_pid != pid
            assert conn.execute("SELECT 1").fetchone() == (1,)
        # In a unit no check runs: the closed connection is handed out as it is.
        lose_the_idle_connection()
        with (
            dbpool.unchecked(),
            pytest.raises(psycopg.OperationalError),
            pool.connection() as conn,
        ):
            conn.execute("SELECT 1")
    finally:
        pool.close()
