"""Hostile input at the REST API: a 4xx in the one error shape, never a 500 (SPEC 4.6).

Each test here is a request that once answered 500, or an HTML page under /api/; they run
on SQLite and PostgreSQL (which refuses NUL in text and queries).
"""

import base64
import json

import pytest
from rest_framework.test import APIClient

from chat.models import ChatSession, Message

from .conftest import assert_error

pytestmark = pytest.mark.django_db

HUGE = "1" * 30
ZERO_UUID = "00000000-0000-0000-0000-000000000000"


def post_raw(client, url, body: str, content_type="application/json"):
    """POST ``body`` as written, lone surrogates included (as a JSON escape or raw)."""
    return client.post(url, body.encode("utf-8", "surrogatepass"), content_type=content_type)


def test_token_request_with_a_lone_surrogate_in_the_username_is_401(user):
    anon = APIClient()
    for username in ['"\\ud800"', '"a\\udfffb"', '"\\u0000"', '"x\\u0000"']:
        body = f'{{"username": {username}, "password": "pw-for-tests-123"}}'
        assert_error(post_raw(anon, "/api/auth/token/", body), 401, "authentication_failed")


def test_nul_and_lone_surrogates_in_json_strings_are_stored_as_replacement_characters(api):
    response = post_raw(api, "/api/sessions/", '{"title": "a\\u0000b\\ud800c"}')
    assert response.status_code == 201, response.content
    assert response.json()["title"] == "a\ufffdb\ufffdc"
    assert ChatSession.objects.get().title == "a\ufffdb\ufffdc"
    # A pair written as two escapes is one character, not two replacements.
    response = api.patch(
        f"/api/sessions/{response.json()['id']}/",
        '{"title": "\\ud83d\\ude00"}',
        content_type="application/json",
    )
    assert response.status_code == 200 and response.json()["title"] == "\U0001f600"
    # A surrogate encoded as UTF-8 bytes (CESU-8) is no character either.
    response = api.patch(
        f"/api/sessions/{response.json()['id']}/",
        b'{"title": "a\xed\xa0\x80"}',
        content_type="application/json",
    )
    assert response.status_code == 200 and response.json()["title"] == "a\ufffd"


def test_nul_in_keys_is_an_unknown_field_not_a_500(api):
    error = assert_error(post_raw(api, "/api/sessions/", '{"\\u0000": 1}'), 400, "invalid")
    assert list(error["fields"]) == ["\ufffd"]
    assert_error(post_raw(api, "/api/sessions/", '{"\\ud800": 1}'), 400, "invalid")


def test_imported_text_with_nul_and_surrogates_is_stored_cleaned(api):
    body = json.dumps(
        {
            "format": "parlor.conversation",
            "version": 1,
            "conversation": {"title": "t\x00"},
            "messages": [{"role": "user", "content": "a\x00b"}],
        }
    ).replace("a\\u0000b", "a\\u0000b\\udc00")
    response = post_raw(api, "/api/sessions/import/", body)
    assert response.status_code == 201, response.content
    assert Message.objects.get().content == "a\ufffdb\ufffd"


@pytest.mark.parametrize(
    "body",
    [
        "[" * 65 + "]" * 65,
        '{"title": ' + '{"a": ' * 64 + "1" + "}" * 64 + "}",
        "[" * 100_000,
        '{"title": Infinity}',
        '{"title": "\\ud800", "pinned": NaN}',
        b'{"title": "\xff"}'.decode("utf-8", "surrogateescape"),
    ],
)
def test_deep_or_non_standard_json_is_400_invalid_json(api, body):
    response = api.post(
        "/api/sessions/",
        body.encode("utf-8", "surrogateescape"),
        content_type="application/json",
    )
    error = assert_error(response, 400, "invalid_json")
    assert error["message"].startswith("The request body is not valid JSON: ")
    assert not ChatSession.objects.exists()


def test_a_declared_charset_is_honoured_and_a_bad_one_is_400(api):
    response = api.post(
        "/api/sessions/",
        '{"title": "café"}'.encode("latin-1"),
        content_type="application/json; charset=latin-1",
    )
    assert response.status_code == 201 and response.json()["title"] == "café"
    # A codec that is no text encoding (it would decompress the body) is refused.
    response = api.post("/api/sessions/", b"{}", content_type="application/json; charset=bz2_codec")
    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize(
    "url",
    [
        "/api/sessions/?q=a%00b",
        "/api/sessions/?q=%00",
        "/api/sessions/?cursor=%00",
        "/api/sessions/?model=%00",
        "/api/sessions/?context=%00",
        "/api/sessions/?archived=%00",
        "/api/sessions/?limit=%00",
        "/api/sessions/?%00=1",
        "/api/sessions/active/?model=%00",
        "/api/sessions/active/?run=%00",
    ],
)
def test_nul_in_a_query_parameter_is_400(api, url):
    assert_error(api.get(url), 400, "invalid")


