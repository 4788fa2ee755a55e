"""The trading configuration, runs and trades are checked in one place
(models_app.services): the pages, the API and the admin refuse the same invalid values with
the same clear message, and store nothing."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.forms.models import model_to_dict
from django.test import Client
from django.urls import reverse

from models_app import services
from models_app.models import Model, Run, Trade
from tests.api.conftest import assert_error, bearer_client
from tests.factories import ModelFactory, RunFactory, TradeFactory, UserFactory
from tests.models_app.test_admin import change_form_data

pytestmark = pytest.mark.django_db

START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
END = datetime(2026, 1, 5, 16, 30, tzinfo=UTC)

PAGE_MODEL = {
    "name": "Breakout",
    "description": "",
    "llm": "",
    "instructions": "",
    "rules": "",
    "trading_mode": "paper",
    "trading_style": "day",
    "instrument": "stocks",
    "buying_power": "50000",
    "allowed_order_types": ["market", "limit"],
}

NEGATIVE_BUYING_POWER = "Buying power cannot be negative."
UNKNOWN_ORDER_TYPE = services.unknown_order_type_message("moon")


@pytest.fixture
def web(user):
    client = Client()
    client.force_login(user)
    return client


def snapshot():
    """Return every stored model, run and trade, to prove a refusal changed nothing."""
    return (
        list(Model.objects.order_by("pk").values()),
        list(Run.objects.order_by("pk").values()),
        list(Trade.objects.order_by("pk").values()),
    )


def page_errors(response) -> str:
    assert response.status_code == 200, response.status_code
    return " ".join(response.content.decode().split())


# The rules, as the service checks them.


def test_the_order_types_are_a_fixed_list():
    assert services.ORDER_TYPES == ("market", "limit", "stop", "stop_limit", "trailing_stop")
    assert services.model_problems({"allowed_order_types": list(services.ORDER_TYPES)}) == {}
    assert services.model_problems({"allowed_order_types": []}) == {}


@pytest.mark.parametrize(
    "values, field, message",
    [
        ({"buying_power": Decimal("-0.01")}, "buying_power", NEGATIVE_BUYING_POWER),
        ({"allowed_order_types": ["market", "moon"]}, "allowed_order_types", UNKNOWN_ORDER_TYPE),
        ({"allowed_order_types": ["limit", "limit"]}, "allowed_order_types", "listed more"),
        ({"allowed_order_types": "market"}, "allowed_order_types", "must be a list"),
        ({"allowed_order_types": [1]}, "allowed_order_types", "must be a list"),
        ({"allowed_order_types": {"market": True}}, "allowed_order_types", "must be a list"),
        ({"name": "   "}, "name", "cannot be blank"),
    ],
)
def test_model_problems_name_the_field_and_say_why(values, field, message):
    problems = services.model_problems(values)
    assert list(problems) == [field]
    assert message in problems[field][0]


@pytest.mark.parametrize(
    "values, field, message",
    [
        ({"starting_capital": Decimal("-1")}, "starting_capital", "cannot be negative"),
        ({"started_at": END, "ended_at": START}, "ended_at", "cannot end (2026-01-05 14:30"),
        ({"started_at": None, "ended_at": END}, "started_at", "needs its start time"),
        (
            {"status": "running", "started_at": START, "ended_at": END},
            "ended_at",
            "A running run has not ended",
        ),
        (
            {"status": "pending", "started_at": START, "ended_at": END},
            "ended_at",
            "A pending run has not ended",
        ),
    ],
)
def test_run_problems_name_the_field_and_say_why(values, field, message):
    problems = services.run_problems(values)
    assert list(problems) == [field]
    assert message in problems[field][0]


def test_a_run_ending_with_negative_equity_or_without_times_is_allowed():
    assert services.run_problems({"ending_equity": Decimal("-50"), "status": "failed"}) == {}
    assert services.run_problems({"started_at": None, "ended_at": None}) == {}
    assert services.run_problems({"status": "running", "started_at": START, "ended_at": None}) == {}
    # Ending when it starts is in order.
    assert (
        services.run_problems({"status": "completed", "started_at": START, "ended_at": START}) == {}
    )


@pytest.mark.parametrize(
    "values, field, message",
    [
        ({"quantity": Decimal("0")}, "quantity", "must be more than zero"),
        ({"quantity": Decimal("-5")}, "quantity", "must be more than zero"),
        ({"price": Decimal("0")}, "price", "must be more than zero"),
        ({"price": Decimal("-1.5")}, "price", "must be more than zero"),
        ({"symbol": " "}, "symbol", "cannot be blank"),
        ({"executed_at": datetime(2026, 1, 5, 14, 0, tzinfo=UTC)}, "executed_at", "before"),
        ({"executed_at": datetime(2026, 1, 5, 17, 0, tzinfo=UTC)}, "executed_at", "after"),
    ],
)
def test_trade_problems_name_the_field_and_say_why(values, field, message):
    problems = services.trade_problems(values, run={"started_at": START, "ended_at": END})
    assert list(problems) == [field]
    assert message in problems[field][0]


def test_a_trade_of_a_run_without_times_can_be_at_any_time():
    at = {"executed_at": datetime(2020, 1, 1, tzinfo=UTC)}
    assert services.trade_problems(at, run={"started_at": None, "ended_at": None}) == {}
    assert services.trade_problems(at, run={}) == {}


def test_a_service_reports_every_problem_at_once_and_stores_nothing(user, model):
    before = snapshot()
    with pytest.raises(ValidationError) as caught:
        services.run_create(
            user=user,
            model_id=model.pk,
            started_at=END,
            ended_at=START,
            starting_capital=Decimal("-1"),
            trades=[
                {"symbol": "AAPL", "side": "buy", "quantity": "0", "price": "190"},
                {"symbol": "AAPL", "side": "hold", "quantity": "10", "price": "-1"},
            ],
        )
    problems = caught.value.message_dict
    assert set(problems) == {
        "ended_at",
        "starting_capital",
        "trades.0.quantity",
        "trades.1.side",
        "trades.1.price",
    }
    with pytest.raises(ValidationError) as caught:
        services.model_update(
            user=user, model_id=model.pk, buying_power=Decimal("-1"), trading_mode="moon"
        )
    assert set(caught.value.message_dict) == {"buying_power", "trading_mode"}
    assert snapshot() == before


# The pages.


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"buying_power": "-1"}, "buying_power", NEGATIVE_BUYING_POWER),
        ({"allowed_order_types": ["market", "moon"]}, "allowed_order_types", UNKNOWN_ORDER_TYPE),
    ],
)
def test_the_model_pages_refuse_an_invalid_configuration_and_store_nothing(
    web, user, change, field, message
):
    html = page_errors(web.post("/models/new/", {**PAGE_MODEL, **change}))
    assert message in html
    assert not Model.objects.exists()

    model = ModelFactory(owner=user, name="Kept", buying_power=Decimal("100"))
    before = snapshot()
    html = page_errors(web.post(f"/models/{model.pk}/edit/", {**PAGE_MODEL, **change}))
    assert message in html
    assert "field-error" in html
    assert snapshot() == before


def test_the_model_form_offers_only_the_fixed_order_types(web):
    html = web.get("/models/new/").content.decode()
    for value in services.ORDER_TYPES:
        assert f'value="{value}"' in html
    assert 'min="0"' in html  # the browser's hint; the service has the rule


# The API.


@pytest.mark.parametrize(
    "body, field, message",
    [
        ({"buying_power": "-0.01"}, "buying_power", NEGATIVE_BUYING_POWER),
        ({"allowed_order_types": ["market", "moon"]}, "allowed_order_types", UNKNOWN_ORDER_TYPE),
        ({"allowed_order_types": ["limit", "limit"]}, "allowed_order_types", "listed more"),
    ],
)
def test_the_api_refuses_an_invalid_configuration_with_the_pages_message(
    api, user, body, field, message
):
    error = assert_error(api.post("/api/models/", {"name": "X", **body}, format="json"), 400)
    assert error["code"] == "invalid"
    assert message in error["fields"][field][0]
    assert message in error["message"]
    assert not Model.objects.exists()

    model = ModelFactory(owner=user)
    before = snapshot()
    error = assert_error(api.patch(f"/api/models/{model.pk}/", body, format="json"), 400)
    assert message in error["fields"][field][0]
    assert snapshot() == before


TRADE = {"symbol": "AAPL", "side": "buy", "quantity": "10", "price": "190.10"}
RUN = {
    "status": "completed",
    "started_at": "2026-01-05T14:30:00Z",
    "ended_at": "2026-01-05T16:30:00Z",
    "starting_capital": "10000.00",
    "ending_equity": "10100.00",
    "trades": [{**TRADE, "executed_at": "2026-01-05T14:31:00Z"}],
}


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"ended_at": "2026-01-05T14:00:00Z"}, "ended_at", "cannot end"),
        ({"started_at": None}, "started_at", "needs its start time"),
        ({"status": "running"}, "ended_at", "A running run has not ended"),
        ({"starting_capital": "-1.00"}, "starting_capital", "cannot be negative"),
        ({"trades": [{**RUN["trades"][0], "quantity": "0"}]}, "trades.0.quantity", "more than"),
        ({"trades": [{**RUN["trades"][0], "quantity": "-3"}]}, "trades.0.quantity", "more than"),
        ({"trades": [{**RUN["trades"][0], "price": "-190"}]}, "trades.0.price", "more than"),
        (
            {"trades": [{**TRADE, "executed_at": "2026-01-05T17:00:00Z"}]},
            "trades.0.executed_at",
            "after its run ends",
        ),
        (
            {"trades": [{**TRADE, "executed_at": "2026-01-05T09:00:00Z"}]},
            "trades.0.executed_at",
            "before its run starts",
        ),
    ],
)
def test_the_api_refuses_an_invalid_run_and_stores_nothing(api, model, change, field, message):
    before = snapshot()
    response = api.post(f"/api/models/{model.pk}/runs/", {**RUN, **change}, format="json")
    error = assert_error(response, 400, "invalid")
    assert message in error["fields"][field][0], error
    assert snapshot() == before


def test_a_valid_run_with_its_trades_is_stored(api, model):
    response = api.post(f"/api/models/{model.pk}/runs/", RUN, format="json")
    assert response.status_code == 201, response.content
    assert Run.objects.get().trades.count() == 1


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"ended_at": "2026-01-04T00:00:00Z"}, "ended_at", "cannot end"),
        ({"started_at": "2026-01-05T15:00:00Z"}, "started_at", "after its first trade"),
        ({"ended_at": "2026-01-05T14:45:00Z"}, "ended_at", "before its last trade"),
        ({"status": "pending"}, "ended_at", "A pending run has not ended"),
        ({"starting_capital": "-5"}, "starting_capital", "cannot be negative"),
    ],
)
def test_changing_a_run_keeps_its_times_in_order_and_around_its_trades(
    api, model, change, field, message
):
    run = RunFactory(model=model, started_at=START, ended_at=END)
    TradeFactory(run=run, executed_at=datetime(2026, 1, 5, 14, 40, tzinfo=UTC))
    TradeFactory(run=run, executed_at=datetime(2026, 1, 5, 15, 0, tzinfo=UTC))
    before = snapshot()
    error = assert_error(api.patch(f"/api/runs/{run.pk}/", change, format="json"), 400, "invalid")
    assert message in error["fields"][field][0], error
    assert snapshot() == before
    # Moving both ends together with the trades inside is fine.
    change = {"started_at": "2026-01-05T14:35:00Z", "ended_at": "2026-01-05T15:05:00Z"}
    assert api.patch(f"/api/runs/{run.pk}/", change, format="json").status_code == 200


@pytest.fixture
def api(user):
    return bearer_client(user)


# The admin keeps the same rules.


@pytest.fixture
def staff_client():
    client = Client()
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    return client


def test_the_admin_refuses_an_invalid_model_and_stores_nothing(staff_client, model):
    url = reverse("admin:models_app_model_change", args=[model.pk])
    data = change_form_data(staff_client, url)
    before = snapshot()
    for change, message in [
        ({"buying_power": "-10"}, NEGATIVE_BUYING_POWER),
        ({"allowed_order_types": '["market", "moon"]'}, UNKNOWN_ORDER_TYPE),
    ]:
        response = staff_client.post(url, data | change)
        assert response.status_code == 200
        assert message in " ".join(response.content.decode().split())
    assert snapshot() == before


def split(name: str, value: datetime) -> dict:
    """Return a datetime as the admin's date and time inputs post it."""
    return {f"{name}_0": value.strftime("%Y-%m-%d"), f"{name}_1": value.strftime("%H:%M:%S")}


