"""Sign up, sign in and sign out with Django's session auth (SPEC 4.3)."""

import pytest
from django.contrib.auth import SESSION_KEY

from accounts.models import User

pytestmark = pytest.mark.django_db


def test_the_signup_page_creates_a_user_and_signs_them_in(client):
    assert client.get("/accounts/signup/").status_code == 200
    response = client.post(
        "/accounts/signup/",
        {
            "username": "newcomer",
            "password1": "a-long-pass-phrase-9",
            "password2": "a-long-pass-phrase-9",
        },
    )
    assert response.status_code == 302
    user = User.objects.get(username="newcomer")
    assert user.check_password("a-long-pass-phrase-9")
    assert client.session[SESSION_KEY] == str(user.pk)


def test_signup_with_mismatched_passwords_creates_nobody(client):
    response = client.post(
        "/accounts/signup/",
        {"username": "newcomer", "password1": "a-long-pass-phrase-9", "password2": "different-9"},
    )
    assert response.status_code == 200
    assert not User.objects.filter(username="newcomer").exists()
    assert SESSION_KEY not in client.session


def test_signup_with_a_taken_username_is_refused(client, user):
    response = client.post(
        "/accounts/signup/",
        {
            "username": user.username,
            "password1": "a-long-pass-phrase-9",
            "password2": "a-long-pass-phrase-9",
        },
    )
    assert response.status_code == 200
    assert User.objects.filter(username=user.username).count() == 1


def test_login_and_logout(client, user):
    assert client.get("/accounts/login/").status_code == 200
    response = client.post(
        "/accounts/login/", {"username": user.username, "password": "pw-for-tests-123"}
    )
    assert response.status_code == 302
    assert client.session[SESSION_KEY] == str(user.pk)
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert SESSION_KEY not in client.session


def test_login_with_a_wrong_password_fails(client, user):
    response = client.post("/accounts/login/", {"username": user.username, "password": "wrong"})
    assert response.status_code == 200
    assert SESSION_KEY not in client.session


def test_a_signed_in_user_visiting_signup_is_sent_home(client, user):
    client.force_login(user)
    response = client.get("/accounts/signup/")
    assert response.status_code == 302
    assert User.objects.count() == 1