def test_nul_in_the_query_parameters_of_a_conversation_is_400(api, user):
    session = ChatSession.objects.create(user=user)
    for url in [
        f"/api/sessions/{session.pk}/messages/?before=%00",
        f"/api/sessions/{session.pk}/messages/?limit=%00",
        f"/api/sessions/{session.pk}/export/?format=%00",
    ]:
        assert_error(api.get(url), 400, "invalid")


def cursor(payload: str) -> str:
    return base64.urlsafe_b64encode(payload.encode("utf-8", "surrogatepass")).decode()


@pytest.mark.parametrize(
    "payload",
    [
        '{"o": 1e999}',
        '{"o": ' + HUGE + "}",
        '{"p": true, "a": "2024-01-01T00:00:00\\u0000", "i": "x"}',
        '{"p": true, "a": "\\ud800", "i": "\\ud800"}',
        json.dumps({"p": True, "a": "99999-01-01", "i": ZERO_UUID}),
        json.dumps({"p": True, "a": "2024-01-01T00:00:00+99:00", "i": ZERO_UUID}),
        "[" * 10_000,
    ],
)
def test_hostile_cursors_are_400(api, payload):
    for url in ["/api/sessions/?cursor=", "/api/sessions/?q=plan&cursor="]:
        assert_error(api.get(url + cursor(payload)), 400, "invalid")


@pytest.mark.parametrize("value", [HUGE, "9223372036854775808", "-" + HUGE, "9" * 5000])
def test_absurd_integers_in_queries_and_paths_are_4xx(api, value):
    for url in [
        f"/api/sessions/?model={value}",
        f"/api/sessions/?run={value}",
        f"/api/sessions/?limit={value}",
        f"/api/sessions/active/?model={value}",
    ]:
        assert_error(api.get(url), 400, "invalid")
    for url in [f"/api/models/{value}/", f"/api/runs/{value}/"]:
        assert_error(api.get(url), 400, "invalid")
        assert_error(api.patch(url, {}, format="json"), 400, "invalid")
        assert_error(api.delete(url), 400, "invalid")
    assert_error(api.get(f"/api/models/{value}/runs/"), 400, "invalid")
    assert_error(api.post(f"/api/models/{value}/runs/", {}, format="json"), 400, "invalid")


def test_unknown_routes_are_json_404_with_or_without_credentials(api):
    # enforce_csrf_checks: as a browser without a CSRF token; a bare Django view would
    # answer the HTML CSRF failure page instead of the 404.
    anon = APIClient(enforce_csrf_checks=True)
    for client in (api, anon):
        for method in ["get", "post", "put", "patch", "delete", "options"]:
            for url in ["/api/", "/api/nope", "/api/nope/", "/api/sessions", "/api/%00"]:
                response = getattr(client, method)(url)
                assert_error(response, 404, "not_found")


def test_known_routes_with_a_wrong_method_are_json_without_credentials():
    anon = APIClient(enforce_csrf_checks=True)
    assert_error(anon.put("/api/sessions/"), 401, "not_authenticated")
    assert_error(anon.delete("/api/auth/token/"), 405, "method_not_allowed")
    assert_error(anon.post("/api/schema/"), 405, "method_not_allowed")
    assert_error(anon.delete("/api/docs/"), 405, "method_not_allowed")
    # OPTIONS on the docs page once had no template to render its metadata with (500).
    assert_error(anon.options("/api/docs/"), 405, "method_not_allowed")


def test_the_schema_is_json_and_ignores_a_version_parameter():
    anon = APIClient()
    response = anon.get("/api/schema/?version=%00%0d%0a")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert "\x00" not in response["Content-Disposition"]
    assert response.json()["info"]["version"] == "1.0.0"
    yaml = anon.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi")
    assert yaml.content.startswith(b"openapi:")


def test_a_bad_host_header_under_api_is_json_400(api):
    assert_error(api.get("/api/sessions/", HTTP_HOST="evil.example\x00"), 400, "bad_request")
