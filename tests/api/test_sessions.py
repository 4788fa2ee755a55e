import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from chat import services
from chat.models import ChatSession, Message
from tests.factories import ChatSessionFactory, MessageFactory, ModelFactory, RunFactory

from .conftest import assert_error

pytestmark = pytest.mark.django_db

LIST_FIELDS = {
    "id",
    "title",
    "model",
    "run",
    "context",
    "is_active",
    "pinned",
    "archived",
    "created_at",
    "updated_at",
    "last_message_at",
    "message_count",
    "preview",
    "tags",
    "llm",
    "folder",
    "temporary",
    "snippet",
}


def make_sessions(user, count, **fields):
    now = timezone.now()
    return [
        ChatSessionFactory(user=user, activity_at=now - timedelta(minutes=i), **fields)
        for i in range(count)
    ]


def test_create_starts_a_new_active_session_and_same_id_is_idempotent(api, user):
    first = api.post("/api/sessions/", {}, format="json")
    assert first.status_code == 201
    session_id = str(uuid.uuid4())
    created = api.post("/api/sessions/", {"id": session_id, "title": "Plans"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["id"] == session_id and body["is_active"] and body["title"] == "Plans"
    assert "summary" in body
    again = api.post("/api/sessions/", {"id": session_id, "title": "Plans"}, format="json")
    assert again.status_code == 200 and again.json()["id"] == session_id
    assert ChatSession.objects.filter(user=user, is_active=True).count() == 1
    assert ChatSession.objects.get(pk=first.json()["id"]).is_active is False


def test_create_in_model_and_run_contexts(api, model, run):
    body = api.post("/api/sessions/", {"model": model.pk}, format="json").json()
    assert (body["model"], body["run"], body["context"]) == (model.pk, None, "model")
    body = api.post("/api/sessions/", {"run": run.pk}, format="json").json()
    assert (body["model"], body["run"], body["context"]) == (model.pk, run.pk, "run")


def test_create_refuses_a_run_of_another_model(api, user, model):
    other_run = RunFactory(model=ModelFactory(owner=user))
    error = assert_error(
        api.post("/api/sessions/", {"model": model.pk, "run": other_run.pk}, format="json"), 400
    )
    assert "run" in error["fields"] and "belong" in error["message"]
    assert not ChatSession.objects.exists()


def test_create_with_another_users_model_or_session_id_is_404(api, other_api, other_user):
    foreign_model = ModelFactory(owner=other_user)
    assert_error(api.post("/api/sessions/", {"model": foreign_model.pk}, format="json"), 404)
    foreign = other_api.post("/api/sessions/", {}, format="json").json()["id"]
    assert_error(api.post("/api/sessions/", {"id": foreign}, format="json"), 404)
    assert ChatSession.objects.count() == 1


def test_list_orders_pinned_first_then_activity_and_has_fields(api, user):
    old, new = make_sessions(user, 2)
    pinned = ChatSessionFactory(
        user=user, pinned=True, activity_at=timezone.now() - timedelta(days=3)
    )
    body = api.get("/api/sessions/").json()
    assert [item["id"] for item in body["results"]] == [str(pinned.pk), str(old.pk), str(new.pk)]
    assert set(body["results"][0]) == LIST_FIELDS
    assert body["next"] is None


def test_list_keyset_pagination_visits_every_session_once(api, user):
    sessions = make_sessions(user, 7)
    # Same activity time on several rows: the id breaks the tie.
    tied = timezone.now() - timedelta(hours=1)
    sessions += [ChatSessionFactory(user=user, activity_at=tied) for _ in range(3)]
    sessions += [ChatSessionFactory(user=user, pinned=True, activity_at=tied)]
    seen, url, pages = [], "/api/sessions/?limit=3", 0
    while url:
        body = api.get(url).json()
        seen += [item["id"] for item in body["results"]]
        url, pages = body["next"], pages + 1
        assert pages < 10
    assert pages == 4
    assert sorted(seen) == sorted(str(s.pk) for s in sessions)
    assert len(seen) == len(set(seen))
    assert seen[0] == str(sessions[-1].pk)


def test_list_filters(api, user, model, run):
    general = ChatSessionFactory(user=user)
    of_model = ChatSessionFactory(user=user, model=model)
    of_run = ChatSessionFactory(user=user, model=model, run=run)
    archived = ChatSessionFactory(user=user, archived=True)

    def ids(query):
        response = api.get(f"/api/sessions/?{query}")
        assert response.status_code == 200, response.content
        return {item["id"] for item in response.json()["results"]}

    assert ids("context=general") == {str(general.pk)}
    assert ids("context=model") == {str(of_model.pk)}
    assert ids("context=run") == {str(of_run.pk)}
    assert ids(f"model={model.pk}") == {str(of_model.pk), str(of_run.pk)}
    assert ids(f"run={run.pk}") == {str(of_run.pk)}
    assert ids("archived=true") == {str(archived.pk)}
    assert len(ids("archived=all")) == 4
    assert str(archived.pk) not in ids("")


@pytest.mark.parametrize(
    "query",
    [
        "context=nope",
        "archived=maybe",
        "limit=0",
        "limit=1000",
        "limit=x",
        "model=abc",
        "cursor=%%%",
    ],
)
def test_list_bad_query_is_400(api, query):
    assert_error(api.get(f"/api/sessions/?{query}"), 400)


def test_list_filter_by_another_users_model_is_404(api, other_user):
    foreign = ModelFactory(owner=other_user)
    assert_error(api.get(f"/api/sessions/?model={foreign.pk}"), 404)


def test_list_never_shows_another_users_sessions(api, other_user):
    ChatSessionFactory(user=other_user)
    assert api.get("/api/sessions/").json()["results"] == []


def test_active_session_per_context(api, user, model):
    assert_error(api.get("/api/sessions/active/"), 404, "not_found")
    general, _ = services.conversation_start(user=user)
    of_model, _ = services.conversation_start(user=user, model_id=model.pk)
    assert api.get("/api/sessions/active/").json()["id"] == str(general.pk)
    assert api.get(f"/api/sessions/active/?model={model.pk}").json()["id"] == str(of_model.pk)


def test_detail_patch_and_delete(api, user):
    session, _ = services.conversation_start(user=user)
    MessageFactory(session=session)
    url = f"/api/sessions/{session.pk}/"
    body = api.get(url).json()
    assert body["id"] == str(session.pk) and body["summary"] == ""
    body = api.patch(url, {"title": "Renamed", "pinned": True}, format="json").json()
    assert (body["title"], body["pinned"]) == ("Renamed", True)
    body = api.patch(url, {"archived": True}, format="json").json()
    assert body["archived"] is True and body["is_active"] is False
    assert api.delete(url).status_code == 204
    assert not ChatSession.objects.filter(pk=session.pk).exists()
    assert not Message.objects.exists()
    assert_error(api.get(url), 404)


@pytest.mark.parametrize(
    "body",
    [
        {"title": 5},
        {"pinned": "yes"},
        {"archived": 1},
        {"title": "x" * 201},
        {"title": "   "},
        {"colour": "red"},
        ["title"],
    ],
)
def test_patch_bad_input_is_400_and_changes_nothing(api, user, body):
    session = ChatSessionFactory(user=user, title="Keep me")
    assert_error(api.patch(f"/api/sessions/{session.pk}/", body, format="json"), 400)
    session.refresh_from_db()
    assert (session.title, session.pinned, session.archived) == ("Keep me", False, False)


def test_resume_makes_it_active_without_touching_activity(api, user):
    first, _ = services.conversation_start(user=user)
    second, _ = services.conversation_start(user=user)
    before = ChatSession.objects.get(pk=first.pk)
    response = api.post(f"/api/sessions/{first.pk}/resume/")
    assert response.status_code == 200 and response.json()["is_active"] is True
    after = ChatSession.objects.get(pk=first.pk)
    assert (after.updated_at, after.activity_at) == (before.updated_at, before.activity_at)
    assert ChatSession.objects.get(pk=second.pk).is_active is False


def test_delete_all_needs_the_exact_confirmation(api, user, other_user):
    make_sessions(user, 3)
    ChatSessionFactory(user=other_user)
    for body in ({}, {"confirm": "yes"}, {"confirm": True}):
        assert_error(api.post("/api/sessions/delete-all/", body, format="json"), 400)
    assert ChatSession.objects.count() == 4
    response = api.post("/api/sessions/delete-all/", {"confirm": "delete all"}, format="json")
    assert response.status_code == 200 and response.json() == {"deleted": 3}
    assert ChatSession.objects.get().user == other_user


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"])
def test_invalid_uuids_are_400(api, bad_id):
    for method, suffix in [
        ("get", ""),
        ("patch", ""),
        ("delete", ""),
        ("post", "resume/"),
        ("get", "messages/"),
        ("post", "messages/"),
        ("post", "stop/"),
        ("get", "export/"),
    ]:
        response = getattr(api, method)(f"/api/sessions/{bad_id}/{suffix}", {}, format="json")
        error = assert_error(response, 400)
        assert "not a valid conversation id" in error["message"], (method, suffix)


def test_invalid_json_and_wrong_types_are_400(api):
    response = api.post("/api/sessions/", "{not json", content_type="application/json")
    error = assert_error(response, 400, "invalid_json")
    assert "JSON" in error["message"]
    assert_error(api.post("/api/sessions/", {"model": "1"}, format="json"), 400)
    assert_error(api.post("/api/sessions/", {"id": "nope"}, format="json"), 400)
    assert_error(api.post("/api/sessions/", {"unknown": 1}, format="json"), 400)
    assert_error(api.post("/api/sessions/", [1, 2], format="json"), 400)
    assert not ChatSession.objects.exists()


def test_another_users_session_is_404_everywhere_and_unchanged(api, other_user):
    theirs, _ = services.conversation_start(user=other_user, title="Theirs")
    services.conversation_start(user=other_user)
    message = MessageFactory(session=theirs)
    base = f"/api/sessions/{theirs.pk}/"
    calls = [
        ("get", base, None),
        ("patch", base, {"title": "Mine now", "pinned": True}),
        ("delete", base, None),
        ("post", base + "resume/", None),
        ("get", base + "messages/", None),
        ("post", base + "messages/", {"content": "hello"}),
        ("post", base + "stop/", None),
        ("get", base + "export/?format=json", None),
        ("get", base + "export/?format=markdown", None),
    ]
    for method, url, body in calls:
        assert_error(getattr(api, method)(url, body, format="json"), 404, "not_found")
    theirs.refresh_from_db()
    assert (theirs.title, theirs.pinned, theirs.is_active) == ("Theirs", False, False)
    assert list(Message.objects.all()) == [message]
