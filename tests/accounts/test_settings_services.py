"""accounts.services' settings and tokens: the rules /settings/ and /api/me/ share, and the
last use of a token written at most once a minute."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import selectors, services
from accounts.models import ApiToken, User
from accounts.tokens import LAST_USED_EVERY, token_issue, token_user
from core.exceptions import DomainError, NotFound, UnknownLLM

pytestmark = pytest.mark.django_db


def fresh(user) -> User:
    return User.objects.get(pk=user.pk)


def test_profile_update_stores_cleaned_values_in_one_update(user, django_assert_num_queries):
    with django_assert_num_queries(1):
        services.profile_update(
            user=user,
            display_name=" Ada\u3000 Lovelace ",
            theme="light",
            about_me="  Maths teacher.\r\n",
            response_style="Briefly.",
        )
    row = fresh(user)
    assert row.display_name == "Ada Lovelace"
    assert (row.theme, row.about_me, row.response_style) == ("light", "Maths teacher.", "Briefly.")
    assert user.display_name == "Ada Lovelace"  # the object passed in follows


def test_nothing_to_change_is_no_query(user, django_assert_num_queries):
    with django_assert_num_queries(0):
        services.profile_update(user=user)


def test_the_limits_count_what_is_stored(user):
    # Whitespace runs count as one space; a Windows line end as one character.
    services.profile_update(user=user, display_name="a" + " " * 50 + "b" * 78)
    services.profile_update(user=user, about_me="x\r\n" * 500)
    assert len(fresh(user).display_name) == 80
    assert len(fresh(user).about_me) == 999


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"display_name": "x" * 81}, "display_name"),
        ({"display_name": "bell\x07"}, "display_name"),
        ({"display_name": "nul\x00"}, "display_name"),
        ({"display_name": None}, "display_name"),
        ({"theme": "Dark"}, "theme"),
        ({"about_me": "x" * 1501}, "about_me"),
        ({"response_style": b"bytes"}, "response_style"),
        ({"username": "mallory"}, "username"),
        ({"about_me": "fine", "theme": "blue"}, "theme"),
    ],
)
def test_a_refused_value_names_its_field_and_changes_nothing(user, changes, field):
    with pytest.raises(DomainError) as caught:
        services.profile_update(user=user, **changes)
    assert caught.value.field == field and caught.value.message
    row = fresh(user)
    assert (row.display_name, row.theme, row.about_me, row.username) == (
        "",
        "system",
        "",
        user.username,
    )


def test_the_default_llm_must_be_offered(user):
    offered = lambda: ["parlor-dev", "big-one"]  # noqa: E731
    services.profile_update(user=user, default_llm="big-one", llms=offered)
    assert fresh(user).default_llm == "big-one"
    with pytest.raises(UnknownLLM) as caught:
        services.profile_update(user=user, default_llm="small-one", llms=offered)
    assert (caught.value.code, caught.value.status, caught.value.field) == (
        "unknown_llm",
        400,
        "default_llm",
    )
    assert fresh(user).default_llm == "big-one"


def test_without_a_list_only_llm_model_is_offered_and_nobody_is_asked(user, settings):
    settings.LLM_MODEL = "house-llm"
    services.profile_update(user=user, default_llm="house-llm")
    with pytest.raises(UnknownLLM):
        services.profile_update(user=user, default_llm="parlor-dev")

    def not_asked():
        raise AssertionError("the list is read only when default_llm is set")

    services.profile_update(user=user, theme="dark", llms=not_asked)
    services.profile_update(user=user, default_llm="", llms=not_asked)


def test_token_create_names_and_token_revoke_deletes(user, other_user):
    raw, token = services.token_create(user=user, name="  my   laptop ")
    assert token.name == "my laptop"
    assert token_user(raw) == user
    with pytest.raises(NotFound):
        services.token_revoke(user=other_user, token_id=token.pk)
    assert token_user(raw) == user
    services.token_revoke(user=user, token_id=str(token.pk))
    assert token_user(raw) is None
    with pytest.raises(NotFound):
        services.token_revoke(user=user, token_id=token.pk)


@pytest.mark.parametrize("name", ["", "  ", "x" * 81, None, 3, "a\x1bb"])
def test_a_token_needs_a_name_of_one_line(user, name):
    with pytest.raises(DomainError) as caught:
        services.token_create(user=user, name=name)
    assert caught.value.field == "name"
    assert not ApiToken.objects.exists()


def test_the_list_is_newest_first_without_expired_tokens(user):
    _, first = token_issue(user=user, name="first")
    _, second = token_issue(user=user, name="second")
    _, gone = token_issue(user=user, name="gone")
    ApiToken.objects.filter(pk=gone.pk).update(expires_at=timezone.now())
    assert [t.name for t in selectors.token_list(user=user)] == ["second", "first"]


def test_profile_get_loads_a_token_users_settings_in_one_query(user, django_assert_num_queries):
    raw, _ = token_issue(user=user)
    token_user(raw)  # the first use writes last_used_at
    found = token_user(raw)
    with django_assert_num_queries(1):
        loaded = selectors.profile_get(user=found)
        assert [getattr(loaded, name) for name in selectors.PROFILE_READ_FIELDS]


def _token_writes(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("UPDATE")]


def test_last_used_at_is_written_at_most_once_a_minute(user):
    raw, token = token_issue(user=user)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert token_user(raw) == user
    assert len(_token_writes(queries.captured_queries)) == 1
    first = ApiToken.objects.get(pk=token.pk).last_used_at
    assert timezone.now() - first < timedelta(seconds=5)

    # Within the minute: the time stays as it was.
    assert token_user(raw) == user
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first

    # A minute later: written again, once.
    stale = timezone.now() - LAST_USED_EVERY - timedelta(seconds=1)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=stale)
    with CaptureQueriesContext(connection) as queries:
        token_user(raw)
        token_user(raw)
    assert len(_token_writes(queries.captured_queries)) == 1
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first


def test_a_refused_token_writes_nothing(user):
    raw, token = token_issue(user=user)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
    assert token_user(raw) is None
    assert ApiToken.objects.get(pk=token.pk).last_used_at is None
    User.objects.filter(pk=user.pk).update(is_active=False)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() + timedelta(1))
    assert token_user(raw) is None
    assert ApiToken.objects.get(pk=token.pk).last_used_at is None
