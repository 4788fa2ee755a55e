"""POST /api/import/chatgpt/: a ChatGPT data export, uploaded as multipart ``file``."""

import io

import pytest
from rest_framework.test import APIClient

from chat import chatgpt
from chat.models import ChatSession
from tests.chat.chatgpt_export import (
    TRIP_ID,
    TRIP_TREE,
    conversations,
    export_bytes,
    export_zip,
    tree,
)

from .conftest import assert_error

pytestmark = pytest.mark.django_db
URL = "/api/import/chatgpt/"


def upload(data: bytes, name: str = "conversations.json") -> dict:
    file = io.BytesIO(data)
    file.name = name
    return {"file": file}


def test_an_export_is_imported_and_the_answer_counts_it(api, user):
    response = api.post(URL, upload(export_zip(), "chatgpt-export.zip"), format="multipart")

    assert response.status_code == 200, response.content
    assert response.json() == {"imported": 2, "skipped": 0, "errors": []}
    trip = ChatSession.objects.get(user=user, imported_from=chatgpt.SOURCE + TRIP_ID)
    assert tree(trip) == TRIP_TREE


def test_a_second_upload_skips_and_another_users_is_their_own(api, other_api, user, other_user):
    api.post(URL, upload(export_bytes()), format="multipart")

    again = api.post(URL, upload(export_bytes()), format="multipart")
    theirs = other_api.post(URL, upload(export_bytes()), format="multipart")

    assert again.json() == {"imported": 0, "skipped": 2, "errors": []}
    assert theirs.json() == {"imported": 2, "skipped": 0, "errors": []}
    assert ChatSession.objects.filter(user=user).count() == 2
    assert ChatSession.objects.filter(user=other_user).count() == 2


def test_a_broken_conversation_is_named_in_errors(api):
    broken = conversations()[1]
    broken.update(title="Going round", id="loop", conversation_id="loop")
    broken["mapping"]["b-root"]["parent"] = "b-a1"
    response = api.post(URL, upload(export_bytes([conversations()[0], broken])), format="multipart")
    assert response.json() == {
        "imported": 1,
        "skipped": 0,
        "errors": [{"conversation": "Going round", "error": "Its messages' parents form a cycle."}],
    }


NOT_AN_EXPORT = {
    "not JSON": b"\x89PNG\r\n\x1a\n not an export",
    "an object": b'{"title": "one conversation"}',
    "a list without mappings": b'[{"title": "a"}, {"title": "b"}]',
    "a zip without conversations.json": export_zip(name="ChatGPT-export/notes.json"),
}


@pytest.mark.parametrize("data", NOT_AN_EXPORT.values(), ids=NOT_AN_EXPORT.keys())
def test_a_file_that_is_not_an_export_is_400_invalid_and_imports_nothing(api, data):
    error = assert_error(api.post(URL, upload(data), format="multipart"), 400, "invalid")
    assert error["fields"] == {"file": [error["message"]]}
    assert ChatSession.objects.count() == 0


def test_no_file_an_empty_one_and_a_json_body_are_refused(api):
    assert_error(api.post(URL, {}, format="multipart"), 400, "invalid")
    assert_error(api.post(URL, upload(b""), format="multipart"), 400, "invalid")
    assert_error(api.post(URL, {"file": "x"}, format="json"), 415)
    # multipart without a boundary
    malformed = api.post(URL, b"file=x", content_type="multipart/form-data")
    assert_error(malformed, 400, "invalid")


def test_a_file_over_the_limit_is_413(api, monkeypatch):
    monkeypatch.setattr(chatgpt, "EXPORT_MAX_BYTES", 1000)
    assert_error(api.post(URL, upload(export_bytes()), format="multipart"), 413, "too_large")
    assert ChatSession.objects.count() == 0


def test_without_credentials_it_is_401():
    response = APIClient().post(URL, upload(export_bytes()), format="multipart")
    assert_error(response, 401, "not_authenticated")
    assert ChatSession.objects.count() == 0
