"""The statements of the reply path, written by hand.

Every reply runs these, and for them the ORM's query building costs more than the query:
on this machine a session read by primary key took 1.2 ms through the ORM (2.1 ms with
its model and run joined) and 0.1 ms as plain SQL, which decides whether a reply costs 10
or 30 ms of CPU. So the few statements of ``services.reply_start``, ``reply_finish``,
``replies_save_progress`` and ``prompting.reply_context`` are here, portable between
PostgreSQL and SQLite (3.35+: RETURNING), with values adapted the way the ORM adapts
them. Everything else goes through the ORM. Callers own the transaction and the rules.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime

from django.db import connection

from accounts import tokens
from config.statements import cursor as _cursor
from config.statements import join as _join
from config.statements import joins as _joins
from config.statements import parts as _parts

from .models import ChatSession, Message, UsageDay

SESSION = ChatSession._meta.db_table
MESSAGE = Message._meta.db_table
STREAMING = Message.Status.STREAMING

# The session columns a send needs, in the order the row returns them: the model's order
# of its fields (ChatSession.from_db reads them so).
SESSION_FIELDS = (
    "id",
    "user_id",
    "model_id",
    "run_id",
    "title",
    "title_source",
    "is_active",
    "archived",
    "detached_label",
    "summary",
    "summary_until_id",
    "summary_message_count",
    "message_count",
    "llm",
    "temporary",
    "operators_present",
)
# SQLite answers booleans as 0 and 1.
_BOOLEAN_FIELDS = tuple(
    index
    for index, name in enumerate(SESSION_FIELDS)
    if name in ("is_active", "archived", "temporary")
)
# The current leaf (the newest message of the path: what a new question follows) comes
# with the row, one probe of the path's index, so that the question's INSERT needs none.
_SELECT_SESSION = (
    "SELECT "
    + ", ".join(f"s.{name}" for name in SESSION_FIELDS)
    + f", m.id, m.updated_at < %s, (SELECT id FROM {MESSAGE} WHERE session_id = s.id"
    " AND on_path = %s ORDER BY created_at DESC, id DESC LIMIT 1)"
    f" FROM {SESSION} s"
    f" LEFT JOIN {MESSAGE} m ON m.session_id = s.id AND m.status = '{STREAMING}'"
)


@dataclass
class SendTarget:
    """The conversation a message goes to, the reply streaming in it, if any, and its
    current leaf (None: an empty path). With ``client_checked``, ``client_message_id``
    is the id of its message with the send's ``client_id``, or None: read with it
    (``lock_and_read``)."""

    session: ChatSession
    streaming_id: int | None
    streaming_abandoned: bool
    leaf_id: int | None = None
    client_checked: bool = False
    client_message_id: int | None = None


def _uuid_param(value):
    return ChatSession._meta.pk.get_db_prep_value(value, connection)


def _time_param(value: datetime):
    return connection.ops.adapt_datetimefield_value(value)


def _target(row) -> SendTarget | None:
    if row is None:
        return None
    values = list(row[: len(SESSION_FIELDS)])
    if not isinstance(values[0], uuid.UUID):
        values[0] = uuid.UUID(values[0])
    for index in _BOOLEAN_FIELDS:
        values[index] = bool(values[index])
    # The other fields are deferred: reading one loads it, nothing reads a stale default.
    session = ChatSession.from_db(connection.alias, list(SESSION_FIELDS), values)
    streaming_id, lapsed, leaf_id = row[len(SESSION_FIELDS) :]
    return SendTarget(session, streaming_id, bool(lapsed), leaf_id)


def _one_round_trip() -> bool:
    """Whether statements may be joined: PostgreSQL's data-modifying WITH, and several
    statements in one round trip (``config.statements.join``: they run in order, each
    with a snapshot of its own)."""
    return _joins()


USER = connection.ops.quote_name("accounts_user")
USAGE = UsageDay._meta.db_table


def lock_user(user_id: int) -> None:
    """Take the user's row lock (PostgreSQL; SQLite's IMMEDIATE transaction locks it all)."""
    if connection.features.has_select_for_update:
        with _cursor() as cursor:
            cursor.execute(f"SELECT id FROM {USER} WHERE id = %s FOR UPDATE", [user_id])


def lock_sender(user) -> int | None:
    """Take ``lock_user``'s lock for a send and return the user's own daily token quota
    (``quota_tokens_per_day``; None: QUOTA_TOKENS_PER_DAY applies).

    On PostgreSQL the locking statement reads it: no statement more than the lock. On
    SQLite (the IMMEDIATE transaction has locked everything) it is the value loaded with
    ``user`` (a signed-in browser's user is loaded whole, a bearer token's with its quota:
    accounts.tokens.token_user), else one read by primary key.

    A user a bearer token named without a lookup (accounts.tokens.token_sender) is
    confirmed by the same statement: the lock is taken only while the token is valid,
    else InvalidToken is raised.
    """
    locks = connection.features.has_select_for_update
    loaded = "quota_tokens_per_day" not in user.get_deferred_fields()
    if not locks and loaded and not tokens.unconfirmed(user):
        return user.quota_tokens_per_day
    with _cursor() as cursor:
        cursor.execute(*_sender_lock(user, locks))
        row = cursor.fetchone()
    tokens.confirm(user, row)
    return row[0] if row else None


def _sender_lock(user, lock: bool) -> tuple[str, list]:
    """The statement that locks the sender's row and reads their quota (and what
    accounts.tokens.confirming_sql adds for a token to confirm)."""
    columns, condition, params = tokens.confirming_sql(user)
    sql = f"SELECT u.quota_tokens_per_day{columns} FROM {USER} u WHERE u.id = %s{condition}"
    return sql + (" FOR UPDATE" if lock else ""), [user.pk, *params]


def _by_id(session_id: uuid.UUID, lease_cutoff: datetime) -> tuple[str, list]:
    return _SELECT_SESSION + " WHERE s.id = %s", [
        _time_param(lease_cutoff),
        True,
        _uuid_param(session_id),
    ]


def _active(user_id: int, model_id, run_id, lease_cutoff: datetime) -> tuple[str, list]:
    condition, params = _in_context("s", user_id, model_id, run_id)
    return _SELECT_SESSION + f" WHERE {condition} AND s.is_active", [
        _time_param(lease_cutoff),
        True,
        *params,
    ]


def session_by_id(session_id: uuid.UUID, *, lease_cutoff: datetime) -> SendTarget | None:
    """Return the conversation ``session_id`` (anyone's: the caller checks the owner)."""
    with _cursor() as cursor:
        cursor.execute(*_by_id(session_id, lease_cutoff))
        return _target(cursor.fetchone())


def lock_and_read(
    user,
    *,
    session_id: uuid.UUID | None = None,
    model_id: int | None = None,
    run_id: int | None = None,
    lease_cutoff: datetime,
    client_id: str | None = None,
) -> tuple[int | None, SendTarget | None]:
    """``lock_sender``, then ``session_by_id(session_id)`` or, without it, the context's
    active conversation: return (the sender's own quota, the conversation or None).

    On PostgreSQL both go in one round trip: two statements of one query, the read's
    snapshot taken once the lock is held (so it sees every send committed before), as
    when they are two queries. With ``session_id`` and ``client_id`` a third statement
    of the same round trip looks for the conversation's message with that client id
    (the send's duplicate check; the target's ``client_message_id``).
    """
    if session_id is not None:
        read, read_params = _by_id(session_id, lease_cutoff)
    else:
        read, read_params = _active(user.pk, model_id, run_id, lease_cutoff)
    if not (_one_round_trip() and connection.features.has_select_for_update):
        own_quota = lock_sender(user)
        with _cursor() as cursor:
            cursor.execute(read, read_params)
            return own_quota, _target(cursor.fetchone())
    statements = [_sender_lock(user, True), (read, read_params)]
    checked = session_id is not None and client_id is not None
    if checked:
        statements.append(
            (
                f"SELECT id FROM {MESSAGE} WHERE session_id = %s AND client_id = %s",
                [_uuid_param(session_id), client_id],
            )
        )
    with _cursor() as cursor:
        cursor.execute(*_join(*statements))
        locked = cursor.fetchone()
        tokens.confirm(user, locked)
        cursor.nextset()
        target = _target(cursor.fetchone())
        if checked:
            cursor.nextset()
            found = cursor.fetchone()
            if target is not None:
                target.client_checked = True
                target.client_message_id = found[0] if found else None
        return (locked[0] if locked else None), target


def _in_context(alias: str, user_id: int, model_id, run_id) -> tuple[str, list]:
    """Return the condition "in this user's context" (ChatSessionQuerySet.in_context's).

    General is (NULL, NULL), which ``=`` cannot match; a detached conversation is in none.
    """
    parts = [f"{alias}.user_id = %s", f"{alias}.detached_label = ''"]
    params: list = [user_id]
    for column, value in (("model_id", model_id), ("run_id", run_id)):
        if value is None:
            parts.append(f"{alias}.{column} IS NULL")
        else:
            parts.append(f"{alias}.{column} = %s")
            params.append(value)
    return " AND ".join(parts), params


def _deactivation(*, user_id: int, model_id, run_id, keep_id=None) -> tuple[str, list]:
    condition, params = _in_context(SESSION, user_id, model_id, run_id)
    sql = f"UPDATE {SESSION} SET is_active = %s WHERE {condition} AND is_active"
    if keep_id is not None:
        sql += " AND id <> %s"
        params.append(_uuid_param(keep_id))
    return sql, [False, *params]


def deactivate_context(*, user_id: int, model_id, run_id, keep_id=None) -> None:
    """Make no conversation of a context active (but ``keep_id``)."""
    with _cursor() as cursor:
        cursor.execute(
            *_deactivation(user_id=user_id, model_id=model_id, run_id=run_id, keep_id=keep_id)
        )


def insert_session(
    *,
    session_id: uuid.UUID,
    user_id: int,
    model_id,
    run_id,
    title: str,
    at: datetime,
    llm: str = "",
    temporary: bool = False,
    deactivate: bool = False,
    defer: bool = False,
) -> tuple[ChatSession, "Deferred | None"]:
    """Insert a new conversation (every column given) and return it: the active one of its
    context, or an inactive ``temporary`` one. With ``deactivate``, the context's active
    one is made inactive first (``deactivate_context``; on PostgreSQL in the same query:
    two statements, the INSERT after the UPDATE).

    With ``defer`` on PostgreSQL the statements are not sent but returned, for
    ``insert_turn`` to send ahead of the turn in its query (one round trip fewer); the
    caller must then store a turn in the same transaction. Otherwise the second value
    is None.

    A column added to ChatSession without a database default must be added here too:
    every send test fails until it is.
    """
    title_source = ChatSession.TitleSource.USER if title else ChatSession.TitleSource.PROVISIONAL
    when = _time_param(at)
    joined = _one_round_trip()
    first = None
    if deactivate and joined:
        first = _deactivation(user_id=user_id, model_id=model_id, run_id=run_id)
    elif deactivate:
        deactivate_context(user_id=user_id, model_id=model_id, run_id=run_id)
    insert = (
        f"INSERT INTO {SESSION} (id, user_id, model_id, run_id, title, title_source,"
        " is_active, pinned, archived, detached_label, summary, summary_until_id,"
        " summary_message_count, preview, created_at, updated_at, last_message_at,"
        " activity_at, message_count, prompt_tokens, completion_tokens, last_llm,"
        " imported_from, llm, temporary, folder_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, '', '', NULL, 0, '', %s, %s, NULL,"
        " %s, 0, 0, 0, '', '', %s, %s, NULL)"
    )
    params = [
        _uuid_param(session_id),
        user_id,
        model_id,
        run_id,
        title,
        title_source,
        not temporary,
        False,
        False,
        when,
        when,
        when,
        llm,
        temporary,
    ]
    if first is not None:
        insert, params = _join(first, (insert, params))
    deferred = None
    if defer and joined:
        deferred = Deferred(insert, params)
    else:
        with _cursor() as cursor:
            cursor.execute(insert, params)
    return ChatSession(
        id=session_id,
        user_id=user_id,
        model_id=model_id,
        run_id=run_id,
        title=title,
        title_source=title_source,
        is_active=not temporary,
        created_at=at,
        updated_at=at,
        activity_at=at,
        llm=llm,
        temporary=temporary,
    ), deferred


@dataclass(frozen=True)
class Deferred:
    """Statements held back to go ahead of the next query (``insert_session``'s defer)."""

    sql: str
    params: list


_INSERT_MESSAGE = (
    f"INSERT INTO {MESSAGE} (session_id, role, content, status, error, llm, prompt_tokens,"
    " completion_tokens, tools_used, client_id, parent_id, on_path, created_at, updated_at)"
)


def _message_values(
    *, session_id, role, content, status, llm, client_id, parent_id, at, written_at
) -> tuple[str, list]:
    """Return the values of one new message of the current path and their parameters.

    ``parent_id`` is its parent's id, or a str: the SQL that gives it (a column).
    """
    parent = parent_id if isinstance(parent_id, str) else "%s"
    params = [_uuid_param(session_id), role, content, status, llm, "[]", client_id]
    if parent == "%s":
        params.append(parent_id)
    params += [True, _time_param(at), _time_param(written_at)]
    return f"%s, %s, %s, %s, '', %s, NULL, NULL, %s, %s, {parent}, %s, %s, %s", params


def _message(*, pk, session_id, role, content, status, llm, client_id, parent_id, at, written_at):
    return Message(
        id=pk,
        session_id=session_id,
        role=role,
        content=content,
        status=status,
        llm=llm,
        client_id=client_id,
        parent_id=parent_id,
        on_path=True,
        created_at=at,
        updated_at=written_at,
    )


def _after_send(
    *,
    session_id: uuid.UUID,
    added: int,
    at: datetime,
    written_at: datetime,
    preview: str,
    title: str | None,
    activate: bool,
    llm: str | None,
) -> tuple[str, list]:
    """Return the UPDATE that counts a turn's ``added`` messages on the conversation (and
    with ``llm``, makes it the conversation's LLM), and its parameters."""
    sets = [
        "message_count = message_count + %s",
        "last_message_at = %s",
        "activity_at = %s",
        "updated_at = %s",
        "preview = %s",
    ]
    params = [added, _time_param(at), _time_param(at), _time_param(written_at), preview]
    if title is not None:
        sets.append("title = %s")
        params.append(title)
    if activate:
        sets.append("is_active = %s")
        sets.append("archived = %s")
        params += [True, False]
    if llm is not None:
        sets.append("llm = %s")
        params.append(llm)
    params.append(_uuid_param(session_id))
    return f"UPDATE {SESSION} SET {', '.join(sets)} WHERE id = %s", params


def session_after_send(
    *,
    session_id: uuid.UUID,
    added: int = 2,
    at: datetime,
    written_at: datetime,
    preview: str,
    title: str | None,
    activate: bool,
    llm: str | None = None,
) -> None:
    """Count ``added`` new messages on the conversation (``_after_send``'s UPDATE)."""
    with _cursor() as cursor:
        cursor.execute(
            *_after_send(
                session_id=session_id,
                added=added,
                at=at,
                written_at=written_at,
                preview=preview,
                title=title,
                activate=activate,
                llm=llm,
            )
        )


class _Ahead:
    """A cursor whose next query is sent after ``Deferred`` statements, in one round trip
    (their results, none, are stepped over)."""

    def __init__(self, cursor, deferred: Deferred):
        self.cursor = cursor
        self.deferred = deferred

    def execute(self, sql, params):
        deferred, self.deferred = self.deferred, None
        if deferred is None:
            return self.cursor.execute(sql, params)
        self.cursor.execute(*_join((deferred.sql, deferred.params), (sql, params)))
        for _ in _parts(deferred.sql, deferred.params):
            self.cursor.nextset()

    def __getattr__(self, name):
        return getattr(self.cursor, name)


def insert_turn(
    *,
    session_id: uuid.UUID,
    question: str | None,
    client_id: str | None,
    parent_id: int | None,
    reply_llm: str,
    at: datetime,
    replied_at: datetime,
    preview: str,
    title: str | None,
    activate: bool,
    llm: str | None = None,
    recent: tuple[int | None, int] | None = None,
    reply: bool = True,
    before: Deferred | None = None,
) -> tuple[Message | None, Message | None, list[tuple[str, str, str]] | None]:
    """Insert a turn on the current path and count it on the conversation: the question
    ``question`` (a child of ``parent_id``: the current leaf, or an edited question's
    parent) and a ``streaming`` reply to it; with ``question`` None, only the reply, a
    child of ``parent_id`` (a regeneration); without ``reply`` only the question (an
    operator answers it). Return (the question or None, the reply or None, the recent
    messages or None).

    The conversation's counters, times, ``preview``, ``title`` (None: kept), activation
    and LLM (``llm``; None: kept) follow (``_after_send``). The question is written at
    ``at``, the reply created at ``replied_at`` (after it on the path) and written at
    ``at``. On PostgreSQL it is one statement (data-modifying WITH: the reply's INSERT
    reads the question's id from the question's, so its id is drawn after); on SQLite,
    up to three.

    With ``recent`` (``after_id``, ``limit``), PostgreSQL also returns what
    ``recent_messages`` would answer once the turn is stored (the reply's placeholder is
    empty, so left out): a second statement of the same query, with a snapshot of its
    own that sees the turn. Elsewhere the recent messages are None: read them after.

    ``before`` (PostgreSQL: ``insert_session``'s deferred statements) goes first in the
    same query.
    """
    if question is None and not reply:
        raise ValueError("a turn stores a question, a reply or both")
    added = (question is not None) + reply
    update, update_params = _after_send(
        session_id=session_id,
        added=added,
        at=replied_at,
        written_at=at,
        preview=preview,
        title=title,
        activate=activate,
        llm=llm,
    )
    joined = _one_round_trip()

    def values(role, content, status, llm, client_id, parent_id, at_):
        return _message_values(
            session_id=session_id,
            role=role,
            content=content,
            status=status,
            llm=llm,
            client_id=client_id,
            parent_id=parent_id,
            at=at_,
            written_at=at,
        )

    def reply_values(parent):
        return values(Message.Role.ASSISTANT, "", STREAMING, reply_llm, None, parent, replied_at)

    then = None
    if joined and recent is not None:
        then = _recent(session_id=session_id, exclude_id=None, after_id=recent[0], limit=recent[1])

    def with_then(sql, params):
        return _join((sql, params), then) if then else (sql, params)

    question_id = reply_id = rows = None
    with _cursor() as cursor:
        if before is not None:
            if not joined:
                raise ValueError("statements are deferred only where queries are joined")
            cursor = _Ahead(cursor, before)
        if not reply:
            question_sql, question_params = values(
                Message.Role.USER, question, Message.Status.COMPLETE, "", client_id, parent_id, at
            )
            if joined:
                cursor.execute(
                    *with_then(
                        f"WITH q AS ({_INSERT_MESSAGE} VALUES ({question_sql}) RETURNING id),"
                        f" u AS ({update}) SELECT id FROM q",
                        [*question_params, *update_params],
                    )
                )
            else:
                cursor.execute(
                    f"{_INSERT_MESSAGE} VALUES ({question_sql}) RETURNING id", question_params
                )
            question_id = cursor.fetchone()[0]
        elif question is None:
            reply_sql, reply_params = reply_values(parent_id)
            if joined:
                cursor.execute(
                    *with_then(
                        f"WITH r AS ({_INSERT_MESSAGE} VALUES ({reply_sql}) RETURNING id),"
                        f" u AS ({update}) SELECT id FROM r",
                        [*reply_params, *update_params],
                    )
                )
            else:
                cursor.execute(f"{_INSERT_MESSAGE} VALUES ({reply_sql}) RETURNING id", reply_params)
            reply_id = cursor.fetchone()[0]
        else:
            question_sql, question_params = values(
                Message.Role.USER, question, Message.Status.COMPLETE, "", client_id, parent_id, at
            )
            if joined:
                # The reply's parent is the question's id, from the INSERT it reads.
                reply_sql, reply_params = reply_values("q.id")
                cursor.execute(
                    *with_then(
                        f"WITH q AS ({_INSERT_MESSAGE} VALUES ({question_sql}) RETURNING id),"
                        f" r AS ({_INSERT_MESSAGE} SELECT {reply_sql} FROM q RETURNING id),"
                        f" u AS ({update}) SELECT q.id, r.id FROM q, r",
                        [*question_params, *reply_params, *update_params],
                    )
                )
                question_id, reply_id = cursor.fetchone()
            else:
                cursor.execute(
                    f"{_INSERT_MESSAGE} VALUES ({question_sql}) RETURNING id", question_params
                )
                question_id = cursor.fetchone()[0]
                reply_sql, reply_params = reply_values(question_id)
                cursor.execute(f"{_INSERT_MESSAGE} VALUES ({reply_sql}) RETURNING id", reply_params)
                reply_id = cursor.fetchone()[0]
        if not joined:
            cursor.execute(update, update_params)
        elif then:
            cursor.nextset()
            rows = cursor.fetchall()
    asked = None
    if question is not None:
        asked = _message(
            pk=question_id,
            session_id=session_id,
            role=Message.Role.USER,
            content=question,
            status=Message.Status.COMPLETE,
            llm="",
            client_id=client_id,
            parent_id=parent_id,
            at=at,
            written_at=at,
        )
    placeholder = None
    if reply:
        placeholder = _message(
            pk=reply_id,
            session_id=session_id,
            role=Message.Role.ASSISTANT,
            content="",
            status=STREAMING,
            llm=reply_llm,
            client_id=None,
            parent_id=question_id if question is not None else parent_id,
            at=replied_at,
            written_at=at,
        )
    return asked, placeholder, rows


def set_auto_title(*, session_id, title: str) -> bool:
    """Set a generated title unless the user named the conversation; return if set."""
    with _cursor() as cursor:
        cursor.execute(
            f"UPDATE {SESSION} SET title = %s, title_source = %s"
            " WHERE id = %s AND title_source <> %s",
            [
                title,
                ChatSession.TitleSource.AUTO,
                _uuid_param(session_id),
                ChatSession.TitleSource.USER,
            ],
        )
        return cursor.rowcount == 1


def _finish_sets(fields: dict) -> tuple[str, list]:
    names, params = [], []
    for name, value in fields.items():
        names.append(f"{name} = %s")
        if isinstance(value, datetime):
            value = _time_param(value)
        elif name == "tools_used":
            value = json.dumps(value)
        params.append(value)
    return ", ".join(names), params


def finish_is_one_statement() -> bool:
    """Whether ``finish_reply`` is one statement (atomic without a transaction)."""
    return _one_round_trip()


def finish_reply(
    *,
    message_id: int,
    fields: dict,
    prompt_tokens: int,
    completion_tokens: int,
    preview: str | None,
    day: date,
) -> bool:
    """End a streaming reply: set its final ``fields``, then add its tokens (and
    ``preview``, None: kept) to its conversation, and its tokens to its owner's usage of
    ``day`` with its LLM (``UsageDay``). Return False if it was no longer streaming:
    then nothing is written.

    The conversation is written when there are tokens or a preview (with tokens its
    last LLM becomes the reply's), the usage when there are tokens: one upsert of the
    (user, day, LLM) row, atomic however many replies finish at once. On PostgreSQL all
    of it is one statement (data-modifying WITH), atomic by itself; on SQLite up to
    three, in the caller's transaction (``finish_is_one_statement``).
    """
    tokens = bool(prompt_tokens or completion_tokens)
    sets, params = _finish_sets(fields)
    params += [message_id, STREAMING]
    totals = ["prompt_tokens = prompt_tokens + %s", "completion_tokens = completion_tokens + %s"]
    totals_params: list = [prompt_tokens, completion_tokens]
    if preview is not None:
        totals.append("preview = %s")
        totals_params.append(preview)
    usage_params = [connection.ops.adapt_datefield_value(day), prompt_tokens, completion_tokens]
    upsert = (
        f"INSERT INTO {USAGE} (user_id, date, llm, prompt_tokens, completion_tokens) {{}}"
        " ON CONFLICT (user_id, date, llm) DO UPDATE SET"
        f" prompt_tokens = {USAGE}.prompt_tokens + excluded.prompt_tokens,"
        f" completion_tokens = {USAGE}.completion_tokens + excluded.completion_tokens"
    )
    if finish_is_one_statement():
        sql = (
            f"WITH f AS (UPDATE {MESSAGE} SET {sets} WHERE id = %s AND status = %s"
            " RETURNING session_id, llm)"
        )
        if tokens or preview is not None:
            if tokens:
                totals.append("last_llm = f.llm")
            sql += (
                f", s AS (UPDATE {SESSION} SET {', '.join(totals)} FROM f"
                f" WHERE {SESSION}.id = f.session_id RETURNING {SESSION}.user_id)"
            )
            params += totals_params
        if tokens:
            sql += ", u AS (" + upsert.format("SELECT s.user_id, %s, f.llm, %s, %s FROM s, f") + ")"
            params += usage_params
        with _cursor() as cursor:
            cursor.execute(sql + " SELECT count(*) FROM f", params)
            return cursor.fetchone()[0] == 1
    with _cursor() as cursor:
        cursor.execute(f"UPDATE {MESSAGE} SET {sets} WHERE id = %s AND status = %s", params)
        if cursor.rowcount != 1:
            return False
        if tokens or preview is not None:
            if tokens:
                totals.append(f"last_llm = (SELECT llm FROM {MESSAGE} WHERE id = %s)")
                totals_params.append(message_id)
            cursor.execute(
                f"UPDATE {SESSION} SET {', '.join(totals)}"
                f" WHERE id = (SELECT session_id FROM {MESSAGE} WHERE id = %s)",
                [*totals_params, message_id],
            )
        if tokens:
            cursor.execute(
                upsert.format(
                    f"SELECT s.user_id, %s, m.llm, %s, %s FROM {MESSAGE} m"
                    f" JOIN {SESSION} s ON s.id = m.session_id WHERE m.id = %s"
                ),
                [*usage_params, message_id],
            )
    return True


def tokens_used(*, user_id: int, day: date) -> int:
    """Return the tokens (prompt and completion) ``user_id`` spent on ``day``, every LLM.

    A range of the (user, date, llm) unique index: the day's few rows.
    """
    with _cursor() as cursor:
        cursor.execute(
            f"SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM {USAGE}"
            " WHERE user_id = %s AND date = %s",
            [user_id, connection.ops.adapt_datefield_value(day)],
        )
        return int(cursor.fetchone()[0])


def save_progress(*, message_id: int, content: str, at: datetime) -> None:
    with _cursor() as cursor:
        cursor.execute(
            f"UPDATE {MESSAGE} SET content = %s, updated_at = %s WHERE id = %s AND status = %s",
            [content, _time_param(at), message_id, STREAMING],
        )


def renew(*, message_ids: list[int], at: datetime) -> None:
    marks = ", ".join(["%s"] * len(message_ids))
    with _cursor() as cursor:
        cursor.execute(
            f"UPDATE {MESSAGE} SET updated_at = %s WHERE id IN ({marks}) AND status = %s",
            [_time_param(at), *message_ids, STREAMING],
        )


def _recent(
    *, session_id: uuid.UUID, exclude_id: int | None, after_id: int | None, limit: int
) -> tuple[str, list]:
    sql = (
        f"SELECT role, content, author_name FROM {MESSAGE} WHERE session_id = %s"
        " AND on_path = %s AND role IN (%s, %s, %s) AND NOT (role = %s AND content = '')"
    )
    params = [
        _uuid_param(session_id),
        True,
        Message.Role.USER,
        Message.Role.ASSISTANT,
        Message.Role.OPERATOR,
        Message.Role.ASSISTANT,
    ]
    if exclude_id is not None:
        sql += " AND id <> %s"
        params.append(exclude_id)
    if after_id is not None:
        # The bound on created_at makes it a range of the index: the older messages the
        # summary covers are not read at all, however many there are.
        sql += f" AND created_at >= (SELECT created_at FROM {MESSAGE} WHERE id = %s) AND id > %s"
        params += [after_id, after_id]
    sql += " ORDER BY created_at DESC, id DESC LIMIT %s"
    params.append(limit)
    return sql, params


def recent_messages(
    *, session_id: uuid.UUID, exclude_id: int | None, after_id: int | None, limit: int
) -> list[tuple[str, str, str]]:
    """Return (role, content, author_name) of the current path's user, assistant and
    operator messages, newest first.

    Empty assistant messages (placeholders, failed replies with no text) are left out,
    and ``exclude_id``; with ``after_id`` only messages after it. Reads the path's index
    backwards, at most ``limit`` rows.
    """
    with _cursor() as cursor:
        cursor.execute(
            *_recent(session_id=session_id, exclude_id=exclude_id, after_id=after_id, limit=limit)
        )
        return cursor.fetchall()


def climb_to_path(message_id: int) -> list[tuple[int, bool]]:
    """Return (id, on_path) of a message and its ancestors up to the current path.

    From the message up: the ancestors off the path, then the deepest one on it, if any
    (else the last is a root off the path). One statement, one row per step.
    """
    with _cursor() as cursor:
        cursor.execute(
            f"WITH RECURSIVE up(id, parent_id, on_path) AS ("
            f" SELECT id, parent_id, on_path FROM {MESSAGE} WHERE id = %s"
            f" UNION ALL SELECT m.id, m.parent_id, m.on_path FROM {MESSAGE} m"
            " JOIN up ON m.id = up.parent_id WHERE up.on_path = %s"
            ") SELECT id, on_path FROM up",
            [message_id, False],
        )
        return [(pk, bool(on_path)) for pk, on_path in cursor.fetchall()]


def newest_descendant(message_id: int) -> int:
    """Return the id of the newest message of the subtree under a message (or its own).

    A child is written after its parent, so the newest is a leaf.
    """
    with _cursor() as cursor:
        cursor.execute(
            f"WITH RECURSIVE down(id) AS (SELECT id FROM {MESSAGE} WHERE id = %s UNION ALL"
            f" SELECT m.id FROM {MESSAGE} m JOIN down ON m.parent_id = down.id)"
            " SELECT max(id) FROM down",
            [message_id],
        )
        return cursor.fetchone()[0]
