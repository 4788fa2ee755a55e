"""API tokens of one's own (SPEC 4.6): GET/POST /api/tokens/, DELETE /api/tokens/<id>/."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.tokens import token_issue

from .conftest import assert_error, bearer_client

pytestmark = pytest.mark.django_db

URL = "/api/tokens/"


def with_token(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_a_created_token_is_shown_once_and_works(api, user):
    response = api.post(URL, {"name": "backup script"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "name", "token", "expires_at"}
    assert body["name"] == "backup script"
    assert parse_datetime(body["expires_at"]) > timezone.now()
    # Only a digest is stored.
    stored = ApiToken.objects.get(pk=body["id"])
    assert stored.user == user and body["token"] not in stored.digest
    assert with_token(body["token"]).get("/api/me/").json()["username"] == user.username


def test_the_list_has_names_and_times_and_never_a_token_value(api, user):
    raw, _ = token_issue(user=user, name="laptop")
    response = api.get(URL)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [t["name"] for t in results] == ["laptop", ""]  # newest first; the api fixture's
    for token in results:
        assert set(token) == {"id", "name", "created_at", "expires_at", "last_used_at"}
    assert raw not in response.content.decode()
    assert all(t.digest not in response.content.decode() for t in ApiToken.objects.all())
    # The fixture's token made this call: it was used; the new one was not.
    assert results[1]["last_used_at"] is not None and results[0]["last_used_at"] is None


def test_the_list_leaves_out_expired_tokens_and_other_users(api, user, other_user):
    _, expired = token_issue(user=user, name="old")
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(1))
    token_issue(user=other_user, name="theirs")
    names = [t["name"] for t in api.get(URL).json()["results"]]
    assert names == [""]


def test_creating_a_token_deletes_the_users_expired_ones(api, user, other_user):
    _, expired = token_issue(user=user, name="old")
    _, theirs = token_issue(user=other_user, name="theirs")
    ApiToken.objects.filter(pk__in=[expired.pk, theirs.pk]).update(
        expires_at=timezone.now() - timedelta(1)
    )
    assert api.post(URL, {"name": "new"}, format="json").status_code == 201
    assert not ApiToken.objects.filter(pk=expired.pk).exists()
    assert ApiToken.objects.filter(pk=theirs.pk).exists()  # another user's: not ours to touch


def test_a_revoked_token_gets_401_at_once(api, user):
    body = api.post(URL, {"name": "ci"}, format="json").json()
    script = with_token(body["token"])
    assert script.get("/api/sessions/").status_code == 200
    response = api.delete(f"{URL}{body['id']}/")
    assert response.status_code == 204 and not response.content
    assert_error(script.get("/api/sessions/"), 401, "authentication_failed")
    assert body["id"] not in [t["id"] for t in api.get(URL).json()["results"]]


def test_a_token_can_revoke_itself(user):
    raw, token = token_issue(user=user, name="self")
    client = with_token(raw)
    assert client.delete(f"{URL}{token.pk}/").status_code == 204
    assert_error(client.get(URL), 401)


def test_another_users_token_is_404_and_keeps_working(api, other_user):
    raw, theirs = token_issue(user=other_user, name="theirs")
    assert_error(api.delete(f"{URL}{theirs.pk}/"), 404, "not_found")
    assert with_token(raw).get("/api/me/").status_code == 200
    assert_error(api.delete(f"{URL}999999999/"), 404, "not_found")


@pytest.mark.parametrize("token_id", ["abc", "0", "-1", "1.5", "9" * 30])
def test_a_malformed_token_id_is_400(api, token_id):
    assert_error(api.delete(f"{URL}{token_id}/"), 400, "invalid")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 81},
        {"name": 7},
        {"name": None},
        {"name": "tab\x1bescape"},
        {"name": "ci", "expires_at": "2099-01-01T00:00:00Z"},
        [],
    ],
)
def test_bad_create_requests_are_400_and_create_nothing(api, user, body):
    before = ApiToken.objects.count()
    error = assert_error(api.post(URL, body, format="json"), 400, "invalid")
    assert error["message"]
    assert ApiToken.objects.count() == before


def test_tokens_need_credentials():
    assert_error(APIClient().get(URL), 401, "not_authenticated")
    assert_error(APIClient().post(URL, {"name": "x"}, format="json"), 401)
    assert_error(APIClient().delete(f"{URL}1/"), 401)


def test_a_password_change_revokes_named_tokens_too(user):
    client = bearer_client(user)
    raw = client.post(URL, {"name": "ci"}, format="json").json()["token"]
    response = client.post(
        "/api/me/password/",
        {"old_password": "pw-for-tests-123", "new_password": "a-New-pass-4-tests"},
        format="json",
    )
    assert response.status_code == 200
    assert_error(with_token(raw).get(URL), 401)
