"""One bearer-token parser and a lookup that refuses what cannot be a token."""

import pytest
from rest_framework.test import APIClient

from accounts.tokens import bearer_token, token_issue, token_user
from tests.api.conftest import assert_error


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc-DEF_123", "abc-DEF_123"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("Bearer   abc", "abc"),
        ("  Bearer abc\t", "abc"),
        (b"Bearer abc", "abc"),
        ("Bearer a.b~c+d/e==", "a.b~c+d/e=="),
    ],
)
def test_bearer_token_reads_the_scheme_in_any_case(header, token):
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "Bearerabc",
        "Token abc",
        "Bearer ab\u00e9c",
        "Bearer abc\x00",
        "Bearer a=b",
        "Bearer\tabc",
        b"Bearer \xff\xfe",
    ],
)
def test_bearer_token_is_none_when_absent_or_malformed(header):
    assert bearer_token(header) is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "raw", ["", "x" * 201, "abc def", "t\u00f6ken", "abc\x00", "a'b", "%41", 12, None, b"abc"]
)
def test_token_user_refuses_what_cannot_be_a_token_without_a_query(raw, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert token_user(raw) is None


@pytest.mark.django_db
def test_token_user_still_finds_a_real_token(user, django_assert_num_queries):
    raw, _ = token_issue(user=user)
    # The first use writes last_used_at; the next ones within a minute are one SELECT.
    with django_assert_num_queries(2):
        assert token_user(raw) == user
    with django_assert_num_queries(1):
        assert token_user(raw) == user


@pytest.mark.django_db
@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_rest_api_reads_the_header_with_bearer_token(user, scheme):
    raw, _ = token_issue(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {raw}")
    assert client.get("/api/sessions/").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer t\u00f6ken", "Basic abc"])
def test_the_rest_api_treats_an_unreadable_header_as_no_token(user, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/sessions/")
    assert_error(response, 401, "not_authenticated")
    # ...and the browser session still counts, as on SSE and the WebSocket.
    client.force_login(user)
    assert client.get("/api/sessions/").status_code == 200
