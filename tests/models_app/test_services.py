"""Model and run services: deleting keeps conversations (invariant 5); ownership holds."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from chat import selectors, services
from chat.models import ChatSession, Message
from core.exceptions import DomainError
from models_app import selectors as model_selectors
from models_app import services as model_services
from models_app.exceptions import ModelNotFound, RunNotFound
from models_app.models import Model, Run, Trade
from tests.factories import ModelFactory, RunFactory, TradeFactory

pytestmark = pytest.mark.django_db


def talk(user, content, **kwargs):
    reply = services.reply_start(user=user, content=content, **kwargs)
    services.reply_finish(
        message_id=reply.assistant_message.pk, content="ok", status=Message.Status.COMPLETE
    )
    return reply.session


def test_deleting_a_model_keeps_its_conversations_readable_inactive_and_detached(user, model, run):
    TradeFactory.create_batch(2, run=run)
    model_chat = talk(user, "About the model", model_id=model.pk)
    older_model_chat, _ = services.conversation_start(user=user, model_id=model.pk)
    run_chat = talk(user, "About the run", run_id=run.pk)
    general = talk(user, "General")

    kept = model_services.model_delete(user=user, model_id=model.pk)

    assert kept == 3
    assert not Model.objects.filter(pk=model.pk).exists()
    assert not Run.objects.exists() and not Trade.objects.exists()
    for session in (model_chat, older_model_chat, run_chat):
        session = selectors.session_get(user=user, session_id=session.pk)
        assert session.is_active is False
        assert session.detached_label == f"{model.name} (deleted model)"
        assert (session.model_id, session.run_id, session.context) == (None, None, "detached")
    page, _ = selectors.message_page(
        session=selectors.session_get(user=user, session_id=run_chat.pk)
    )
    assert [m.content for m in page] == ["About the run", "ok"]
    # The general conversation is untouched, and a new model conversation is unaffected.
    general.refresh_from_db()
    assert (general.is_active, general.detached_label) == (True, "")


def test_deleting_a_run_keeps_its_conversations_and_the_models(user, model, run):
    model_chat = talk(user, "About the model", model_id=model.pk)
    run_chat = talk(user, "About the run", run_id=run.pk)

    assert model_services.run_delete(user=user, run_id=run.pk) == 1

    run_chat = selectors.session_get(user=user, session_id=run_chat.pk)
    assert run_chat.is_active is False
    assert run_chat.detached_label == f"Run #{run.pk} of {model.name} (deleted run)"
    assert run_chat.messages.count() == 2
    model_chat.refresh_from_db()
    assert (model_chat.is_active, model_chat.detached_label) == (True, "")
    # The run context can start afresh on another run; the old conversation stays apart.
    new_run = RunFactory(model=model)
    assert selectors.session_active(user=user, model_id=model.pk, run_id=new_run.pk) is None
    fresh, created = services.conversation_start(user=user, run_id=new_run.pk)
    assert created and fresh.pk != run_chat.pk


def test_another_users_model_or_run_cannot_be_deleted(user, other_user):
    theirs = RunFactory(model=ModelFactory(owner=other_user))
    their_chat = talk(other_user, "Mine", run_id=theirs.pk)
    with pytest.raises(ModelNotFound):
        model_services.model_delete(user=user, model_id=theirs.model_id)
    with pytest.raises(RunNotFound):
        model_services.run_delete(user=user, run_id=theirs.pk)
    assert Run.objects.filter(pk=theirs.pk).exists()
    their_chat.refresh_from_db()
    assert (their_chat.is_active, their_chat.detached_label) == (True, "")


def test_model_create_and_update_validate_and_stay_with_the_owner(user, other_user):
    model = model_services.model_create(
        owner=user,
        name="Swing",
        trading_mode="live",
        trading_style="swing",
        buying_power=Decimal("5000"),
        allowed_order_types=["limit"],
    )
    assert (model.owner, model.trading_mode, model.effective_llm) == (user, "live", "parlor-dev")
    updated = model_services.model_update(user=user, model_id=model.pk, llm="gpt-x")
    assert updated.effective_llm == "gpt-x"
    with pytest.raises(ModelNotFound):
        model_services.model_update(user=other_user, model_id=model.pk, name="Stolen")
    with pytest.raises(DomainError, match="Unknown field"):
        model_services.model_create(owner=user, name="X", owner_id=other_user.pk)
    with pytest.raises(ValidationError):
        model_services.model_create(owner=user, name="X", trading_mode="yolo")
    with pytest.raises(ValidationError):
        model_services.model_update(user=user, model_id=model.pk, name="")
    model.refresh_from_db()
    assert (Model.objects.count(), model.name) == (1, "Swing")


def test_run_create_stores_its_trades_in_one_transaction(user, model, other_user):
    trade = {"symbol": "AAPL", "side": "buy", "quantity": "10", "price": "190.5"}
    run = model_services.run_create(
        user=user, model_id=model.pk, trades=[trade, {**trade, "side": "sell"}], status="completed"
    )
    assert run.trades.count() == 2
    with pytest.raises(ValidationError):
        model_services.run_create(
            user=user, model_id=model.pk, trades=[trade, {**trade, "side": "x"}]
        )
    with pytest.raises(ModelNotFound):
        model_services.run_create(user=other_user, model_id=model.pk)
    assert (Run.objects.count(), Trade.objects.count()) == (1, 2)


def test_a_users_selectors_never_return_another_users_models_or_runs(user, other_user, run):
    their_run = RunFactory(model=ModelFactory(owner=other_user))
    assert list(Model.objects.for_user(user)) == [run.model]
    assert list(Run.objects.for_user(user)) == [run]
    assert model_selectors.run_get(user=other_user, run_id=their_run.pk) == their_run
    with pytest.raises(RunNotFound):
        model_selectors.run_get(user=user, run_id=their_run.pk)
    assert ChatSession.objects.count() == 0
