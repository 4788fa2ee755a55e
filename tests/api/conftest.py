import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.tokens import token_issue
from tests.chat.conftest import _llm_clients_closed  # noqa: F401 (autouse here too)


@pytest.fixture(autouse=True)
def api_settings(settings):
    """Start every test with empty throttle counters and rates no test trips by accident."""
    settings.THROTTLE_MESSAGES = "1000/min"
    settings.THROTTLE_TOKENS = "1000/min"
    cache.clear()
    yield
    cache.clear()


def bearer_client(user) -> APIClient:
    raw, _ = token_issue(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def api(user):
    return bearer_client(user)


@pytest.fixture
def other_api(other_user):
    return bearer_client(other_user)


def assert_error(response, status: int, code: str | None = None) -> dict:
    """Check the one error shape of the API and return its body."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]
