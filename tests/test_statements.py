"""config.statements: the reply path's statements prepared, several in one round trip."""

import psycopg
import pytest
from django.db import IntegrityError, OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from chat.streaming import db
from config import statements
from tests.chat.test_db_units import terminate

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db]

USER = connection.ops.quote_name(User._meta.db_table)


def prepared_on_this_connection() -> list[str]:
    with connection.cursor() as cursor:  # Django's own cursor: not itself prepared
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE from_sql = false")
        return [row[0] for row in cursor.fetchall()]


def test_a_statement_is_prepared_once_and_then_executed_by_name(user):
    sql = f"SELECT username FROM {USER} WHERE id = %s"
    for _ in range(3):
        with statements.cursor() as cursor:
            cursor.execute(sql, [user.pk])
            assert cursor.fetchone() == (user.username,)
    prepared = [text for text in prepared_on_this_connection() if "SELECT username" in text]
    assert prepared == [sql.replace("%s", "$1")]


def test_without_prepared_statements_nothing_is_prepared(user):
    connection.ensure_connection()
    raw = connection.connection
    raw.prepare_threshold = None  # what DB_PREPARE=false gives the connection
    try:
        with statements.cursor() as cursor:
            cursor.execute(f"SELECT username FROM {USER} WHERE id = %s", [user.pk])
            assert cursor.fetchone() == (user.username,)
        assert not any("SELECT username" in text for text in prepared_on_this_connection())
    finally:
        raw.prepare_threshold = 5


def test_joined_statements_run_in_order_and_answer_one_after_the_other(user):
    query, params = statements.join(
        (f"UPDATE {USER} SET first_name = %s WHERE id = %s", ["Ada", user.pk]),
        (f"SELECT first_name, username FROM {USER} WHERE id = %s", [user.pk]),
        ("SELECT %s::int + %s::int", [2, 3]),
    )
    assert str(query).count("; ") == 2
    with statements.cursor() as cursor:
        cursor.execute(query, params)
        assert cursor.rowcount == 1
        assert cursor.nextset()
        assert cursor.fetchone() == ("Ada", user.username)  # sees the UPDATE before it
        assert cursor.nextset()
        assert cursor.fetchall() == [(5,)]
        assert cursor.nextset() is None


def test_a_joined_query_is_one_entry_of_the_query_log(user):
    query, params = statements.join(
        (f"SELECT id FROM {USER} WHERE id = %s", [user.pk]),
        (f"SELECT username FROM {USER} WHERE id = %s", [user.pk]),
    )
    with CaptureQueriesContext(connection) as captured, statements.cursor() as cursor:
        cursor.execute(query, params)
    assert [entry["sql"] for entry in captured.captured_queries] == [
        f"SELECT id FROM {USER} WHERE id = {user.pk}; "
        f"SELECT username FROM {USER} WHERE id = {user.pk}"
    ]


def test_a_failing_statement_stops_the_ones_after_it_and_raises_djangos_error(user):
    other = User.objects.create(username="other")
    query, params = statements.join(
        (f"UPDATE {USER} SET username = %s WHERE id = %s", [user.username, other.pk]),
        (f"UPDATE {USER} SET first_name = %s WHERE id = %s", ["never", user.pk]),
    )
    with pytest.raises(IntegrityError), transaction.atomic(), statements.cursor() as cursor:
        cursor.execute(query, params)
    user.refresh_from_db()
    other.refresh_from_db()
    assert other.username == "other" and user.first_name == ""


def test_joined_statements_join_with_joined_ones(user):
    first = statements.join(("SELECT %s::int", [1]), ("SELECT %s::int", [2]))
    query, params = statements.join(first, ("SELECT %s::int", [3]))
    assert params == [1, 2, 3]
    with statements.cursor() as cursor:
        cursor.execute(query, params)
        answers = [cursor.fetchone()[0]]
        while cursor.nextset():
            answers.append(cursor.fetchone()[0])
    assert answers == [1, 2, 3]


