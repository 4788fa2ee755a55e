"""GET/PATCH /api/me/ (SPEC 4.6): your settings; bad input is a 400 that changes nothing."""

import pytest
from rest_framework.test import APIClient

from accounts.models import User

from .conftest import assert_error

pytestmark = pytest.mark.django_db

URL = "/api/me/"
FIELDS = {"username", "display_name", "theme", "about_me", "response_style", "default_llm"}


def settings_of(user) -> dict:
    user = User.objects.get(pk=user.pk)
    return {name: getattr(user, name) for name in FIELDS}


def test_me_reads_the_settings_of_the_caller(api, user):
    response = api.get(URL)
    assert response.status_code == 200
    assert response.json() == {
        "username": user.username,
        "display_name": "",
        "theme": "system",
        "about_me": "",
        "response_style": "",
        "default_llm": "",
    }


def test_patch_changes_only_what_is_sent_and_answers_the_whole(api, user):
    User.objects.filter(pk=user.pk).update(about_me="I teach maths.")
    response = api.patch(
        URL,
        {"display_name": "  Ada \t Lovelace ", "theme": "dark", "default_llm": "parlor-dev-mini"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == FIELDS
    assert body["display_name"] == "Ada Lovelace"  # whitespace collapsed
    assert body["theme"] == "dark"
    assert body["default_llm"] == "parlor-dev-mini"
    assert body["about_me"] == "I teach maths."  # not sent: kept
    assert settings_of(user) == body


def test_patch_keeps_the_lines_of_custom_instructions(api, user):
    response = api.patch(
        URL,
        {"about_me": " I teach maths.\r\nIn Lyon. ", "response_style": "Short.\n\nIn French."},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["about_me"] == "I teach maths.\nIn Lyon."
    assert response.json()["response_style"] == "Short.\n\nIn French."


def test_emptying_a_setting_is_allowed(api, user):
    User.objects.filter(pk=user.pk).update(display_name="Ada", default_llm="parlor-dev")
    response = api.patch(URL, {"display_name": "", "default_llm": ""}, format="json")
    assert response.status_code == 200
    assert settings_of(user)["display_name"] == "" and settings_of(user)["default_llm"] == ""


def test_nul_and_lone_surrogates_are_stored_as_the_replacement_character(api, user):
    body = '{"about_me": "a\\u0000b \\ud800c"}'  # as JSON escapes: no client encodes them
    response = api.patch(URL, body, content_type="application/json")
    assert response.status_code == 200
    assert settings_of(user)["about_me"] == "a\ufffdb \ufffdc"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"display_name": "x" * 81}, "display_name"),
        ({"display_name": "a\x07b"}, "display_name"),
        ({"display_name": 5}, "display_name"),
        ({"theme": "sepia"}, "theme"),
        ({"theme": None}, "theme"),
        ({"about_me": "x" * 1501}, "about_me"),
        ({"response_style": "x" * 1501}, "response_style"),
        ({"response_style": ["a"]}, "response_style"),
        ({"default_llm": 1}, "default_llm"),
        ({"username": "someone-else"}, "username"),
        ({"is_staff": True}, "is_staff"),
        ({"quota_tokens_per_day": 10**9}, "quota_tokens_per_day"),
        # One bad field refuses the good ones sent with it.
        ({"display_name": "Fine", "theme": "sepia"}, "theme"),
    ],
)
def test_bad_input_is_400_invalid_and_changes_nothing(api, user, body, field):
    before = settings_of(user)
    error = assert_error(api.patch(URL, body, format="json"), 400, "invalid")
    assert field in error["fields"]
    assert settings_of(user) == before


@pytest.mark.parametrize("body", ["[]", '"dark"', "{", "null"])
def test_a_body_that_is_not_an_object_is_400(api, user, body):
    before = settings_of(user)
    response = api.patch(URL, body, content_type="application/json")
    assert response.status_code == 400
    assert settings_of(user) == before


@pytest.mark.parametrize("name", ["gpt-nonexistent", "x" * 500, "PARLOR-DEV"])
def test_an_llm_the_provider_does_not_list_is_400_unknown_llm(api, user, name):
    before = settings_of(user)
    response = api.patch(URL, {"default_llm": name, "display_name": "Ada"}, format="json")
    error = assert_error(response, 400, "unknown_llm")
    assert error["fields"] == {"default_llm": [error["message"]]}
    assert len(error["message"]) < 200
    assert settings_of(user) == before


def test_the_llm_allow_list_limits_the_default(api, user, settings):
    settings.LLM_MODELS = ["parlor-dev"]
    assert_error(api.patch(URL, {"default_llm": "parlor-dev-mini"}, format="json"), 400)
    assert api.patch(URL, {"default_llm": "parlor-dev"}, format="json").status_code == 200


def test_me_needs_credentials_and_a_csrf_token_for_browser_writes(user):
    assert_error(APIClient().get(URL), 401, "not_authenticated")
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.get(URL).status_code == 200
    assert_error(browser.patch(URL, {"theme": "dark"}, format="json"), 403)
    assert settings_of(user)["theme"] == "system"


def test_each_user_sees_and_changes_only_their_own(api, other_api, user, other_user):
    other_api.patch(URL, {"display_name": "Other"}, format="json")
    assert api.get(URL).json()["display_name"] == ""
    assert settings_of(other_user)["display_name"] == "Other"
