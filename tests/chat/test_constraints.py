"""The database itself refuses a second active session in a context (invariant 1)."""

import pytest
from django.db import IntegrityError, transaction

from chat.models import ChatSession
from tests.factories import ChatSessionFactory, ModelFactory, RunFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["general", "model", "run"])
def context(request, user, model, run):
    """Return the (model, run) of one context of ``user``."""
    return {"general": (None, None), "model": (model, None), "run": (model, run)}[request.param]


def test_a_second_active_session_in_a_context_is_refused(user, context):
    model, run = context
    ChatSessionFactory(user=user, model=model, run=run, is_active=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        ChatSession.objects.create(user=user, model=model, run=run, is_active=True)
    assert ChatSession.objects.filter(user=user, is_active=True).count() == 1


def test_bulk_create_of_two_active_sessions_in_a_context_is_refused(user, context):
    model, run = context
    rows = [ChatSession(user=user, model=model, run=run, is_active=True) for _ in range(2)]
    with pytest.raises(IntegrityError), transaction.atomic():
        ChatSession.objects.bulk_create(rows)
    assert ChatSession.objects.count() == 0


def test_activating_a_second_session_with_update_is_refused(user, context):
    model, run = context
    ChatSessionFactory(user=user, model=model, run=run, is_active=True)
    other = ChatSessionFactory(user=user, model=model, run=run, is_active=False)
    with pytest.raises(IntegrityError), transaction.atomic():
        ChatSession.objects.filter(pk=other.pk).update(is_active=True)
    other.refresh_from_db()
    assert other.is_active is False


def test_many_inactive_sessions_in_a_context_are_fine(user, context):
    model, run = context
    ChatSessionFactory(user=user, model=model, run=run, is_active=True)
    ChatSession.objects.bulk_create(
        [ChatSession(user=user, model=model, run=run, is_active=False) for _ in range(5)]
    )
    assert ChatSession.objects.filter(user=user).count() == 6


def test_different_contexts_and_users_each_have_their_own_active_session(user, other_user):
    model_a, model_b = ModelFactory(owner=user), ModelFactory(owner=user)
    run_a1, run_a2 = RunFactory(model=model_a), RunFactory(model=model_a)
    contexts = [
        (None, None),
        (model_a, None),
        (model_b, None),
        (model_a, run_a1),
        (model_a, run_a2),
    ]
    for owner in (user, other_user):
        for model, run in contexts:
            ChatSession.objects.create(user=owner, model=model, run=run, is_active=True)
    # A third user, general context only: users never conflict with each other.
    ChatSession.objects.create(user=UserFactory(), is_active=True)
    assert ChatSession.objects.filter(is_active=True).count() == 2 * len(contexts) + 1


def test_a_run_without_its_model_is_refused(user, run):
    with pytest.raises(IntegrityError), transaction.atomic():
        ChatSession.objects.create(user=user, model=None, run=run, is_active=False)
    assert not ChatSession.objects.exists()


def test_a_detached_session_can_never_be_active(user):
    with pytest.raises(IntegrityError), transaction.atomic():
        ChatSession.objects.create(user=user, is_active=True, detached_label="Gone (deleted model)")
    detached = ChatSessionFactory(user=user, is_active=False, detached_label="Gone")
    with pytest.raises(IntegrityError), transaction.atomic():
        ChatSession.objects.filter(pk=detached.pk).update(is_active=True)
    detached.refresh_from_db()
    assert detached.is_active is False
