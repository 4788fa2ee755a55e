"""``GET /api/llms/``, the sessions' ``llm``, ``GET /api/usage/`` and the daily quota on
the REST API (SPEC 4.6). Usage of past days is written as UsageDay rows: the quota of a
day is its rows, so yesterday's are yesterday's whatever the clock says. The LLMs are the
embedded development LLM's (tests/api/conftest.py clears their cached list each test)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from accounts.models import User
from chat import services, usage
from chat.models import ChatSession, Message
from tests.factories import ModelFactory, spent

from .conftest import assert_error

pytestmark = pytest.mark.django_db

DEV_LLMS = ["parlor-dev", "parlor-dev-large", "parlor-dev-mini"]


def stored() -> tuple[int, int]:
    return ChatSession.objects.count(), Message.objects.count()


# GET /api/llms/ ---------------------------------------------------------------------------


def test_the_llms_are_listed_with_the_callers_default(api, user):
    assert api.get("/api/llms/").json() == {
        "results": [{"id": name} for name in DEV_LLMS],
        "default": "parlor-dev",
    }
    User.objects.filter(pk=user.pk).update(default_llm="parlor-dev-mini")
    assert api.get("/api/llms/").json()["default"] == "parlor-dev-mini"


def test_the_allow_list_limits_the_llms(api, settings):
    settings.LLM_MODELS = ["parlor-dev-large"]
    assert api.get("/api/llms/").json()["results"] == [
        {"id": "parlor-dev"},
        {"id": "parlor-dev-large"},
    ]


def test_the_llms_need_credentials():
    from rest_framework.test import APIClient

    assert_error(APIClient().get("/api/llms/"), 401, "not_authenticated")


# Sessions' llm ----------------------------------------------------------------------------


def test_a_session_is_created_with_an_llm_and_shows_it(api):
    created = api.post("/api/sessions/", {"llm": "parlor-dev-large"}, format="json")
    assert created.status_code == 201
    assert created.json()["llm"] == "parlor-dev-large"
    listed = api.get("/api/sessions/").json()["results"]
    assert [item["llm"] for item in listed] == ["parlor-dev-large"]


def test_a_session_shows_the_llm_that_answers_without_a_choice(api, user):
    general = api.post("/api/sessions/", {}, format="json").json()
    assert general["llm"] == "parlor-dev"
    model = ModelFactory(owner=user, llm="parlor-dev-mini")
    about_model = api.post("/api/sessions/", {"model": model.pk}, format="json").json()
    assert about_model["llm"] == "parlor-dev-mini"


@pytest.mark.parametrize("name", ["gpt-nonexistent", "x" * 300, "parlor-dev\u0000"])
def test_creating_with_an_llm_not_offered_is_400_unknown_llm_and_creates_nothing(api, name):
    error = assert_error(
        api.post("/api/sessions/", {"llm": name}, format="json"), 400, "unknown_llm"
    )
    assert error["fields"] == {"llm": [error["message"]]}
    assert stored() == (0, 0)


@pytest.mark.parametrize("value", [5, None, ["parlor-dev"], True])
def test_an_llm_that_is_not_a_string_is_400_invalid(api, value):
    assert_error(api.post("/api/sessions/", {"llm": value}, format="json"), 400, "invalid")
    assert stored() == (0, 0)


def test_patch_chooses_the_llm_and_an_unknown_one_changes_nothing(api, user):
    session, _ = services.conversation_start(user=user, title="Kept")
    url = f"/api/sessions/{session.pk}/"
    assert api.patch(url, {"llm": "parlor-dev-mini"}, format="json").json()["llm"] == (
        "parlor-dev-mini"
    )
    refused = api.patch(url, {"llm": "nope", "title": "Changed"}, format="json")
    assert_error(refused, 400, "unknown_llm")
    row = ChatSession.objects.get(pk=session.pk)
    assert (row.llm, row.title) == ("parlor-dev-mini", "Kept")
    assert api.patch(url, {"llm": ""}, format="json").json()["llm"] == "parlor-dev"


def test_another_users_session_llm_is_not_found(api, other_user):
    session, _ = services.conversation_start(user=other_user)
    response = api.patch(f"/api/sessions/{session.pk}/", {"llm": "parlor-dev-mini"}, format="json")
    assert_error(response, 404, "not_found")
    assert ChatSession.objects.get(pk=session.pk).llm == ""


# GET /api/usage/ --------------------------------------------------------------------------


def test_usage_lists_the_days_rows_oldest_first_and_no_quota(api, user):
    spent(user, 40, days_ago=2, llm="parlor-dev-mini")
    spent(user, 10)
    spent(user, 21, llm="parlor-dev-large")
    spent(user, 99, days_ago=30)  # one day too old for the default 30
    body = api.get("/api/usage/").json()
    today = usage.today()
    assert body == {
        "days": [
            {
                "date": str(today - timedelta(days=2)),
                "llm": "parlor-dev-mini",
                "prompt_tokens": 20,
                "completion_tokens": 20,
            },
            {"date": str(today), "llm": "parlor-dev", "prompt_tokens": 5, "completion_tokens": 5},
            {
                "date": str(today),
                "llm": "parlor-dev-large",
                "prompt_tokens": 10,
                "completion_tokens": 11,
            },
        ],
        "quota": None,
    }
    assert len(api.get("/api/usage/?days=31").json()["days"]) == 4
    assert len(api.get("/api/usage/?days=1").json()["days"]) == 2


def test_usage_is_the_callers_only(api, other_api, user, other_user):
    spent(other_user, 500)
    assert api.get("/api/usage/").json()["days"] == []
    assert len(other_api.get("/api/usage/").json()["days"]) == 1


@pytest.mark.parametrize("days", ["0", "366", "-1", "abc", "1.5", "9" * 30])
def test_days_out_of_range_is_400_invalid(api, days):
    error = assert_error(api.get(f"/api/usage/?days={days}"), 400, "invalid")
    assert "days" in error["fields"]


def test_unknown_query_parameters_are_400(api):
    assert_error(api.get("/api/usage/?day=3"), 400, "invalid")


def test_the_quota_shows_todays_usage_and_when_it_resets(api, user, settings):
    settings.QUOTA_TOKENS_PER_DAY = 1000
    spent(user, 300)
    spent(user, 200, llm="parlor-dev-mini")
    spent(user, 900, days_ago=1)
    quota = api.get("/api/usage/").json()["quota"]
    resets_at = datetime.fromisoformat(quota.pop("resets_at").replace("Z", "+00:00"))
    assert quota == {"tokens_per_day": 1000, "used_today": 500}
    assert resets_at == datetime.combine(
        usage.today() + timedelta(days=1), datetime.min.time(), UTC
    )


def test_a_users_own_quota_wins_over_the_setting(api, user, settings):
    settings.QUOTA_TOKENS_PER_DAY = 1000
    User.objects.filter(pk=user.pk).update(quota_tokens_per_day=50)
    assert api.get("/api/usage/").json()["quota"]["tokens_per_day"] == 50
    settings.QUOTA_TOKENS_PER_DAY = None
    assert api.get("/api/usage/").json()["quota"]["tokens_per_day"] == 50


# The quota on sends -----------------------------------------------------------------------


@pytest.fixture
def conversation(user):
    """A conversation with one finished turn: something to send into, edit, regenerate."""
    session, _ = services.conversation_start(user=user)
    reply = services.reply_start(user=user, content="First", session_id=session.pk)
    services.reply_finish(
        message_id=reply.assistant_message.pk,
        status=Message.Status.COMPLETE,
        content="An answer.",
    )
    return reply


def test_a_spent_quota_refuses_sending_with_429_and_retry_after(api, user, settings, conversation):
    settings.QUOTA_TOKENS_PER_DAY = 100
    spent(user, 100)
    before = stored()
    session = conversation.session.pk
    sends = [
        api.post(f"/api/sessions/{session}/messages/", {"content": "More?"}, format="json"),
        api.post(
            f"/api/messages/{conversation.user_message.pk}/edit/",
            {"content": "Other"},
            format="json",
        ),
        api.post(f"/api/messages/{conversation.assistant_message.pk}/regenerate/"),
    ]
    now = timezone.now()
    midnight = datetime.combine(usage.today() + timedelta(days=1), datetime.min.time(), UTC)
    for response in sends:
        error = assert_error(response, 429, "quota_exceeded")
        assert "00:00 UTC" in error["message"] and "100 tokens" in error["message"]
        wait = int(response["Retry-After"])
        assert abs(wait - (midnight - now).total_seconds()) < 5
    assert stored() == before


def test_yesterdays_usage_does_not_count(api, user, settings, conversation):
    settings.QUOTA_TOKENS_PER_DAY = 100
    spent(user, 5000, days_ago=1)
    spent(user, 99)
    response = api.post(
        f"/api/sessions/{conversation.session.pk}/messages/",
        {"content": "Still fine"},
        format="json",
    )
    assert response.status_code == 202


def test_a_users_own_quota_lets_them_send_past_the_setting_and_limits_them(
    api, user, settings, conversation
):
    settings.QUOTA_TOKENS_PER_DAY = 100
    spent(user, 150)
    User.objects.filter(pk=user.pk).update(quota_tokens_per_day=1000)
    url = f"/api/sessions/{conversation.session.pk}/messages/"
    assert api.post(url, {"content": "Allowed"}, format="json").status_code == 202

    settings.QUOTA_TOKENS_PER_DAY = None
    User.objects.filter(pk=user.pk).update(quota_tokens_per_day=150)
    services.reply_finish(
        message_id=Message.objects.filter(status=Message.Status.STREAMING).get().pk,
        status=Message.Status.COMPLETE,
    )
    assert_error(api.post(url, {"content": "Refused"}, format="json"), 429, "quota_exceeded")


def test_the_quota_is_per_user(api, other_api, user, other_user, settings):
    settings.QUOTA_TOKENS_PER_DAY = 100
    spent(other_user, 1000)
    assert api.post("/api/sessions/", {}, format="json").status_code == 201
    session = ChatSession.objects.get(user=user)
    response = api.post(f"/api/sessions/{session.pk}/messages/", {"content": "Mine"}, format="json")
    assert response.status_code == 202
