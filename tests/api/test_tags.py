"""Tags over REST (SPEC 4.6): PATCH sets them, ?tag= filters, /api/tags/ counts them."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat import services
from chat.models import ChatSession, SessionTag

from .conftest import assert_error

pytestmark = pytest.mark.django_db


def start(user, **fields):
    return services.conversation_start(user=user, **fields)[0]


def patch(api, session, body):
    return api.patch(f"/api/sessions/{session.pk}/", body, format="json")


def listed(api, **query):
    response = api.get("/api/sessions/", query)
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_patch_replaces_the_tags_and_every_session_shape_carries_them(api, user):
    session = start(user)
    response = patch(api, session, {"tags": ["Work", "Q3 Plans", "work"]})
    assert response.status_code == 200, response.content
    assert response.json()["tags"] == ["q3 plans", "work"]

    assert patch(api, session, {"tags": ["home"]}).json()["tags"] == ["home"]
    assert api.get(f"/api/sessions/{session.pk}/").json()["tags"] == ["home"]
    assert listed(api)[0]["tags"] == ["home"]
    resumed = api.post(f"/api/sessions/{session.pk}/resume/").json()
    assert resumed["tags"] == ["home"]
    assert api.get("/api/sessions/active/").json()["tags"] == ["home"]

    cleared = patch(api, session, {"tags": [], "title": "Untagged"})
    assert (cleared.json()["tags"], cleared.json()["title"]) == ([], "Untagged")
    assert not SessionTag.objects.exists()


def test_a_new_conversation_has_no_tags(api):
    response = api.post("/api/sessions/", {}, format="json")
    assert response.status_code == 201 and response.json()["tags"] == []


@pytest.mark.parametrize(
    "tags",
    [
        "work",
        None,
        {"name": "work"},
        [1],
        [True],
        [None],
        [["work"]],
        [""],
        ["  "],
        ["x" * 41],
        ["nul\u0000inside"],
        ["lone \\ud800 surrogate"],
        ["bell\u0007"],
        [f"tag {n}" for n in range(21)],
    ],
)
def test_bad_tags_are_400_invalid_with_fields_and_change_nothing(api, user, tags):
    session = start(user, title="Kept")
    services.conversation_update(user=user, session_id=session.pk, tags=["kept"])
    before = ChatSession.objects.get(pk=session.pk)
    body = json.dumps({"title": "Changed", "pinned": True, "tags": tags})
    # Sent as raw text so that "\ud800" reaches the parser as the JSON escape it is.
    body = body.replace("\\\\ud800", "\\ud800")
    response = api.generic(
        "PATCH", f"/api/sessions/{session.pk}/", body, content_type="application/json"
    )
    error = assert_error(response, 400, "invalid")
    assert list(error["fields"]) == ["tags"], error
    after = ChatSession.objects.get(pk=session.pk)
    assert (after.title, after.pinned, after.updated_at) == ("Kept", False, before.updated_at)
    assert after.tag_names() == ["kept"]


def test_tags_on_create_are_refused_as_an_unknown_field(api):
    error = assert_error(api.post("/api/sessions/", {"tags": ["x"]}, format="json"), 400)
    assert list(error["fields"]) == ["tags"]
    assert not ChatSession.objects.exists()


def test_another_users_conversation_is_404_and_their_tags_never_show(
    api, other_api, user, other_user
):
    theirs = start(other_user)
    services.conversation_update(user=other_user, session_id=theirs.pk, tags=["secret", "work"])
    mine = start(user)
    services.conversation_update(user=user, session_id=mine.pk, tags=["work"])

    assert_error(patch(api, theirs, {"tags": ["mine"]}), 404, "not_found")
    assert theirs.tag_names() == ["secret", "work"]
    assert [s["id"] for s in listed(api, tag="work")] == [str(mine.pk)]
    assert listed(api, tag="secret") == []
    assert api.get("/api/tags/").json() == {"results": [{"name": "work", "count": 1}]}
    assert other_api.get("/api/tags/").json() == {
        "results": [{"name": "secret", "count": 1}, {"name": "work", "count": 1}]
    }


def test_the_tag_filter_combines_with_the_other_filters_and_with_search(api, user, model):
    general = start(user, title="Budget for spring")
    about_model = start(user, model_id=model.pk, title="Position sizing")
    archived = start(user, title="Old budget")
    start(user, title="Budget, untagged")
    for session in (general, about_model, archived):
        services.conversation_update(user=user, session_id=session.pk, tags=["plans"])
    services.conversation_update(user=user, session_id=archived.pk, archived=True)

    def ids(**query):
        return {s["id"] for s in listed(api, **query)}

    assert ids(tag="Plans") == {str(general.pk), str(about_model.pk)}
    assert ids(tag="plans", context="model") == {str(about_model.pk)}
    assert ids(tag="plans", model=model.pk) == {str(about_model.pk)}
    assert ids(tag="plans", archived="all") == {str(s.pk) for s in (general, about_model, archived)}
    assert ids(tag="plans", q="budget") == {str(general.pk)}
    assert ids(tag="plans", q="budget", archived="true") == {str(archived.pk)}
    assert ids(tag="nothing") == set()


def test_the_tag_filter_pages_with_the_keyset_cursor(api, user):
    tagged = set()
    for n in range(5):
        session = start(user, title=f"c{n}")
        if n % 2 == 0:
            services.conversation_update(user=user, session_id=session.pk, tags=["even"])
            tagged.add(str(session.pk))
    first = api.get("/api/sessions/", {"tag": "even", "limit": 2}).json()
    second = api.get(first["next"]).json()
    assert second["next"] is None
    assert {s["id"] for s in first["results"] + second["results"]} == tagged


@pytest.mark.parametrize("value", ["   ", "x" * 41, "bad\x07"])
def test_a_bad_tag_filter_is_400(api, user, value):
    error = assert_error(api.get("/api/sessions/", {"tag": value}), 400, "invalid")
    assert list(error["fields"]) == ["tag"]


def test_an_empty_tag_filter_is_no_filter_like_an_empty_q(api, user):
    start(user)
    assert len(listed(api, tag="")) == 1


def test_tags_list_counts_by_name_and_follows_archived(api, user):
    for names in (["b", "a"], ["a"], ["A", "c"]):
        session = start(user)
        services.conversation_update(user=user, session_id=session.pk, tags=names)
    old = start(user)
    services.conversation_update(user=user, session_id=old.pk, tags=["a", "old"], archived=True)

    assert api.get("/api/tags/").json() == {
        "results": [
            {"name": "a", "count": 3},
            {"name": "b", "count": 1},
            {"name": "c", "count": 1},
        ]
    }
    assert api.get("/api/tags/", {"archived": "all"}).json()["results"] == [
        {"name": "a", "count": 4},
        {"name": "b", "count": 1},
        {"name": "c", "count": 1},
        {"name": "old", "count": 1},
    ]
    assert api.get("/api/tags/", {"archived": "true"}).json()["results"] == [
        {"name": "a", "count": 1},
        {"name": "old", "count": 1},
    ]
    # Each count is what the filter lists.
    assert len(listed(api, tag="a")) == 3
    assert_error(api.get("/api/tags/", {"archived": "maybe"}), 400, "invalid")
    assert_error(api.get("/api/tags/", {"unknown": "1"}), 400)


def test_tags_need_credentials(client):
    assert_error(client.get("/api/tags/"), 401)


def test_the_session_list_stays_at_a_constant_number_of_queries(api, user):
    def queries(**query):
        with CaptureQueriesContext(connection) as captured:
            response = api.get("/api/sessions/", query)
        assert response.status_code == 200
        return len(captured)

    session = start(user, title="conversation first")
    services.conversation_update(user=user, session_id=session.pk, tags=["one"])
    queries()  # the token's first use also writes its last_used_at; not counted
    few = queries(), queries(q="conversation"), queries(tag="one")
    for n in range(15):
        session = start(user, title=f"conversation {n}")
        services.conversation_update(user=user, session_id=session.pk, tags=["one", f"t{n}"])
    many = queries(), queries(q="conversation"), queries(tag="one")
    assert few == many


def test_exports_and_imports_carry_tags_over_rest(api, user):
    session = start(user, title="Tagged")
    services.conversation_update(user=user, session_id=session.pk, tags=["work", "later"])
    exported = api.get(f"/api/sessions/{session.pk}/export/", {"format": "json"})
    data = json.loads(exported.content)
    assert data["conversation"]["tags"] == ["later", "work"]
    markdown = api.get(f"/api/sessions/{session.pk}/export/", {"format": "markdown"})
    assert "- Tags: later, work" in markdown.content.decode()

    imported = api.post("/api/sessions/import/", data, format="json")
    assert imported.status_code == 201, imported.content
    assert imported.json()["tags"] == ["later", "work"]
    assert api.get("/api/tags/").json()["results"] == [
        {"name": "later", "count": 2},
        {"name": "work", "count": 2},
    ]

    data["conversation"]["tags"] = [f"t{n}" for n in range(21)]
    error = assert_error(api.post("/api/sessions/import/", data, format="json"), 400)
    assert list(error["fields"]) == ["conversation.tags"]
    assert ChatSession.objects.count() == 2
