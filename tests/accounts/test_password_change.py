"""Changing the password signs out the other sessions and revokes every API token."""

import logging

import pytest
from django.contrib.auth import SESSION_KEY
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.tokens import token_issue
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db

URL = "/api/me/password/"
OLD = "pw-for-tests-123"
NEW = "a-new-long-pass-phrase-7"


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def signed_in_browser(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_with_a_token_it_changes_the_password_and_revokes_every_token(user, other_user):
    raw, _ = token_issue(user=user)
    second, _ = token_issue(user=user)
    others, _ = token_issue(user=other_user)
    browser = signed_in_browser(user)
    assert browser.get("/api/sessions/").status_code == 200

    response = bearer(raw).post(URL, {"old_password": OLD, "new_password": NEW}, format="json")

    assert response.status_code == 200
    assert response.json() == {"tokens_revoked": 2}
    user.refresh_from_db()
    assert user.check_password(NEW)
    for token in (raw, second):
        assert_error(bearer(token).get("/api/sessions/"), 401, "authentication_failed")
    assert_error(browser.get("/api/sessions/"), 401, "not_authenticated")
    # Another user's tokens are theirs.
    assert bearer(others).get("/api/sessions/").status_code == 200


def test_from_a_browser_session_it_keeps_that_session_and_ends_the_others(user):
    raw, _ = token_issue(user=user)
    current = APIClient(enforce_csrf_checks=True)
    current.force_login(user)
    current.get("/accounts/password/")  # a page with a form sets the CSRF cookie
    elsewhere = signed_in_browser(user)

    response = current.post(
        URL,
        {"old_password": OLD, "new_password": NEW},
        format="json",
        HTTP_X_CSRFTOKEN=current.cookies["csrftoken"].value,
    )

    assert response.status_code == 200
    assert response.json() == {"tokens_revoked": 1}
    assert current.get("/api/sessions/").status_code == 200
    assert_error(elsewhere.get("/api/sessions/"), 401, "not_authenticated")
    assert_error(bearer(raw).get("/api/sessions/"), 401, "authentication_failed")


def test_a_session_write_needs_its_csrf_token(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(URL, {"old_password": OLD, "new_password": NEW}, format="json")
    assert_error(response, 403, "permission_denied")
    user.refresh_from_db()
    assert user.check_password(OLD)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"old_password": "wrong", "new_password": NEW}, "old_password"),
        ({"old_password": OLD, "new_password": "12345678"}, "new_password"),
        ({"old_password": OLD, "new_password": "short"}, "new_password"),
        ({"old_password": OLD, "new_password": "password"}, "new_password"),
        ({"old_password": OLD}, "new_password"),
        ({"old_password": OLD, "new_password": 12345678901234}, "new_password"),
        ({"old_password": OLD, "new_password": NEW, "extra": 1}, "extra"),
    ],
)
def test_a_refused_change_is_400_invalid_with_fields_and_changes_nothing(user, body, field):
    raw, _ = token_issue(user=user)
    error = assert_error(bearer(raw).post(URL, body, format="json"), 400, "invalid")
    assert field in error["fields"]
    user.refresh_from_db()
    assert user.check_password(OLD)
    assert ApiToken.objects.filter(user=user).count() == 1


def test_a_new_password_like_the_username_is_refused(user):
    raw, _ = token_issue(user=user)
    body = {"old_password": OLD, "new_password": f"{user.username}!"}
    error = assert_error(bearer(raw).post(URL, body, format="json"), 400, "invalid")
    assert "new_password" in error["fields"]


def test_signed_out_it_is_401():
    response = APIClient().post(URL, {"old_password": OLD, "new_password": NEW}, format="json")
    assert_error(response, 401, "not_authenticated")


def test_the_schema_documents_it():
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/me/password/"]["post"]
    assert set(operation["responses"]) >= {"200", "400", "401", "403"}
    error = operation["responses"]["400"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    assert "Error" in schema["components"]["schemas"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    name = body.rsplit("/", 1)[1]
    assert set(schema["components"]["schemas"][name]["required"]) == {
        "old_password",
        "new_password",
    }


def test_no_token_value_or_password_reaches_a_log_line(user, caplog):
    caplog.set_level(logging.DEBUG)
    client = APIClient()
    issued = client.post(
        "/api/auth/token/", {"username": user.username, "password": OLD}, format="json"
    ).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued}")
    changed = client.post(URL, {"old_password": OLD, "new_password": NEW}, format="json")
    assert changed.status_code == 200
    assert client.get("/api/sessions/").status_code == 401  # logged as a warning

    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert f"user {user.pk} changed their password; 1 API tokens revoked" in logged
    assert issued not in logged
    assert OLD not in logged and NEW not in logged


# The browser page -------------------------------------------------------------------


def post_page(client, old=OLD, new1=NEW, new2=NEW):
    return client.post(
        "/accounts/password/",
        {"old_password": old, "new_password1": new1, "new_password2": new2},
    )


def test_the_page_needs_a_signed_in_user(client):
    response = client.get("/accounts/password/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_page_changes_the_password_keeps_this_session_and_revokes_the_rest(client, user):
    raw, _ = token_issue(user=user)
    elsewhere = signed_in_browser(user)
    client.force_login(user)
    page = client.get("/accounts/password/")
    assert page.status_code == 200
    assert 'autocomplete="current-password"' in page.content.decode()

    response = post_page(client)

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW)
    assert client.session[SESSION_KEY] == str(user.pk)
    assert "Your password was changed" in client.get(response["Location"]).content.decode()
    assert_error(elsewhere.get("/api/sessions/"), 401, "not_authenticated")
    assert_error(bearer(raw).get("/api/sessions/"), 401, "authentication_failed")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"old": "wrong"}, "The old password is not correct."),
        ({"new2": "something-else-entirely-5"}, "The two new passwords differ."),
        ({"new1": "12345678", "new2": "12345678"}, "This password is entirely numeric."),
    ],
)
def test_the_page_shows_what_is_wrong_and_changes_nothing(client, user, fields, message):
    raw, _ = token_issue(user=user)
    client.force_login(user)
    response = post_page(client, **fields)
    assert response.status_code == 200
    assert message in response.content.decode()
    user.refresh_from_db()
    assert user.check_password(OLD)
    assert bearer(raw).get("/api/sessions/").status_code == 200
