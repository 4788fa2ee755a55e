"""Usernames are unique case-insensitively after NFKC normalization, from every door."""

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from accounts.models import User, username_key
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-pass-phrase-9"
# Case, fullwidth (NFKC), the long s (casefold), and a non-ASCII letter's case.
CLASHES = [("alice", "ALICE"), ("alice", "\uff41\uff4c\uff49\uff43\uff45"), ("Ännie", "äNNIE")]


def test_the_key_folds_case_and_compatibility_forms():
    assert username_key("ALICE") == username_key("\uff21lice") == "alice"
    assert username_key("Stra\u00dfe") == username_key("STRASSE")
    assert username_key("bob") != username_key("alice")


@pytest.mark.parametrize(("first", "second"), CLASHES)
def test_signup_refuses_a_name_that_differs_only_in_case_or_width(client, first, second):
    UserFactory(username=first)
    response = client.post(
        "/accounts/signup/", {"username": second, "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert User.objects.count() == 1


@pytest.mark.parametrize(("first", "second"), CLASHES)
def test_createsuperuser_refuses_it(first, second):
    UserFactory(username=first)
    with pytest.raises(CommandError, match="already taken"):
        call_command("createsuperuser", username=second, email="", interactive=False, verbosity=0)
    assert User.objects.count() == 1


@pytest.mark.parametrize(("first", "second"), CLASHES)
def test_the_admin_refuses_it_on_add_and_on_rename(client, first, second):
    admin = User.objects.create_superuser("root", password=PASSWORD)
    UserFactory(username=first)
    client.force_login(admin)
    response = client.post(
        "/admin/accounts/user/add/",
        {
            "username": second,
            "password1": PASSWORD,
            "password2": PASSWORD,
            "usable_password": "true",
        },
    )
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert User.objects.count() == 2

    other = UserFactory(username="someone-else")
    change = {"is_active": "on", "date_joined_0": "2024-01-01", "date_joined_1": "00:00:00"}
    url = f"/admin/accounts/user/{other.pk}/change/"
    response = client.post(url, {"username": second, **change})
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    other.refresh_from_db()
    assert other.username == "someone-else"
    # The same form with a free name goes through, and the key follows the rename.
    assert client.post(url, {"username": "Free-Name", **change}).status_code == 302
    other.refresh_from_db()
    assert (other.username, other.username_key) == ("Free-Name", "free-name")


@pytest.mark.parametrize(("first", "second"), CLASHES)
def test_the_database_refuses_it_whatever_saves_the_row(first, second):
    UserFactory(username=first)
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username=second)


def test_sign_in_accepts_any_case_of_the_name(client):
    UserFactory(username="alice")
    response = client.post(
        "/accounts/login/", {"username": "ALICE", "password": "pw-for-tests-123"}
    )
    assert response.status_code == 302
