"""The models pages: list, create, edit, delete with confirmation, runs with trades."""

from decimal import Decimal

import pytest
from django.test import Client

from chat import services as chat_services
from chat.models import ChatSession
from models_app.models import Model
from tests.factories import ModelFactory, RunFactory, TradeFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def web(user):
    client = Client()
    client.force_login(user)
    return client


VALID = {
    "name": "Breakout",
    "description": "Buys breakouts.",
    "llm": "",
    "instructions": "Be brief.",
    "rules": "No overnight holds.",
    "trading_mode": "paper",
    "trading_style": "day",
    "instrument": "futures",
    "buying_power": "50000",
    "margin_account": "on",
    "allowed_order_types": ["market", "limit"],
}


def test_list_shows_only_my_models(web, user, other_user):
    ModelFactory(owner=user, name="Mine")
    ModelFactory(owner=other_user, name="Someone else's")
    html = web.get("/models/").content.decode()
    assert "Mine" in html
    assert "Someone else" not in html


def test_create_a_model(web, user):
    response = web.post("/models/new/", VALID)
    model = Model.objects.get(owner=user, name="Breakout")
    assert response.status_code == 302
    assert response["Location"] == f"/models/{model.pk}/"
    assert model.instrument == "futures"
    assert model.buying_power == Decimal("50000")
    assert model.margin_account and not model.allow_shorting
    assert model.allowed_order_types == ["market", "limit"]


def test_invalid_model_is_refused_and_nothing_is_stored(web, user):
    response = web.post("/models/new/", {**VALID, "name": "", "buying_power": "lots"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "This field is required." in html
    assert "Enter a number." in html
    assert not Model.objects.exists()


def test_edit_a_model(web, user):
    model = ModelFactory(owner=user, name="Before")
    assert "Before" in web.get(f"/models/{model.pk}/edit/").content.decode()
    response = web.post(f"/models/{model.pk}/edit/", {**VALID, "name": "After"})
    assert response.status_code == 302
    model.refresh_from_db()
    assert model.name == "After" and model.trading_style == "day"


def test_delete_asks_for_confirmation_and_keeps_conversations(web, user):
    model = ModelFactory(owner=user, name="Retiring")
    session, _ = chat_services.conversation_start(user=user, model_id=model.pk)
    confirm = web.get(f"/models/{model.pk}/delete/")
    assert confirm.status_code == 200
    assert "1 conversation is kept" in " ".join(confirm.content.decode().split())
    assert Model.objects.filter(pk=model.pk).exists()

    response = web.post(f"/models/{model.pk}/delete/")
    assert response.status_code == 302
    assert not Model.objects.filter(pk=model.pk).exists()
    session = ChatSession.objects.get(pk=session.pk)
    assert session.detached_label == "Retiring (deleted model)"
    assert not session.is_active


def test_another_users_model_pages_are_404(web, other_user):
    theirs = ModelFactory(owner=other_user)
    base = f"/models/{theirs.pk}/"
    for url in [base, f"{base}edit/", f"{base}delete/"]:
        assert web.get(url).status_code == 404, url
    assert web.post(f"/models/{theirs.pk}/delete/").status_code == 404
    assert web.post(f"/models/{theirs.pk}/edit/", VALID).status_code == 404
    assert Model.objects.filter(pk=theirs.pk, name=theirs.name).exists()


def test_detail_shows_runs_with_trades_and_pnl(web, user):
    model = ModelFactory(owner=user)
    run = RunFactory(model=model, starting_capital="10000", ending_equity="9800")
    TradeFactory(run=run, symbol="TSLA", realized_pnl="-200")
    html = web.get(f"/models/{model.pk}/").content.decode()
    assert f"Run #{run.pk}" in html
    assert "TSLA" in html
    assert "P&amp;L -$200.00" in html
    assert f"/m/{model.pk}/runs/{run.pk}/chat" in html
    assert "Swing trading" in html