def test_the_admin_refuses_a_run_that_ends_before_it_starts_or_a_trade_outside_it(
    staff_client, model, settings
):
    settings.TIME_ZONE = "UTC"
    run = RunFactory(model=model, started_at=START, ended_at=END)
    url = reverse("admin:models_app_run_change", args=[run.pk])
    data = change_form_data(staff_client, url) | split("started_at", START) | split("ended_at", END)
    before = snapshot()

    response = staff_client.post(url, data | split("ended_at", datetime(2026, 1, 5, 9, 0)))
    assert response.status_code == 200
    assert "cannot end" in response.content.decode()

    trade = {
        "trades-TOTAL_FORMS": "1",
        "trades-0-symbol": "AAPL",
        "trades-0-side": "buy",
        "trades-0-quantity": "10",
        "trades-0-price": "100",
        "trades-0-realized_pnl": "0",
        **split("trades-0-executed_at", datetime(2026, 1, 5, 18, 0)),
    }
    response = staff_client.post(url, data | trade)
    assert response.status_code == 200
    assert "after its run ends" in response.content.decode()
    assert snapshot() == before

    response = staff_client.post(url, data | trade | split("trades-0-executed_at", START))
    assert response.status_code == 302
    assert run.trades.count() == 1


def test_a_valid_configuration_is_stored_through_every_door(web, api, user):
    assert web.post("/models/new/", PAGE_MODEL).status_code == 302
    body = {"name": "API", "buying_power": "0", "allowed_order_types": list(services.ORDER_TYPES)}
    assert api.post("/api/models/", body, format="json").status_code == 201
    stored = {m.name: model_to_dict(m) for m in Model.objects.all()}
    assert stored["Breakout"]["allowed_order_types"] == ["market", "limit"]
    assert stored["API"]["buying_power"] == Decimal("0")


def test_the_api_schema_documents_the_fixed_order_types():
    from rest_framework.test import APIClient

    doc = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    schemas = doc["components"]["schemas"]
    items = schemas["ModelRequest"]["properties"]["allowed_order_types"]["items"]
    assert items["allOf"] == [{"$ref": "#/components/schemas/OrderTypeEnum"}]
    assert schemas["OrderTypeEnum"]["enum"] == list(services.ORDER_TYPES)