@pytest.mark.django_db(transaction=True)
def test_a_unit_whose_joined_first_query_met_a_closed_connection_runs_again():
    """Nothing had run (the pipeline sent nothing PostgreSQL answered): the unit is run
    again on a live connection, as with a single statement (tests/chat/test_db_units)."""
    connection.ensure_connection()
    terminate(connection.connection.info.backend_pid)
    calls = []

    def unit():
        calls.append(1)
        with statements.cursor() as cursor:
            cursor.execute(*statements.join(("SELECT %s::int", [1]), ("SELECT %s::int", [2])))
            cursor.nextset()
            return cursor.fetchone()[0]

    assert db._unit(unit)() == 2
    assert len(calls) == 2


def test_the_error_of_a_closed_connection_is_djangos(user):
    connection.ensure_connection()
    raw = connection.connection
    try:
        terminate(raw.info.backend_pid)
        with pytest.raises(OperationalError), statements.cursor() as cursor:
            cursor.execute(*statements.join(("SELECT 1", []), ("SELECT 2", [])))
        assert raw.broken or raw.closed
    finally:
        connection.close()
    assert isinstance(raw, psycopg.Connection)


# A transaction's BEGIN goes with its first query -------------------------------------


def psycopgs_own_begins(raw) -> list:
    """Record the transaction starts psycopg sends itself (it waits for each)."""
    sent = []
    exec_command = raw._exec_command

    def recording(command, *args, **kwargs):
        if bytes(command).startswith(b"BEGIN"):
            sent.append(command)
        return exec_command(command, *args, **kwargs)

    raw._exec_command = recording
    return sent


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("joined", [False, True])
def test_a_transactions_first_query_opens_it_in_the_same_round_trip(user, joined):
    connection.ensure_connection()
    raw = connection.connection
    sent = psycopgs_own_begins(raw)
    query, params = (f"SELECT username FROM {USER} WHERE id = %s", [user.pk])
    if joined:
        query, params = statements.join((query, params), ("SELECT 1", []))
    try:
        with transaction.atomic():
            with statements.cursor() as cursor:
                cursor.execute(query, params)
                assert cursor.fetchone() == (user.username,)
            assert raw.pgconn.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            assert raw.autocommit is False
            User.objects.filter(pk=user.pk).update(first_name="Ada")  # the ORM goes on in it
        assert sent == []  # psycopg sent no BEGIN of its own
        assert raw.autocommit is True  # Django's autocommit is back after the block
        assert User.objects.get(pk=user.pk).first_name == "Ada"
    finally:
        del raw._exec_command


@pytest.mark.django_db(transaction=True)
def test_what_the_first_query_wrote_is_rolled_back_with_its_transaction(user):
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        with statements.cursor() as cursor:
            cursor.execute(f"UPDATE {USER} SET first_name = %s WHERE id = %s", ["Ada", user.pk])
        raise Abort
    # Had it run outside the transaction, the UPDATE would have committed on its own.
    assert User.objects.get(pk=user.pk).first_name == ""


@pytest.mark.django_db(transaction=True)
def test_a_first_query_that_fails_leaves_the_connection_usable(user):
    other = User.objects.create(username="other")
    with pytest.raises(IntegrityError), transaction.atomic(), statements.cursor() as cursor:
        cursor.execute(f"UPDATE {USER} SET username = %s WHERE id = %s", [user.username, other.pk])
    assert connection.get_autocommit()
    assert connection.connection.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with transaction.atomic(), statements.cursor() as cursor:
        cursor.execute(f"SELECT username FROM {USER} WHERE id = %s", [other.pk])
        assert cursor.fetchone() == ("other",)


@pytest.mark.django_db(transaction=True)
def test_the_begin_keeps_the_connections_isolation_level(user):
    connection.ensure_connection()
    raw = connection.connection
    raw.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        with transaction.atomic(), statements.cursor() as cursor:
            cursor.execute(*statements.join(("SHOW transaction_isolation", []), ("SELECT 1", [])))
            assert cursor.fetchone() == ("repeatable read",)
    finally:
        raw.isolation_level = None
