import pytest
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from accounts.models import ApiToken

from .conftest import assert_error

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/auth/token/"
PASSWORD = "pw-for-tests-123"


def test_token_is_issued_for_good_credentials_and_authenticates(user):
    client = APIClient()
    response = client.post(
        TOKEN_URL, {"username": user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "expires_at"}
    assert parse_datetime(body["expires_at"]) is not None
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    assert client.get("/api/sessions/").status_code == 200


def test_bad_credentials_are_401_and_issue_nothing(user):
    response = APIClient().post(
        TOKEN_URL, {"username": user.username, "password": "wrong"}, format="json"
    )
    assert_error(response, 401, "authentication_failed")
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"username": "x"},
        {"username": 1, "password": "p"},
        {"username": "x", "password": "p", "a": 1},
    ],
)
def test_malformed_token_requests_are_400(user, body):
    error = assert_error(APIClient().post(TOKEN_URL, body, format="json"), 400, "invalid")
    assert error["fields"]


def test_unauthenticated_and_bad_tokens_are_401():
    assert_error(APIClient().get("/api/sessions/"), 401, "not_authenticated")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    response = client.get("/api/sessions/")
    assert_error(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_session_auth_needs_csrf_for_writes(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/api/sessions/").status_code == 200
    assert_error(client.post("/api/sessions/", {}, format="json"), 403, "permission_denied")


def test_token_issuing_is_rate_limited_per_username(user, settings):
    settings.THROTTLE_TOKENS = "2/min"
    client = APIClient()
    body = {"username": user.username, "password": "wrong"}
    assert client.post(TOKEN_URL, body, format="json").status_code == 401
    assert client.post(TOKEN_URL, body, format="json").status_code == 401
    response = client.post(TOKEN_URL, body, format="json")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
