import pytest

from chat import services
from chat.models import ChatSession
from models_app.models import Model, Run, Trade
from tests.factories import ModelFactory, RunFactory, TradeFactory

from .conftest import assert_error

pytestmark = pytest.mark.django_db

RUN_BODY = {
    "status": "completed",
    "started_at": "2026-01-05T14:30:00Z",
    "ended_at": "2026-01-05T21:00:00Z",
    "starting_capital": "10000.00",
    "ending_equity": "10250.50",
    "trades": [
        {
            "symbol": "AAPL",
            "side": "buy",
            "quantity": "10",
            "price": "190.10",
            "executed_at": "2026-01-05T14:31:00Z",
        },
        {
            "symbol": "AAPL",
            "side": "sell",
            "quantity": "10",
            "price": "192.00",
            "executed_at": "2026-01-05T15:00:00Z",
            "realized_pnl": "19.00",
        },
    ],
}


def test_model_crud(api, user):
    created = api.post(
        "/api/models/",
        {"name": "Swing bot", "trading_style": "swing", "allowed_order_types": ["limit"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["name"], body["trading_style"], body["allowed_order_types"]) == (
        "Swing bot",
        "swing",
        ["limit"],
    )
    url = f"/api/models/{body['id']}/"
    assert api.get("/api/models/").json()[0]["id"] == body["id"]
    assert api.get(url).json()["name"] == "Swing bot"
    patched = api.patch(url, {"buying_power": "5000.00", "allow_hedging": True}, format="json")
    assert patched.status_code == 200
    assert (patched.json()["buying_power"], patched.json()["allow_hedging"]) == ("5000.00", True)
    assert api.delete(url).status_code == 204
    assert not Model.objects.filter(owner=user).exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": 5},
        {"name": "x", "trading_mode": "moon"},
        {"name": "x", "margin_account": "yes"},
        {"name": "x", "buying_power": "lots"},
        {"name": "x", "allowed_order_types": "market"},
        {"name": "x", "owner": 1},
        {"name": "x", "colour": "red"},
    ],
)
def test_bad_model_input_is_400_and_creates_nothing(api, body):
    assert_error(api.post("/api/models/", body, format="json"), 400)
    assert not Model.objects.exists()


def test_runs_with_trades(api, model):
    created = api.post(f"/api/models/{model.pk}/runs/", RUN_BODY, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["model"] == model.pk and body["pnl"] == "250.50"
    assert [t["side"] for t in body["trades"]] == ["buy", "sell"]
    listed = api.get(f"/api/models/{model.pk}/runs/").json()
    assert [run["id"] for run in listed] == [body["id"]]
    url = f"/api/runs/{body['id']}/"
    assert len(api.get(url).json()["trades"]) == 2
    patched = api.patch(url, {"status": "stopped"}, format="json")
    assert patched.status_code == 200 and patched.json()["status"] == "stopped"
    assert_error(api.patch(url, {"trades": []}, format="json"), 400)
    assert api.delete(url).status_code == 204
    assert not Run.objects.exists() and not Trade.objects.exists()


def test_bad_trade_creates_no_run(api, model):
    body = {**RUN_BODY, "trades": [{**RUN_BODY["trades"][0], "side": "hold"}]}
    error = assert_error(api.post(f"/api/models/{model.pk}/runs/", body, format="json"), 400)
    assert any(name.startswith("trades") for name in error["fields"])
    assert not Run.objects.exists()


def test_deleting_a_model_or_run_keeps_its_conversations_inactive(api, user, model):
    run = RunFactory(model=model)
    of_run, _ = services.conversation_start(user=user, run_id=run.pk)
    of_model, _ = services.conversation_start(user=user, model_id=model.pk)
    assert api.delete(f"/api/runs/{run.pk}/").status_code == 204
    of_run.refresh_from_db()
    assert not of_run.is_active and of_run.detached_label
    assert api.delete(f"/api/models/{model.pk}/").status_code == 204
    kept = api.get(f"/api/sessions/{of_model.pk}/").json()
    assert kept["is_active"] is False and kept["context"] == "detached"
    assert ChatSession.objects.count() == 2


def test_another_users_models_and_runs_are_404_and_unchanged(api, other_user):
    model = ModelFactory(owner=other_user, name="Theirs")
    run = RunFactory(model=model)
    TradeFactory(run=run)
    calls = [
        ("get", f"/api/models/{model.pk}/", None),
        ("patch", f"/api/models/{model.pk}/", {"name": "Mine"}),
        ("delete", f"/api/models/{model.pk}/", None),
        ("get", f"/api/models/{model.pk}/runs/", None),
        ("post", f"/api/models/{model.pk}/runs/", RUN_BODY),
        ("get", f"/api/runs/{run.pk}/", None),
        ("patch", f"/api/runs/{run.pk}/", {"status": "failed"}),
        ("delete", f"/api/runs/{run.pk}/", None),
        ("get", f"/api/sessions/active/?run={run.pk}", None),
        ("post", "/api/sessions/", {"run": run.pk}),
    ]
    for method, url, body in calls:
        assert_error(getattr(api, method)(url, body, format="json"), 404, "not_found")
    model.refresh_from_db()
    run.refresh_from_db()
    assert (model.name, run.status) == ("Theirs", Run.Status.COMPLETED)
    assert Run.objects.count() == 1 and Trade.objects.count() == 1
    assert api.get("/api/models/").json() == []


@pytest.mark.parametrize("bad_id", ["abc", "0", "-3", "99999999999999999999999"])
def test_invalid_model_and_run_ids_are_400(api, bad_id):
    assert_error(api.get(f"/api/models/{bad_id}/"), 400)
    assert_error(api.get(f"/api/runs/{bad_id}/"), 400)
