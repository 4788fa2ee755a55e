"""Deleting a model or run keeps its conversations through chat.services (invariant 5).

models_app does not import chat: it announces the deletion (models_app.signals) inside its
transaction, and chat/receivers.py answers with services.conversations_detach.
"""

import pytest

from chat import services
from chat.models import ChatSession, Context
from models_app import services as model_services
from models_app import signals
from models_app.models import Model, Run
from tests.factories import ChatSessionFactory

pytestmark = pytest.mark.django_db


def test_detaching_a_models_conversations_keeps_them_inactive_and_labelled(user, model, run):
    about_model = ChatSessionFactory(user=user, model=model, is_active=True)
    about_run = ChatSessionFactory(user=user, model=model, run=run, is_active=True)
    general = ChatSessionFactory(user=user, is_active=True)

    assert services.conversations_detach(user=user, model=model) == 2

    for session in (about_model, about_run):
        session.refresh_from_db()
        assert (session.is_active, session.detached_label) == (
            False,
            f"{model.name} (deleted model)",
        )
        assert session.context == Context.DETACHED
    general.refresh_from_db()
    assert (general.is_active, general.context) == (True, Context.GENERAL)


def test_detaching_a_runs_conversations_leaves_the_models(user, model, run):
    about_model = ChatSessionFactory(user=user, model=model, is_active=True)
    about_run = ChatSessionFactory(user=user, model=model, run=run, is_active=True)

    assert services.conversations_detach(user=user, run=run) == 1

    about_run.refresh_from_db()
    assert about_run.detached_label == f"Run #{run.pk} of {model.name} (deleted run)"
    about_model.refresh_from_db()
    assert (about_model.is_active, about_model.context) == (True, Context.MODEL)


def test_detaching_needs_a_model_or_a_run_not_both(user, model, run):
    with pytest.raises(ValueError):
        services.conversations_detach(user=user)
    with pytest.raises(ValueError):
        services.conversations_detach(user=user, model=model, run=run)


def test_a_long_model_name_still_fits_the_label(user):
    model = Model.objects.create(owner=user, name="x" * 120)
    ChatSessionFactory(user=user, model=model)
    model_services.model_delete(user=user, model_id=model.pk)
    label = ChatSession.objects.get().detached_label
    assert label == "x" * 120 + " (deleted model)"


def test_chat_answers_both_deletion_signals():
    assert signals.model_deleting.has_listeners(Model)
    assert signals.run_deleting.has_listeners(Run)


def test_a_failed_answer_rolls_the_deletion_back(user, model, run):
    about_run = ChatSessionFactory(user=user, model=model, run=run, is_active=True)

    def refuse(sender, **kwargs):
        raise RuntimeError("cannot keep them")

    signals.model_deleting.connect(refuse, dispatch_uid="test.refuse")
    try:
        with pytest.raises(RuntimeError):
            model_services.model_delete(user=user, model_id=model.pk)
    finally:
        signals.model_deleting.disconnect(dispatch_uid="test.refuse")

    assert Model.objects.filter(pk=model.pk).exists() and Run.objects.filter(pk=run.pk).exists()
    about_run.refresh_from_db()
    assert (about_run.is_active, about_run.context) == (True, Context.RUN)


def test_the_answers_count_what_was_kept(user, model):
    ChatSessionFactory(user=user, model=model)

    def keep_nothing_else(sender, **kwargs):
        return None

    signals.model_deleting.connect(keep_nothing_else, dispatch_uid="test.silent")
    try:
        assert model_services.model_delete(user=user, model_id=model.pk) == 1
    finally:
        signals.model_deleting.disconnect(dispatch_uid="test.silent")
