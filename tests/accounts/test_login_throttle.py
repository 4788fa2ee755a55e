"""Browser sign-in is paused after too many failures for one username and address."""

import pytest
from django.core.cache import cache

from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def small_rate(settings):
    settings.LOGIN_ATTEMPTS = "3/5min"
    cache.clear()
    yield
    cache.clear()


def sign_in(client, username, password):
    return client.post("/accounts/login/", {"username": username, "password": password})


@pytest.mark.django_db
def test_sign_in_is_refused_with_429_after_the_allowed_failures_even_with_the_right_password(
    client,
):
    UserFactory(username="alice")
    for _ in range(3):
        assert sign_in(client, "alice", "wrong").status_code == 200
    response = sign_in(client, "alice", "pw-for-tests-123")
    assert response.status_code == 429
    assert response["Retry-After"] == "300"
    assert "Too many failed sign-ins" in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_other_usernames_are_not_paused_and_a_success_resets_the_count(client):
    UserFactory(username="alice")
    UserFactory(username="bob")
    for _ in range(3):
        sign_in(client, "alice", "wrong")
    assert sign_in(client, "bob", "pw-for-tests-123").status_code == 302
    client.logout()
    cache.clear()
    sign_in(client, "bob", "wrong")
    sign_in(client, "bob", "wrong")
    assert sign_in(client, "bob", "pw-for-tests-123").status_code == 302
    client.logout()
    # The success cleared bob's two failures: three more are allowed before the pause.
    for _ in range(2):
        sign_in(client, "bob", "wrong")
    assert sign_in(client, "bob", "pw-for-tests-123").status_code == 302
