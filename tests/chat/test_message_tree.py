"""Conversations as trees (SPEC 4.6): edit, regenerate, switch versions, and what the LLM
is sent. Through the REST API and the services, with the development LLM over real HTTP.
"""

import time

import pytest

from chat import exports, selectors, services, streaming
from chat.models import ChatSession, Message
from tests.api.conftest import assert_error, bearer_client
from tests.factories import UserFactory

from .conftest import start
from .test_concurrency import at_once


def settle(message_id: int, timeout: float = 20.0) -> Message:
    """Wait until a reply is no longer streaming; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = Message.objects.get(pk=message_id)
        if message.status != Message.Status.STREAMING:
            return message
        time.sleep(0.02)
    raise AssertionError(f"reply {message_id} still streaming")


def send(api, session_id, content) -> tuple[int, int]:
    response = api.post(
        f"/api/sessions/{session_id}/messages/", {"content": content}, format="json"
    )
    assert response.status_code == 202, response.content
    body = response.json()
    settle(body["assistant_message"]["id"])
    return body["user_message"]["id"], body["assistant_message"]["id"]


def path(api, session_id) -> list[dict]:
    response = api.get(f"/api/sessions/{session_id}/messages/")
    assert response.status_code == 200
    return response.json()["results"]


def messages_owner(session_id) -> str:
    return ChatSession.objects.select_related("user").get(pk=session_id).user.username


@pytest.fixture
def api(user):
    return bearer_client(user)


@pytest.fixture
def conversation(user, api, dev_llm):
    """A conversation of two turns: (session id, [q1, a1, q2, a2] ids)."""
    session = start(user)
    q1, a1 = send(api, session.pk, "alpha question")
    q2, a2 = send(api, session.pk, "beta question")
    yield session.pk, [q1, a1, q2, a2]
    streaming.wait_idle_sync(10)


@pytest.mark.django_db(transaction=True)
def test_edit_makes_a_sibling_the_path_follows_and_the_old_branch_stays(api, conversation):
    session_id, (q1, a1, q2, a2) = conversation
    response = api.post(f"/api/messages/{q2}/edit/", {"content": "gamma question"}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    edited, reply = body["user_message"], body["assistant_message"]
    assert edited["parent"] == a1 and edited["content"] == "gamma question"
    assert (edited["sibling_index"], edited["sibling_count"]) == (2, 2)
    assert edited["sibling_ids"] == [q2, edited["id"]]
    assert reply["parent"] == edited["id"] and reply["status"] == "streaming"
    settle(reply["id"])

    messages = path(api, session_id)
    assert [m["id"] for m in messages] == [q1, a1, edited["id"], reply["id"]]
    assert [(m["sibling_index"], m["sibling_count"]) for m in messages] == [
        (1, 1),
        (1, 1),
        (2, 2),
        (1, 1),
    ]
    assert messages[0]["author"] == {"kind": "user", "name": messages_owner(session_id)}
    assert messages[1]["author"]["kind"] == "assistant"
    # The counter counts the path; the old branch is still stored.
    assert ChatSession.objects.get(pk=session_id).message_count == 4
    assert Message.objects.filter(session_id=session_id).count() == 6


@pytest.mark.django_db(transaction=True)
def test_regenerate_makes_a_sibling_reply_and_branch_switches_back(api, conversation):
    session_id, (q1, a1, q2, a2) = conversation
    response = api.post(f"/api/messages/{a1}/regenerate/")
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == {"assistant_message"}
    new = body["assistant_message"]
    assert new["parent"] == q1 and new["sibling_ids"] == [a1, new["id"]]
    settle(new["id"])
    # The second turn hung off the old reply: it left the path with it.
    assert [m["id"] for m in path(api, session_id)] == [q1, new["id"]]

    # Version 1 of the reply: the path runs through it to its newest leaf (a2).
    response = api.post(f"/api/sessions/{session_id}/branch/", {"message": a1}, format="json")
    assert response.status_code == 200, response.content
    assert [m["id"] for m in response.json()["results"]] == [q1, a1, q2, a2]
    assert [m["id"] for m in path(api, session_id)] == [q1, a1, q2, a2]
    assert ChatSession.objects.get(pk=session_id).message_count == 4
    # And back to version 2.
    api.post(f"/api/sessions/{session_id}/branch/", {"message": new["id"]}, format="json")
    assert [m["id"] for m in path(api, session_id)] == [q1, new["id"]]
    assert ChatSession.objects.get(pk=session_id).message_count == 2


@pytest.mark.django_db(transaction=True)
def test_the_llm_is_sent_only_the_current_path(api, conversation):
    session_id, (q1, a1, q2, a2) = conversation
    response = api.post(
        f"/api/messages/{q2}/edit/",
        {"content": "gamma question [dev:echo=context]"},
        format="json",
    )
    echo = settle(response.json()["assistant_message"]["id"]).content
    assert "user: alpha question" in echo
    assert "gamma question" in echo
    assert "beta question" not in echo

    # Back on the first branch, a new question's context is that branch, not gamma.
    api.post(f"/api/sessions/{session_id}/branch/", {"message": q2}, format="json")
    _, reply = send(api, session_id, "delta question [dev:echo=context]")
    echo = Message.objects.get(pk=reply).content
    assert "user: beta question" in echo and "delta question" in echo
    assert "gamma" not in echo

    # Editing the first question: nothing after it is sent.
    response = api.post(
        f"/api/messages/{q1}/edit/", {"content": "first again [dev:echo=context]"}, format="json"
    )
    echo = settle(response.json()["assistant_message"]["id"]).content
    assert "first again" in echo
    assert "alpha" not in echo and "beta" not in echo and "delta" not in echo


@pytest.mark.django_db(transaction=True)
def test_edit_and_regenerate_refuse_while_a_reply_streams(api, user, dev_llm):
    session = start(user)
    q1, a1 = send(api, session.pk, "first")
    response = api.post(
        f"/api/sessions/{session.pk}/messages/",
        {"content": "slow [dev:tokens=400] [dev:token_ms=20]"},
        format="json",
    )
    streaming_id = response.json()["assistant_message"]["id"]
    assert_error(api.post(f"/api/messages/{a1}/regenerate/"), 409, "generation_in_progress")
    assert_error(
        api.post(f"/api/messages/{q1}/edit/", {"content": "x"}, format="json"),
        409,
        "generation_in_progress",
    )
    assert_error(
        api.post(f"/api/sessions/{session.pk}/branch/", {"message": q1}, format="json"),
        409,
        "generation_in_progress",
    )
    assert Message.objects.filter(session=session).count() == 4
    api.post(f"/api/sessions/{session.pk}/stop/")
    settle(streaming_id)
    streaming.wait_idle_sync(10)


@pytest.mark.django_db(transaction=True)
def test_bad_input_is_a_clear_error_and_changes_nothing(api, conversation, other_user):
    session_id, (q1, a1, q2, a2) = conversation
    before = list(Message.objects.order_by("pk").values_list("pk", "on_path", "content"))
    # The wrong kind of message for the action.
    assert_error(api.post(f"/api/messages/{q1}/regenerate/"), 400, "invalid")
    assert_error(api.post(f"/api/messages/{a1}/edit/", {"content": "x"}, format="json"), 400)
    # Empty, missing and mistyped fields.
    assert_error(
        api.post(f"/api/messages/{q1}/edit/", {"content": "  "}, format="json"),
        400,
        "empty_message",
    )
    assert_error(api.post(f"/api/messages/{q1}/edit/", {}, format="json"), 400, "invalid")
    assert_error(
        api.post(f"/api/sessions/{session_id}/branch/", {"message": "7"}, format="json"),
        400,
        "invalid",
    )
    # Ids that are not numbers, unknown ones, and another user's.
    assert_error(api.post("/api/messages/abc/regenerate/"), 400, "invalid")
    assert_error(api.post("/api/messages/999999/regenerate/"), 404, "not_found")
    other = bearer_client(other_user)
    assert_error(other.post(f"/api/messages/{a1}/regenerate/"), 404, "not_found")
    assert_error(
        other.post(f"/api/messages/{q1}/edit/", {"content": "mine now"}, format="json"),
        404,
        "not_found",
    )
    assert_error(
        other.put(f"/api/messages/{a1}/feedback/", {"rating": "up"}, format="json"),
        404,
        "not_found",
    )
    theirs = start(other_user)
    assert_error(
        other.post(f"/api/sessions/{theirs.pk}/branch/", {"message": q1}, format="json"),
        404,
        "not_found",
    )
    assert list(Message.objects.order_by("pk").values_list("pk", "on_path", "content")) == before


@pytest.mark.django_db(transaction=True)
def test_feedback_is_stored_per_user_shown_on_the_message_and_cleared(api, conversation):
    session_id, (q1, a1, q2, a2) = conversation
    response = api.put(
        f"/api/messages/{a1}/feedback/", {"rating": "down", "note": "Too vague"}, format="json"
    )
    assert response.status_code == 200 and response.json() == {
        "rating": "down",
        "note": "Too vague",
    }
    ratings = {m["id"]: m["feedback"] for m in path(api, session_id)}
    assert ratings == {q1: None, a1: "down", q2: None, a2: None}
    api.put(f"/api/messages/{a1}/feedback/", {"rating": "up"}, format="json")
    assert {m["id"]: m["feedback"] for m in path(api, session_id)}[a1] == "up"
    assert_error(
        api.put(f"/api/messages/{a1}/feedback/", {"rating": "meh"}, format="json"), 400, "invalid"
    )
    assert_error(
        api.put(f"/api/messages/{q1}/feedback/", {"rating": "up"}, format="json"), 400, "invalid"
    )
    response = api.put(f"/api/messages/{a1}/feedback/", {"rating": None}, format="json")
    assert response.json() == {"rating": None, "note": ""}
    assert {m["id"]: m["feedback"] for m in path(api, session_id)}[a1] is None


@pytest.mark.django_db
def test_a_branch_switch_drops_a_summary_that_covered_the_old_branch(user):
    session = start(user)
    reply = services.reply_start(user=user, content="one", session_id=session.pk)
    services.reply_finish(
        message_id=reply.assistant_message.pk, status="complete", content="answer one"
    )
    second = services.reply_start(user=user, content="two", session_id=session.pk)
    services.reply_finish(
        message_id=second.assistant_message.pk, status="complete", content="answer two"
    )
    # A summary covering both turns, then a new version of the second question.
    services.conversation_set_summary(
        session_id=session.pk,
        summary="They talked about one and two.",
        until_message_id=second.assistant_message.pk,
        message_count=4,
    )
    edited = services.reply_edit(user=user, message_id=second.user_message.pk, content="three")
    session.refresh_from_db()
    assert (session.summary, session.summary_until_id, session.summary_message_count) == (
        "",
        None,
        0,
    )
    assert edited.session.summary == ""
    # A summary of the shared part only is kept.
    services.reply_finish(message_id=edited.assistant_message.pk, status="complete", content="3")
    services.conversation_set_summary(
        session_id=session.pk,
        summary="They talked about one.",
        until_message_id=reply.assistant_message.pk,
        message_count=2,
    )
    services.conversation_branch(
        user=user, session_id=session.pk, message_id=second.user_message.pk
    )
    session.refresh_from_db()
    assert session.summary == "They talked about one."
    assert session.message_count == 4


@pytest.mark.django_db
def test_json_export_carries_the_whole_tree_and_imports_the_same_tree(user):
    session = start(user)
    first = services.reply_start(user=user, content="root question", session_id=session.pk)
    services.reply_finish(message_id=first.assistant_message.pk, status="complete", content="A")
    again = services.reply_regenerate(user=user, message_id=first.assistant_message.pk)
    services.reply_finish(message_id=again.assistant_message.pk, status="complete", content="B")
    root_edit = services.reply_edit(user=user, message_id=first.user_message.pk, content="other")
    services.reply_finish(message_id=root_edit.assistant_message.pk, status="complete", content="C")
    services.conversation_branch(
        user=user, session_id=session.pk, message_id=again.assistant_message.pk
    )

    data = exports.export_json(session=ChatSession.objects.get(pk=session.pk))
    assert len(data["messages"]) == 5
    assert data["conversation"]["current_leaf"] == again.assistant_message.pk
    header, messages = exports.check_import(data)
    copy = services.conversation_import(user=user, messages=messages, **header)

    def shape(conversation):
        rows = list(Message.objects.filter(session=conversation).order_by("pk"))
        index = {m.pk: i for i, m in enumerate(rows)}
        return [
            (m.role, m.content, index.get(m.parent_id), m.on_path) for m in rows
        ], conversation.message_count

    copy.refresh_from_db()
    assert shape(copy) == shape(ChatSession.objects.get(pk=session.pk))
    # The Markdown export writes the current path only.
    markdown = exports.export_markdown(session=copy)
    assert "root question" in markdown and "B" in markdown
    assert "other" not in markdown


@pytest.mark.django_db
def test_page_shows_versions_of_the_first_turn(user):
    session = start(user)
    first = services.reply_start(user=user, content="v1", session_id=session.pk)
    services.reply_finish(message_id=first.assistant_message.pk, status="complete", content="a")
    second = services.reply_edit(user=user, message_id=first.user_message.pk, content="v2")
    rows, _ = selectors.message_page(session=session)
    selectors.message_details(rows, user=user)
    assert [(m.content, m.versions) for m in rows] == [
        ("v2", [first.user_message.pk, second.user_message.pk]),
        ("", [second.assistant_message.pk]),
    ]


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_edits_and_regenerations_start_exactly_one_generation():
    """Real concurrent connections on PostgreSQL: the user lock and the streaming check."""
    user = UserFactory()
    session = start(user)
    first = services.reply_start(user=user, content="question", session_id=session.pk)
    services.reply_finish(message_id=first.assistant_message.pk, status="complete", content="a")
    workers = 10

    def work(number):
        if number % 2:
            return services.reply_regenerate(user=user, message_id=first.assistant_message.pk)
        return services.reply_edit(
            user=user, message_id=first.user_message.pk, content=f"edit {number}"
        )

    outcomes = [kind for kind, _ in at_once(workers, work)]
    assert sorted(outcomes) == ["busy"] * (workers - 1) + ["sent"]
    assert Message.objects.filter(session=session, status="streaming").count() == 1
    # One path still: root to the new leaf, nothing else on it.
    on_path = list(
        Message.objects.filter(session=session, on_path=True).order_by("pk").values_list("pk")
    )
    assert len(on_path) == 2
    assert ChatSession.objects.get(pk=session.pk).message_count == 2


@pytest.mark.django_db
def test_the_page_switches_versions_and_rates_replies(user, other_user, client_for):
    from .conftest import HTMX

    session = start(user)
    first = services.reply_start(user=user, content="one", session_id=session.pk)
    services.reply_finish(message_id=first.assistant_message.pk, status="complete", content="A")
    again = services.reply_regenerate(user=user, message_id=first.assistant_message.pk)
    services.reply_finish(message_id=again.assistant_message.pk, status="complete", content="B")
    web = client_for(user)

    page = web.get(f"/c/{session.pk}").content.decode()
    assert 'aria-label="Previous version"' in page and "2 / 2" in page
    assert page.count('aria-label="Edit message"') == 1

    url = f"/c/{session.pk}/branch"
    response = web.post(url, {"message": first.assistant_message.pk}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert f'id="msg-{first.assistant_message.pk}"' in html and "1 / 2" in html
    assert f'id="msg-{again.assistant_message.pk}"' not in html
    assert client_for(other_user).post(url, {"message": first.user_message.pk}).status_code == 404
    assert web.post(url, {"message": "x"}).status_code == 404

    feedback = f"/c/{session.pk}/messages/{first.assistant_message.pk}/feedback"
    response = web.post(feedback, {"rating": "down"}, **HTMX)
    assert response.status_code == 200
    assert 'data-rate="down"' in response.content.decode()
    assert 'aria-pressed="true"' in response.content.decode()
    assert first.assistant_message.feedback.get().rating == "down"
    assert web.post(feedback, {"rating": "sideways"}).status_code == 400
    assert client_for(other_user).post(feedback, {"rating": "up"}).status_code == 404
    web.post(feedback, {"rating": ""}, **HTMX)
    assert not first.assistant_message.feedback.exists()


@pytest.mark.django_db
def test_the_rolling_summary_reads_the_current_path_only(user, settings):
    from chat import prompting

    settings.SUMMARY_THRESHOLD, settings.CONTEXT_MESSAGES, settings.SUMMARY_EVERY = 4, 2, 1
    session = start(user)
    turns = []
    for number in range(4):
        reply = services.reply_start(user=user, content=f"question {number}", session_id=session.pk)
        services.reply_finish(
            message_id=reply.assistant_message.pk, status="complete", content=f"answer {number}"
        )
        turns.append(reply)
    # A new version of the second question, then two more turns on it.
    edited = services.reply_edit(
        user=user, message_id=turns[1].user_message.pk, content="question 1, again"
    )
    services.reply_finish(
        message_id=edited.assistant_message.pk, status="complete", content="answer 1, again"
    )
    for number in (5, 6):
        reply = services.reply_start(user=user, content=f"question {number}", session_id=session.pk)
        services.reply_finish(
            message_id=reply.assistant_message.pk, status="complete", content=f"answer {number}"
        )
    job = prompting.summary_job(session_id=session.pk, force=True)
    text = job.messages[-1]["content"]
    assert "question 0" in text and "question 1, again" in text
    assert "question 2" not in text and "question 3" not in text
    assert "question 1\n" not in text + "\n"
