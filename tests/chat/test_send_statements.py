"""The statements of a send and of a reply's end (issue 9, "relay speed"): what each costs
on PostgreSQL, and that folding them keeps the tree and the counters right."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from chat import prompting, services, streaming, usage
from chat.models import ChatSession, Message, UsageDay


def answered(reply, *, tokens=(0, 0)) -> None:
    services.reply_finish(
        message_id=reply.assistant_message.pk,
        status=Message.Status.COMPLETE,
        content="An answer.",
        prompt_tokens=tokens[0] or None,
        completion_tokens=tokens[1] or None,
    )


def path_ids(session_id) -> list[int]:
    return list(
        Message.objects.filter(session_id=session_id, on_path=True)
        .order_by("created_at", "id")
        .values_list("pk", flat=True)
    )


@pytest.mark.django_db
def test_a_question_follows_the_current_leaf_whichever_branch_it_is_on(user):
    first = services.reply_start(user=user, content="one")
    session_id = first.session.pk
    assert first.user_message.parent_id is None
    answered(first)
    second = services.reply_start(user=user, content="two", session_id=session_id)
    answered(second)
    q1, a1 = first.user_message.pk, first.assistant_message.pk
    q2, a2 = second.user_message.pk, second.assistant_message.pk
    assert (second.user_message.parent_id, second.assistant_message.parent_id) == (a1, q2)

    # A new version of the first reply: the path is [q1, r]; the next question follows r.
    again = services.reply_regenerate(user=user, message_id=a1)
    answered(again)
    r = again.assistant_message.pk
    third = services.reply_start(user=user, content="three", session_id=session_id)
    answered(third)
    assert third.user_message.parent_id == r
    assert path_ids(session_id) == [q1, r, third.user_message.pk, third.assistant_message.pk]

    # Back to the first version: the leaf is a2, older than the newest message stored.
    services.conversation_branch(user=user, session_id=session_id, message_id=a1)
    fourth = services.reply_start(user=user, content="four", session_id=session_id)
    q4, a4 = fourth.user_message.pk, fourth.assistant_message.pk
    assert (fourth.user_message.parent_id, fourth.assistant_message.parent_id) == (a2, q4)
    assert path_ids(session_id) == [q1, a1, q2, a2, q4, a4]
    # Ids grow along the path, and the returned messages are the stored ones.
    assert a2 < q4 < a4
    stored = Message.objects.get(pk=a4)
    assert (stored.parent_id, stored.status, stored.llm) == (q4, "streaming", "parlor-dev")
    assert Message.objects.get(pk=q4).parent_id == a2
    session = ChatSession.objects.get(pk=session_id)
    assert session.message_count == 6 and session.preview == "four"
    assert fourth.session.message_count == 6


@pytest.mark.django_db
def test_a_regenerated_reply_and_an_edit_follow_their_question_and_its_parent(user):
    first = services.reply_start(user=user, content="one")
    answered(first)
    second = services.reply_start(user=user, content="two", session_id=first.session.pk)
    answered(second)
    edit = services.reply_edit(user=user, message_id=second.user_message.pk, content="deux")
    assert edit.user_message.parent_id == first.assistant_message.pk
    assert edit.assistant_message.parent_id == edit.user_message.pk
    assert edit.user_message.pk < edit.assistant_message.pk
    assert Message.objects.get(pk=edit.user_message.pk).content == "deux"
    answered(edit)
    again = services.reply_regenerate(user=user, message_id=edit.assistant_message.pk)
    assert again.user_message.pk == edit.user_message.pk
    assert Message.objects.get(pk=again.assistant_message.pk).parent_id == edit.user_message.pk
    session = ChatSession.objects.get(pk=first.session.pk)
    assert session.message_count == 4 and session.preview == "deux"


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_on_postgresql_a_send_locks_and_reads_in_one_query_and_stores_in_one_statement(user):
    first = services.reply_start(user=user, content="one")
    answered(first)
    session = first.session
    sender = User.objects.get(pk=user.pk)
    with CaptureQueriesContext(connection) as captured:
        reply = services.reply_start(user=sender, content="three", session_id=session.pk)
    statements = [query["sql"] for query in captured.captured_queries]
    locks = [sql for sql in statements if "FOR UPDATE" in sql]
    assert len(locks) == 1 and ChatSession._meta.db_table in locks[0]
    writes = [sql for sql in statements if sql.startswith(("INSERT", "UPDATE", "WITH"))]
    assert len(writes) == 1, writes
    assert Message._meta.db_table in writes[0] and ChatSession._meta.db_table in writes[0]
    assert reply.user_message.pk < reply.assistant_message.pk


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_on_postgresql_a_sends_client_id_is_checked_in_the_locks_round_trip(user):
    """The browser names every send (``client_id``): its duplicate check costs no query of
    its own, and a duplicate still answers the stored messages."""
    first = services.reply_start(user=user, content="one")
    answered(first)
    session_id = first.session.pk
    with CaptureQueriesContext(connection) as captured:
        reply = services.reply_start(
            user=user, content="two", session_id=session_id, client_id="c-2"
        )
    statements = [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == 2, statements
    assert "FOR UPDATE" in statements[0] and "client_id = 'c-2'" in statements[0]
    answered(reply)
    again = services.reply_start(user=user, content="two", session_id=session_id, client_id="c-2")
    assert again.duplicate
    assert (again.user_message.pk, again.assistant_message.pk) == (
        reply.user_message.pk,
        reply.assistant_message.pk,
    )
    with pytest.raises(services.ClientIdTaken):
        Message.objects.filter(pk=reply.assistant_message.pk).update(client_id="c-3")
        services.reply_start(user=user, content="x", session_id=session_id, client_id="c-3")
    assert Message.objects.filter(session_id=session_id).count() == 4


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_on_postgresql_a_reply_ends_in_one_statement_with_its_usage(user):
    reply = services.reply_start(user=user, content="Hi")
    with CaptureQueriesContext(connection) as captured:
        assert services.reply_finish(
            message_id=reply.assistant_message.pk,
            status=Message.Status.COMPLETE,
            content="Done.",
            prompt_tokens=3,
            completion_tokens=4,
            tools_used=[],
        )
    assert len(captured.captured_queries) == 1
    session = ChatSession.objects.get(pk=reply.session.pk)
    assert (session.prompt_tokens, session.completion_tokens) == (3, 4)
    assert (session.last_llm, session.preview) == ("parlor-dev", "Done.")
    row = UsageDay.objects.get(user=user, date=usage.today())
    assert (row.llm, row.prompt_tokens, row.completion_tokens) == ("parlor-dev", 3, 4)
    # Ended already: nothing more is written.
    assert not services.reply_finish(
        message_id=reply.assistant_message.pk, status="complete", prompt_tokens=5
    )
    assert UsageDay.objects.get(user=user).prompt_tokens == 3
    assert ChatSession.objects.get(pk=reply.session.pk).prompt_tokens == 3


@pytest.mark.django_db
def test_a_reply_with_text_and_no_tokens_sets_the_preview_only(user):
    reply = services.reply_start(user=user, content="Hi")
    assert services.reply_finish(
        message_id=reply.assistant_message.pk, status="complete", content="Hello there."
    )
    session = ChatSession.objects.get(pk=reply.session.pk)
    assert (session.preview, session.last_llm, session.prompt_tokens) == ("Hello there.", "", 0)
    assert not UsageDay.objects.exists()
    stored = Message.objects.get(pk=reply.assistant_message.pk)
    assert (stored.status, stored.content) == ("complete", "Hello there.")


@pytest.mark.django_db
def test_a_send_that_starts_a_conversation_makes_it_the_one_active_one(user):
    old = services.reply_start(user=user, content="one").session
    with CaptureQueriesContext(connection) as captured:
        new = services.reply_start(user=user, content="two", session_id=uuid.uuid4()).session
    assert new.pk != old.pk and new.is_active
    active = ChatSession.objects.filter(user=user, is_active=True)
    assert list(active.values_list("pk", flat=True)) == [new.pk]
    stored = ChatSession.objects.get(pk=new.pk)
    assert stored.message_count == 2 and stored.title == "two"
    assert Message.objects.filter(session=stored).count() == 2
    if connection.vendor == "postgresql":
        # The user lock with the read; then the deactivation, the conversation's INSERT
        # and the turn in one query.
        statements = [
            query["sql"]
            for query in captured.captured_queries
            if "SAVEPOINT" not in query["sql"]  # the test's transaction
        ]
        sessions = [sql for sql in statements if f"INSERT INTO {ChatSession._meta.db_table}" in sql]
        assert len(sessions) == 1 and sessions[0].startswith("UPDATE")
        assert "WITH q AS (INSERT INTO" in sessions[0]
        assert len(statements) == 2, statements


@pytest.mark.django_db
def test_the_context_a_send_reads_with_its_turn_is_the_one_read_after_it(user):
    """On PostgreSQL the send reads the reply's recent messages in its own query: the
    same messages as a read once it is stored (after a summary, an edit, a regeneration)."""

    def check(prepared):
        reply = prepared.reply
        after = prompting.reply_context(
            session=ChatSession.objects.get(pk=reply.session.pk),
            message_id=reply.assistant_message.pk,
        )
        assert prepared.context.messages == after.messages
        assert (reply.recent is not None) == (connection.vendor == "postgresql")
        answered(reply)
        return reply

    first = streaming.prepare(user=user, content="one", check_rate=False)
    assert first.reply.recent is None  # the first question: nothing to read
    answered(first.reply)
    session_id = first.reply.session.pk
    second = check(streaming.prepare(user=user, content="two", session_id=session_id))
    ChatSession.objects.filter(pk=session_id).update(
        summary="They said one.", summary_until_id=first.reply.assistant_message.pk
    )
    check(streaming.prepare(user=user, content="three", session_id=session_id))
    edited = check(streaming.prepare(user=user, edit=second.user_message.pk, content="deux"))
    check(streaming.prepare(user=user, regenerate=edited.assistant_message.pk))
