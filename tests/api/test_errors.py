"""Hostile or broken requests get the API's error shape, never a 500 or an HTML page."""

import pytest

from chat.models import ChatSession, Message

from .conftest import assert_error

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "body",
    ["[" * 100_000, '{"title": NaN}', "{'single': 'quotes'}", "\xff", "[1, 2]", "null"],
)
def test_malformed_json_is_400(api, body):
    response = api.post("/api/sessions/", body, content_type="application/json")
    error = assert_error(response, 400)
    assert error["code"] in ("invalid_json", "invalid")
    assert not ChatSession.objects.exists()


def test_an_import_with_an_impossible_date_is_refused(api):
    # NUL in text is no longer refused: it is stored as U+FFFD (SPEC 4.6, test_bad_input).
    data = {
        "format": "parlor.conversation",
        "version": 1,
        "conversation": {"title": "x"},
        "messages": [{"role": "user", "content": "ok", "created_at": "99999-01-01T00:00"}],
    }
    assert_error(api.post("/api/sessions/import/", data, format="json"), 400)
    assert not ChatSession.objects.exists() and not Message.objects.exists()


def test_other_content_types_are_415(api):
    response = api.post(
        "/api/sessions/", "title=x", content_type="application/x-www-form-urlencoded"
    )
    assert_error(response, 415, "unsupported_media_type")


def test_too_large_bodies_are_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api.post("/api/sessions/import/", {"messages": ["x" * 2000]}, format="json")
    assert_error(response, 413, "too_large")


def test_unknown_api_paths_are_json_404(api):
    assert_error(api.get("/api/nothing/here/"), 404, "not_found")
    assert_error(api.post("/api/sessions/x/unknown/"), 404, "not_found")


def test_wrong_method_is_405(api):
    assert_error(api.put("/api/sessions/", {}, format="json"), 405, "method_not_allowed")
