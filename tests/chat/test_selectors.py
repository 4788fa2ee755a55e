"""Reads: a user's selectors never return another user's rows; orders and pages hold."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import selectors, services
from chat.exceptions import ConversationNotFound, DomainError
from chat.models import ChatSession, Message
from models_app import selectors as model_selectors
from models_app import services as model_services
from models_app.exceptions import ModelNotFound, RunNotFound
from tests.factories import ChatSessionFactory, ModelFactory, RunFactory, append_message

pytestmark = pytest.mark.django_db


def talk(user, content, **kwargs):
    reply = services.reply_start(user=user, content=content, **kwargs)
    services.reply_finish(
        message_id=reply.assistant_message.pk, content="ok", status=Message.Status.COMPLETE
    )
    return reply.session


@pytest.fixture
def both(user, other_user, model, run):
    """Conversations of both users in every context."""
    theirs_model = ModelFactory(owner=other_user)
    theirs_run = RunFactory(model=theirs_model)
    mine = {
        "general": talk(user, "general"),
        "model": talk(user, "model", model_id=model.pk),
        "run": talk(user, "run", run_id=run.pk),
    }
    theirs = {
        "general": talk(other_user, "their general"),
        "model": talk(other_user, "their model", model_id=theirs_model.pk),
        "run": talk(other_user, "their run", run_id=theirs_run.pk),
    }
    return mine, theirs


def test_session_list_returns_only_the_users_sessions(user, other_user, both):
    mine, theirs = both
    listed = {s.pk for s in selectors.session_list(user=user, archived=None)}
    assert listed == {s.pk for s in mine.values()}
    for context, session in mine.items():
        assert [s.pk for s in selectors.session_list(user=user, context=context)] == [session.pk]


def test_filters_by_another_users_model_or_run_return_nothing(user, both):
    _, theirs = both
    assert not selectors.session_list(user=user, model_id=theirs["model"].model_id).exists()
    assert not selectors.session_list(user=user, run_id=theirs["run"].run_id).exists()


def test_getters_answer_not_found_for_another_users_rows(user, both):
    _, theirs = both
    with pytest.raises(ConversationNotFound):
        selectors.session_get(user=user, session_id=theirs["general"].pk)
    with pytest.raises(ModelNotFound):
        model_selectors.model_get(user=user, model_id=theirs["model"].model_id)
    with pytest.raises(RunNotFound):
        model_selectors.run_get(user=user, run_id=theirs["run"].run_id)
    assert selectors.session_active(user=user, model_id=theirs["model"].model_id) is None


def test_session_active_finds_the_context_active_session(user, model, run, both):
    mine, _ = both
    assert selectors.session_active(user=user).pk == mine["general"].pk
    assert selectors.session_active(user=user, model_id=model.pk).pk == mine["model"].pk
    assert (
        selectors.session_active(user=user, model_id=model.pk, run_id=run.pk).pk == mine["run"].pk
    )


def test_session_list_orders_pinned_first_then_recent_activity(user):
    sessions = [talk(user, "conversation 0")]
    for n in range(1, 4):
        fresh, _ = services.conversation_start(user=user)
        sessions.append(talk(user, f"conversation {n}", session_id=fresh.pk))
    base = timezone.now() - timedelta(hours=1)
    for minutes, session in enumerate(sessions):
        ChatSession.objects.filter(pk=session.pk).update(
            activity_at=base + timedelta(minutes=minutes)
        )
    services.conversation_update(user=user, session_id=sessions[0].pk, pinned=True)
    listed = [s.pk for s in selectors.session_list(user=user)]
    assert listed == [sessions[0].pk, sessions[3].pk, sessions[2].pk, sessions[1].pk]
    # Switching is not activity: the order stays.
    services.conversation_resume(user=user, session_id=sessions[1].pk)
    assert [s.pk for s in selectors.session_list(user=user)] == listed


def test_archived_sessions_are_hidden_by_default(user):
    kept = talk(user, "kept")
    archived, _ = services.conversation_start(user=user)
    services.conversation_update(user=user, session_id=archived.pk, archived=True)
    assert [s.pk for s in selectors.session_list(user=user)] == [kept.pk]
    assert [s.pk for s in selectors.session_list(user=user, archived=True)] == [archived.pk]


def test_conversations_of_deleted_models_and_runs_are_listed_as_detached(user, model, run):
    run_session = talk(user, "about the run", run_id=run.pk)
    other_model = ModelFactory(owner=user)
    model_session = talk(user, "about the model", model_id=other_model.pk)
    model_services.run_delete(user=user, run_id=run.pk)
    model_services.model_delete(user=user, model_id=other_model.pk)
    detached = {s.pk for s in selectors.session_list(user=user, context="detached")}
    assert detached == {run_session.pk, model_session.pk}
    assert not selectors.session_list(user=user, context="model").exists()
    assert not selectors.session_list(user=user, context="run").exists()
    assert selectors.session_active(user=user, model_id=model.pk) is None


def test_an_unknown_context_is_refused(user):
    with pytest.raises(DomainError) as excinfo:
        selectors.session_list(user=user, context="everything")
    assert excinfo.value.field == "context"


def test_message_page_walks_back_in_constant_queries(user):
    session, _ = services.conversation_start(user=user)
    now = timezone.now()
    for n in range(12):
        append_message(session, f"m{n}", at=now + timedelta(seconds=n))
    page, has_more = selectors.message_page(session=session, limit=5)
    assert [m.content for m in page] == ["m7", "m8", "m9", "m10", "m11"]
    assert has_more is True
    with CaptureQueriesContext(connection) as queries:
        older, has_more = selectors.message_page(session=session, before_id=page[0].pk, limit=5)
    assert len(queries) == 2
    assert [m.content for m in older] == ["m2", "m3", "m4", "m5", "m6"]
    oldest, has_more = selectors.message_page(session=session, before_id=older[0].pk, limit=5)
    assert ([m.content for m in oldest], has_more) == (["m0", "m1"], False)


def test_message_page_refuses_bad_input_and_foreign_anchors(user, other_user):
    mine = talk(user, "mine")
    theirs = talk(other_user, "theirs")
    their_message = Message.objects.filter(session=theirs).first()
    with pytest.raises(DomainError) as excinfo:
        selectors.message_page(session=mine, before_id=their_message.pk)
    assert excinfo.value.field == "before"
    for limit in (0, -1, "5", True):
        with pytest.raises(DomainError):
            selectors.message_page(session=mine, limit=limit)
    page, _ = selectors.message_page(session=mine, limit=10_000)
    assert len(page) == 2


def test_sessions_past_the_summary_threshold_are_every_users(settings, user, other_user):
    settings.SUMMARY_THRESHOLD = 2
    mine = ChatSessionFactory(user=user, message_count=3)
    theirs = ChatSessionFactory(user=other_user, message_count=5)
    ChatSessionFactory(user=user, message_count=2)

    assert selectors.sessions_past_summary_threshold() == sorted([mine.pk, theirs.pk])
    assert selectors.sessions_past_summary_threshold(session_ids=[str(mine.pk)]) == [mine.pk]
    with pytest.raises(DomainError):
        selectors.sessions_past_summary_threshold(session_ids=["not-an-id"])


def test_a_whole_conversation_lists_oldest_first(user):
    session = talk(user, "first")
    services.reply_start(user=user, session_id=session.pk, content="second")
    contents = [m.content for m in selectors.message_list(session=session)]
    assert contents[0] == "first" and contents[2] == "second" and len(contents) == 4
