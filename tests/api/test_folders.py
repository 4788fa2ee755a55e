"""Folders on the API (SPEC 4.6): CRUD, isolation (another user's folder is 404), bad
input refused whole, conversations filed by PATCH ``folder`` (general, kept ones only),
and a deleted folder's conversations kept in no folder."""

import pytest

from chat import services
from chat.models import ChatSession, Folder
from tests.factories import ChatSessionFactory, ModelFactory

from .conftest import assert_error

pytestmark = pytest.mark.django_db


def test_create_list_rename_delete(api, user):
    created = api.post("/api/folders/", {"name": "  Work   stuff "}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body == {"id": body["id"], "name": "Work stuff"}
    api.post("/api/folders/", {"name": "Archive 2025"}, format="json")
    listed = api.get("/api/folders/").json()["results"]
    assert [f["name"] for f in listed] == ["Archive 2025", "Work stuff"]
    renamed = api.patch(f"/api/folders/{body['id']}/", {"name": "Jobs"}, format="json")
    assert renamed.status_code == 200 and renamed.json() == {"id": body["id"], "name": "Jobs"}
    assert api.delete(f"/api/folders/{body['id']}/").status_code == 204
    assert [f["name"] for f in api.get("/api/folders/").json()["results"]] == ["Archive 2025"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": 12},
        {"name": None},
        {"name": "x" * 81},
        {"name": "bell\x07"},
        {"name": "ok", "extra": 1},
        ["name"],
    ],
)
def test_bad_names_are_400_and_change_nothing(api, user, body):
    folder = services.folder_create(user=user, name="Kept")
    assert_error(api.post("/api/folders/", body, format="json"), 400, "invalid")
    assert_error(api.patch(f"/api/folders/{folder.pk}/", body, format="json"), 400, "invalid")
    assert list(Folder.objects.values_list("name", flat=True)) == ["Kept"]


def test_a_name_of_80_characters_is_fine(api):
    assert api.post("/api/folders/", {"name": "é" * 80}, format="json").status_code == 201


def test_another_users_folder_is_404_everywhere(api, user, other_user):
    theirs = services.folder_create(user=other_user, name="Theirs")
    mine, _ = services.conversation_start(user=user)
    assert_error(api.patch(f"/api/folders/{theirs.pk}/", {"name": "Mine"}, format="json"), 404)
    assert_error(api.delete(f"/api/folders/{theirs.pk}/"), 404)
    assert_error(api.patch(f"/api/sessions/{mine.pk}/", {"folder": theirs.pk}, format="json"), 404)
    assert api.get("/api/folders/").json() == {"results": []}
    assert Folder.objects.get().name == "Theirs"
    assert ChatSession.objects.get(pk=mine.pk).folder_id is None


@pytest.mark.parametrize("folder_id", ["abc", "0", "-1", "99999999999999999999"])
def test_malformed_folder_ids_are_400_or_404(api, folder_id):
    response = api.patch(f"/api/folders/{folder_id}/", {"name": "x"}, format="json")
    assert_error(response, response.status_code)
    assert response.status_code in (400, 404)


def test_moving_a_conversation_in_and_out(api, user):
    folder = services.folder_create(user=user, name="Work")
    session, _ = services.conversation_start(user=user)
    moved = api.patch(f"/api/sessions/{session.pk}/", {"folder": folder.pk}, format="json")
    assert moved.status_code == 200 and moved.json()["folder"] == folder.pk
    listed = api.get("/api/sessions/").json()["results"]
    assert listed[0]["folder"] == folder.pk
    out = api.patch(f"/api/sessions/{session.pk}/", {"folder": None}, format="json")
    assert out.json()["folder"] is None


@pytest.mark.parametrize("value", ["1", True, 1.5, [1], {"id": 1}, 0])
def test_a_malformed_folder_on_a_session_is_400_and_changes_nothing(api, user, value):
    folder = services.folder_create(user=user, name="Work")
    session = ChatSessionFactory(user=user, folder=folder, title="Old")
    response = api.patch(
        f"/api/sessions/{session.pk}/", {"folder": value, "title": "New"}, format="json"
    )
    assert_error(response, 400, "invalid")
    session.refresh_from_db()
    assert (session.folder_id, session.title) == (folder.pk, "Old")


def test_only_general_kept_conversations_go_in_a_folder(api, user):
    folder = services.folder_create(user=user, name="Work")
    model = ModelFactory(owner=user)
    about_model, _ = services.conversation_start(user=user, model_id=model.pk)
    temporary, _ = services.conversation_start(user=user, temporary=True)
    for session in (about_model, temporary):
        error = assert_error(
            api.patch(f"/api/sessions/{session.pk}/", {"folder": folder.pk}, format="json"),
            400,
            "invalid",
        )
        assert "folder" in error["fields"]
    assert not ChatSession.objects.filter(folder__isnull=False).exists()


def test_deleting_a_folder_keeps_its_conversations_in_no_folder(api, user):
    folder = services.folder_create(user=user, name="Work")
    sessions = [ChatSessionFactory(user=user, folder=folder) for _ in range(3)]
    assert api.delete(f"/api/folders/{folder.pk}/").status_code == 204
    assert ChatSession.objects.filter(pk__in=[s.pk for s in sessions]).count() == 3
    assert not ChatSession.objects.filter(folder__isnull=False).exists()
    assert_error(api.delete(f"/api/folders/{folder.pk}/"), 404)


def test_a_user_has_at_most_so_many_folders(api, user, monkeypatch):
    monkeypatch.setattr(services, "FOLDERS_MAX", 2)
    for name in ("a", "b"):
        assert api.post("/api/folders/", {"name": name}, format="json").status_code == 201
    assert_error(api.post("/api/folders/", {"name": "c"}, format="json"), 400, "invalid")
    assert Folder.objects.count() == 2
