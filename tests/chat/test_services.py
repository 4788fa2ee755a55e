"""Conversation services: the lifecycle rules of SPEC 2-3, and bad input changes nothing."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from chat import selectors, services
from chat.exceptions import (
    ConversationNotFound,
    ConversationReadOnly,
    DomainError,
    EmptyMessage,
    GenerationInProgress,
    InvalidContext,
    MessageTooLong,
)
from chat.models import ChatSession, Message
from models_app import services as model_services
from models_app.exceptions import ModelNotFound, RunNotFound
from tests.factories import ModelFactory, RunFactory, UserFactory

pytestmark = pytest.mark.django_db


def snapshot():
    """Return every session and message row, to prove that a refused call changed nothing."""
    return (
        list(ChatSession.objects.order_by("pk").values()),
        list(Message.objects.order_by("pk").values()),
    )


def send(user, content="Hello there", **kwargs):
    """Store a user message and finish its reply, like a whole exchange."""
    reply = services.reply_start(user=user, content=content, **kwargs)
    services.reply_finish(
        message_id=reply.assistant_message.pk,
        content="A reply.",
        status=Message.Status.COMPLETE,
        prompt_tokens=10,
        completion_tokens=3,
    )
    return reply


def active_ids(user, model=None, run=None):
    return list(
        ChatSession.objects.for_user(user)
        .in_context(model_id=model.pk if model else None, run_id=run.pk if run else None)
        .filter(is_active=True)
        .values_list("pk", flat=True)
    )


# --- start, get-or-create, resume -------------------------------------------------------


def test_start_deactivates_the_previous_active_session_of_the_context(user, model):
    first, created = services.conversation_start(user=user)
    second, _ = services.conversation_start(user=user)
    model_session, _ = services.conversation_start(user=user, model_id=model.pk)
    assert created is True
    first.refresh_from_db()
    assert first.is_active is False
    assert active_ids(user) == [second.pk]
    # Another context keeps its own active session.
    assert active_ids(user, model) == [model_session.pk]


def test_a_run_context_implies_its_model(user, run):
    session, created = services.conversation_start(user=user, run_id=run.pk)
    assert created is True
    assert (session.model_id, session.run_id) == (run.model_id, run.pk)
    assert selectors.session_active(user=user, model_id=run.model_id, run_id=run.pk) == session


def test_start_with_the_same_client_uuid_is_idempotent(user, model):
    client_id = uuid.uuid4()
    session, created = services.conversation_start(
        user=user, model_id=model.pk, session_id=str(client_id)
    )
    again, created_again = services.conversation_start(
        user=user, model_id=model.pk, session_id=client_id
    )
    assert session.pk == again.pk == client_id
    assert (created, created_again) == (True, False)
    assert ChatSession.objects.count() == 1


def test_start_with_another_users_uuid_is_not_found(user, other_user):
    theirs, _ = services.conversation_start(user=other_user)
    before = snapshot()
    with pytest.raises(ConversationNotFound):
        services.conversation_start(user=user, session_id=theirs.pk)
    assert snapshot() == before


def test_start_with_a_uuid_of_another_context_is_refused(user, model):
    session, _ = services.conversation_start(user=user)
    before = snapshot()
    with pytest.raises(InvalidContext):
        services.conversation_start(user=user, model_id=model.pk, session_id=session.pk)
    assert snapshot() == before


def test_resume_switches_the_active_session_without_touching_activity(user):
    older, _ = services.conversation_start(user=user)
    send(user, "First conversation", session_id=older.pk)
    newer, _ = services.conversation_start(user=user)
    send(user, "Second conversation", session_id=newer.pk)
    older.refresh_from_db()
    order_before = [s.pk for s in selectors.session_list(user=user)]
    stamps = (older.updated_at, older.last_message_at, older.activity_at)

    resumed = services.conversation_resume(user=user, session_id=str(older.pk))

    assert resumed.is_active is True
    assert active_ids(user) == [older.pk]
    assert (resumed.updated_at, resumed.last_message_at, resumed.activity_at) == stamps
    assert [s.pk for s in selectors.session_list(user=user)] == order_before == [newer.pk, older.pk]


def test_resume_of_the_active_session_changes_nothing(user):
    session, _ = services.conversation_start(user=user)
    before = snapshot()
    assert services.conversation_resume(user=user, session_id=session.pk).pk == session.pk
    assert snapshot() == before


def test_resume_brings_an_archived_conversation_back(user):
    session, _ = services.conversation_start(user=user)
    services.conversation_update(user=user, session_id=session.pk, archived=True)
    other, _ = services.conversation_start(user=user)
    resumed = services.conversation_resume(user=user, session_id=session.pk)
    assert (resumed.is_active, resumed.archived) == (True, False)
    other.refresh_from_db()
    assert other.is_active is False


def test_resume_of_a_conversation_of_a_deleted_model_is_read_only(user, model):
    session, _ = services.conversation_start(user=user, model_id=model.pk)
    model_services.model_delete(user=user, model_id=model.pk)
    before = snapshot()
    with pytest.raises(ConversationReadOnly):
        services.conversation_resume(user=user, session_id=session.pk)
    assert snapshot() == before


# --- messages ---------------------------------------------------------------------------


def test_reply_start_stores_both_messages_and_keeps_the_counters(user):
    long_text = "Please explain how a trailing stop works for a swing trade in detail " * 2
    reply = services.reply_start(user=user, content=long_text)
    session = reply.session
    assert reply.session_created is True and reply.first_message is True
    assert reply.user_message.content == long_text
    assert reply.assistant_message.status == Message.Status.STREAMING
    assert reply.assistant_message.reply_to_id == reply.user_message.pk
    # As stored (one statement on PostgreSQL): the question first, also by id, which the
    # reads of a conversation use to order messages of the same instant.
    stored = list(Message.objects.filter(session=session).order_by("id"))
    assert [(m.pk, m.role, m.status, m.content, m.reply_to_id) for m in stored] == [
        (reply.user_message.pk, "user", "complete", long_text, None),
        (reply.assistant_message.pk, "assistant", "streaming", "", reply.user_message.pk),
    ]
    assert [m.created_at for m in stored] == [
        reply.user_message.created_at,
        reply.assistant_message.created_at,
    ]
    assert session.message_count == 2
    assert session.last_message_at == reply.assistant_message.created_at
    assert session.is_active is True
    # The provisional title: the first ~50 characters, cut at a word.
    assert session.title.endswith("…")
    assert len(session.title) <= services.PROVISIONAL_TITLE_CHARS + 1
    assert long_text.startswith(session.title.rstrip("…"))
    assert session.title_source == ChatSession.TitleSource.PROVISIONAL


def test_a_short_first_message_is_the_whole_title_and_later_messages_keep_it(user):
    first = send(user, "  Hello   world  ")
    second = send(user, "Something else entirely", session_id=first.session.pk)
    session = selectors.session_get(user=user, session_id=first.session.pk)
    assert session.title == "Hello world"
    assert second.first_message is False
    assert session.message_count == 4
    assert session.preview == "A reply."
    assert (session.prompt_tokens, session.completion_tokens) == (20, 6)


def test_auto_title_replaces_the_provisional_title_but_never_a_rename(user):
    session = send(user, "What is a good stop loss?").session
    assert services.conversation_set_auto_title(session_id=session.pk, title='"Stop losses"')
    assert selectors.session_get(user=user, session_id=session.pk).title == "Stop losses"

    services.conversation_update(user=user, session_id=session.pk, title="My own title")
    assert not services.conversation_set_auto_title(session_id=session.pk, title="Generated")
    renamed = selectors.session_get(user=user, session_id=session.pk)
    assert (renamed.title, renamed.title_source) == ("My own title", ChatSession.TitleSource.USER)


def test_sending_into_an_inactive_conversation_makes_it_active(user, model):
    old = send(user, "Old conversation", model_id=model.pk).session
    new, _ = services.conversation_start(user=user, model_id=model.pk)
    reply = send(user, "Back to the old one", session_id=old.pk)
    assert reply.session.is_active is True
    assert active_ids(user, model) == [old.pk]
    new.refresh_from_db()
    assert new.is_active is False


def test_sending_without_a_session_goes_to_the_active_one(user, run):
    first = send(user, "One", run_id=run.pk)
    second = send(user, "Two", run_id=run.pk)
    assert second.session.pk == first.session.pk
    assert second.session_created is False
    assert (second.session.model_id, second.session.run_id) == (run.model_id, run.pk)


def test_an_unknown_session_id_becomes_the_new_conversation(user, model):
    client_uuid = uuid.uuid4()
    reply = send(user, "Ephemeral no more", session_id=str(client_uuid), model_id=model.pk)
    assert reply.session.pk == client_uuid
    assert reply.session_created is True
    assert reply.session.model_id == model.pk


def test_reply_start_with_the_same_client_id_returns_the_same_messages(user):
    first = services.reply_start(user=user, content="Hi", client_id="c-1")
    before = snapshot()
    again = services.reply_start(
        user=user, content="Hi", client_id="c-1", session_id=first.session.pk
    )
    assert again.duplicate is True
    assert again.user_message.pk == first.user_message.pk
    assert again.assistant_message.pk == first.assistant_message.pk
    assert snapshot() == before


def test_a_second_message_while_a_reply_streams_is_refused(user):
    first = services.reply_start(user=user, content="Hi")
    before = snapshot()
    with pytest.raises(GenerationInProgress):
        services.reply_start(user=user, content="Again", session_id=first.session.pk)
    assert snapshot() == before


def test_reply_finish_is_final_once(user):
    reply = services.reply_start(user=user, content="Hi")
    services.replies_save_progress(contents={reply.assistant_message.pk: "Par"})
    assert Message.objects.get(pk=reply.assistant_message.pk).content == "Par"
    assert services.reply_finish(
        message_id=reply.assistant_message.pk, content="Partial", status=Message.Status.STOPPED
    )
    assert not services.reply_finish(
        message_id=reply.assistant_message.pk, content="Late", status=Message.Status.COMPLETE
    )
    message = Message.objects.get(pk=reply.assistant_message.pk)
    assert (message.content, message.status) == ("Partial", Message.Status.STOPPED)


def test_replies_whose_writer_died_become_errors_with_their_content(user):
    reply = services.reply_start(user=user, content="Hi")
    live = services.reply_start(user=UserFactory(), content="Hi")
    services.replies_save_progress(contents={reply.assistant_message.pk: "Half a rep"})
    # Its writer stopped renewing it a lease ago; the other one is alive.
    lapsed = timezone.now() - timedelta(seconds=services.REPLY_LEASE + 1)
    Message.objects.filter(pk=reply.assistant_message.pk).update(updated_at=lapsed)
    settled = services.replies_settle_abandoned()
    assert settled == [(reply.assistant_message.pk, str(reply.session.pk))]
    assert Message.objects.get(pk=live.assistant_message.pk).status == Message.Status.STREAMING
    message = Message.objects.get(pk=reply.assistant_message.pk)
    assert (message.status, message.error, message.content) == (
        Message.Status.ERROR,
        "interrupted",
        "Half a rep",
    )


# --- update and delete ------------------------------------------------------------------


def test_update_renames_pins_and_archiving_deactivates(user):
    session, _ = services.conversation_start(user=user)
    updated = services.conversation_update(
        user=user, session_id=session.pk, title="  Named  ", pinned=True, archived=True
    )
    assert (updated.title, updated.pinned, updated.archived, updated.is_active) == (
        "Named",
        True,
        True,
        False,
    )


def test_deleting_a_conversation_deletes_its_messages(user):
    keep = send(user, "Keep me").session
    doomed, _ = services.conversation_start(user=user)
    send(user, "Delete me", session_id=doomed.pk)
    services.conversation_delete(user=user, session_id=doomed.pk)
    assert not ChatSession.objects.filter(pk=doomed.pk).exists()
    assert not Message.objects.filter(session_id=doomed.pk).exists()
    assert Message.objects.filter(session_id=keep.pk).count() == 2


def test_delete_all_deletes_only_the_users_conversations(user, other_user):
    send(user, "Mine")
    services.conversation_start(user=user)
    theirs = send(other_user, "Theirs").session
    assert services.conversation_delete_all(user=user) == 2
    assert list(ChatSession.objects.values_list("pk", flat=True)) == [theirs.pk]
    assert Message.objects.filter(session=theirs).count() == 2


def test_delete_empty_removes_only_old_conversations_without_messages(user, other_user):
    old_empty, _ = services.conversation_start(user=user)
    old_other_users, _ = services.conversation_start(user=other_user)
    old_with_messages = send(user, "Has messages", session_id=str(uuid.uuid4())).session
    new_empty, _ = services.conversation_start(user=user)
    two_days_ago = timezone.now() - timedelta(days=2)
    ChatSession.objects.filter(
        pk__in=[old_empty.pk, old_other_users.pk, old_with_messages.pk]
    ).update(created_at=two_days_ago)

    assert services.conversations_delete_empty(older_than=timedelta(hours=24), dry_run=True) == 2
    assert ChatSession.objects.count() == 4
    assert services.conversations_delete_empty(older_than=timedelta(hours=24)) == 2
    assert set(ChatSession.objects.values_list("pk", flat=True)) == {
        old_with_messages.pk,
        new_empty.pk,
    }


# --- bad input changes nothing ----------------------------------------------------------


@pytest.fixture
def world(user, other_user):
    """Conversations of two users, so a refused call has something it could have broken."""
    mine = send(user, "My conversation").session
    theirs = send(other_user, "Their conversation").session
    return mine, theirs


@pytest.mark.parametrize(
    "call",
    [
        lambda u, t: services.conversation_resume(user=u, session_id=t.pk),
        lambda u, t: services.conversation_update(user=u, session_id=t.pk, title="Mine now"),
        lambda u, t: services.conversation_update(user=u, session_id=t.pk, pinned=True),
        lambda u, t: services.conversation_delete(user=u, session_id=t.pk),
        lambda u, t: services.reply_start(user=u, content="Hi", session_id=t.pk),
        lambda u, t: selectors.session_get(user=u, session_id=t.pk),
    ],
    ids=["resume", "rename", "pin", "delete", "send", "get"],
)
def test_another_users_conversation_is_not_found(user, world, call):
    _, theirs = world
    before = snapshot()
    with pytest.raises(ConversationNotFound):
        call(user, theirs)
    assert snapshot() == before


def test_another_users_model_and_run_are_not_found(user, other_user, world):
    their_run = RunFactory(model=ModelFactory(owner=other_user))
    before = snapshot()
    with pytest.raises(ModelNotFound):
        services.conversation_start(user=user, model_id=their_run.model_id)
    with pytest.raises(RunNotFound):
        services.reply_start(user=user, content="Hi", run_id=their_run.pk)
    assert snapshot() == before


def test_a_run_of_another_model_is_refused(user, model, world):
    run_of_other_model = RunFactory(model=ModelFactory(owner=user))
    before = snapshot()
    with pytest.raises(DomainError) as excinfo:
        services.conversation_start(user=user, model_id=model.pk, run_id=run_of_other_model.pk)
    assert excinfo.value.field == "run"
    with pytest.raises(DomainError):
        services.reply_start(
            user=user, content="Hi", model_id=model.pk, run_id=run_of_other_model.pk
        )
    assert snapshot() == before


def test_sending_into_a_conversation_of_another_context_is_refused(user, model, world):
    mine, _ = world  # a general conversation
    before = snapshot()
    with pytest.raises(InvalidContext):
        services.reply_start(user=user, content="Hi", session_id=mine.pk, model_id=model.pk)
    assert snapshot() == before


@pytest.mark.parametrize("content", ["", "   \n\t ", None, 42])
def test_an_empty_or_non_text_message_is_refused(user, world, content):
    mine, _ = world
    before = snapshot()
    with pytest.raises(DomainError) as excinfo:
        services.reply_start(user=user, content=content, session_id=mine.pk)
    assert excinfo.value.field == "content"
    if isinstance(content, str):
        assert isinstance(excinfo.value, EmptyMessage)
    assert snapshot() == before


def test_an_over_long_message_is_refused(user, world, settings):
    mine, _ = world
    settings.MAX_MESSAGE_CHARS = 100
    before = snapshot()
    with pytest.raises(MessageTooLong) as excinfo:
        services.reply_start(user=user, content="x" * 101, session_id=mine.pk)
    assert "limit is 100" in excinfo.value.message
    services.check_message_content("x" * 100)  # exactly the limit is fine
    assert snapshot() == before


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "", "0" * 33])
def test_an_invalid_uuid_is_refused_with_a_clear_error(user, world, bad_id):
    before = snapshot()
    with pytest.raises(DomainError) as excinfo:
        services.conversation_resume(user=user, session_id=bad_id)
    assert "not a valid conversation id" in excinfo.value.message
    with pytest.raises(DomainError):
        services.conversation_start(user=user, session_id=bad_id or "x")
    assert snapshot() == before


@pytest.mark.parametrize(
    "changes",
    [{"pinned": "yes"}, {"archived": 1}, {"title": ""}, {"title": "x" * 201}, {"title": 5}],
)
def test_bad_updates_are_refused(user, world, changes):
    mine, _ = world
    before = snapshot()
    with pytest.raises(DomainError) as excinfo:
        services.conversation_update(user=user, session_id=mine.pk, **changes)
    assert excinfo.value.field == next(iter(changes))
    assert snapshot() == before


def test_bad_client_ids_and_bad_model_ids_are_refused(user, world):
    mine, _ = world
    before = snapshot()
    with pytest.raises(DomainError) as excinfo:
        services.reply_start(user=user, content="Hi", session_id=mine.pk, client_id="x" * 65)
    assert excinfo.value.field == "client_id"
    for bad in ("abc", -1, True, 2**70):
        with pytest.raises(DomainError):
            services.conversation_start(user=user, model_id=bad)
    with pytest.raises(DomainError):
        services.conversations_delete_empty(older_than=timedelta(hours=-1))
    assert snapshot() == before


def test_sending_into_a_conversation_of_a_deleted_run_is_refused(user, run):
    session = send(user, "About the run", run_id=run.pk).session
    model_services.run_delete(user=user, run_id=run.pk)
    before = snapshot()
    with pytest.raises(ConversationReadOnly):
        services.reply_start(user=user, content="Still there?", session_id=session.pk)
    assert snapshot() == before
