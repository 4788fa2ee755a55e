"""The kind of a conversation's context has one rule: a row and a query agree on it."""

import pytest

from chat import exports, selectors
from chat.models import ChatSession, Context
from tests.factories import ChatSessionFactory, ModelFactory, RunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def every_shape(user, model, run):
    """Return one conversation of every shape a row can have, by a name of the shape."""
    return {
        "general": ChatSessionFactory(user=user),
        "model": ChatSessionFactory(user=user, model=model),
        "run": ChatSessionFactory(user=user, model=model, run=run),
        # A deleted model's conversation loses both ids; a deleted run's keeps its model.
        "deleted model": ChatSessionFactory(user=user, detached_label="M (deleted model)"),
        "deleted run": ChatSessionFactory(
            user=user, model=model, detached_label=f"Run #9 of {model.name} (deleted run)"
        ),
    }


def test_a_row_and_a_query_name_the_same_kind_of_context(every_shape):
    expected = {
        "general": Context.GENERAL,
        "model": Context.MODEL,
        "run": Context.RUN,
        "deleted model": Context.DETACHED,
        "deleted run": Context.DETACHED,
    }
    assert {name: s.context for name, s in every_shape.items()} == expected
    for kind in Context:
        by_query = set(ChatSession.objects.of_context(kind).values_list("pk", flat=True))
        by_row = {s.pk for s in ChatSession.objects.all() if s.context == kind}
        assert by_query == by_row, kind


def test_every_door_that_filters_by_kind_uses_the_rule(user, every_shape):
    listed = {
        kind: {s.pk for s in selectors.session_list(user=user, context=kind)} for kind in Context
    }
    assert listed == {
        kind: {s.pk for s in every_shape.values() if s.context == kind} for kind in Context
    }
    # The sidebar: general, the model's group (its model and run conversations), detached.
    groups = {s.pk: s.group_key for s in selectors.sidebar_sessions(user=user)}
    model_id = every_shape["model"].model_id
    assert groups == {
        every_shape["general"].pk: selectors.GROUP_GENERAL,
        every_shape["model"].pk: model_id,
        every_shape["run"].pk: model_id,
        every_shape["deleted model"].pk: selectors.GROUP_DETACHED,
        every_shape["deleted run"].pk: selectors.GROUP_DETACHED,
    }
    page, _ = selectors.sidebar_group_page(user=user, group=f"model-{model_id}", offset=0)
    assert {s.pk for s in page} == {every_shape["model"].pk, every_shape["run"].pk}


def test_a_detached_run_conversation_is_exported_under_its_label_not_its_model(every_shape):
    text = exports.export_markdown(session=every_shape["deleted run"])
    assert "- Context: Run #9 of" in text and "(deleted run)" in text
    data = exports.export_json(session=every_shape["deleted run"])
    assert data["conversation"]["context"]["kind"] == "detached"


def test_a_detached_conversation_is_in_no_context(user):
    run = RunFactory(model=ModelFactory(owner=user))
    ChatSessionFactory(user=user, model=run.model, detached_label="Run #1 (deleted run)")
    ChatSessionFactory(user=user, detached_label="Gone (deleted model)")
    assert not ChatSession.objects.in_context(model_id=run.model_id).exists()
    assert not ChatSession.objects.in_context().exists()


def test_only_a_model_conversation_lives_under_its_models_url(every_shape):
    urls = {name: s.get_absolute_url() for name, s in every_shape.items()}
    model_id = every_shape["model"].model_id
    assert urls["model"] == f"/m/{model_id}/c/{every_shape['model'].pk}"
    for name in ("general", "run", "deleted model", "deleted run"):
        assert urls[name] == f"/c/{every_shape[name].pk}", name
