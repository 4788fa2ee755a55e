import time

import pytest

from chat import services
from chat.models import ChatSession, Message
from tests.factories import ChatSessionFactory, MessageFactory

from .conftest import assert_error

pytestmark = pytest.mark.django_db

MESSAGE_FIELDS = {
    "id",
    "session",
    "role",
    "content",
    "status",
    "error",
    "llm",
    "prompt_tokens",
    "completion_tokens",
    "tools_used",
    "client_id",
    "parent",
    "reply_to",
    "author",
    "sibling_index",
    "sibling_count",
    "sibling_ids",
    "feedback",
    "created_at",
    "updated_at",
}


@pytest.fixture
def session(user):
    session, _ = services.conversation_start(user=user)
    return session


def test_message_pages_are_keyset_oldest_to_newest(api, session):
    messages = [MessageFactory(session=session) for _ in range(5)]
    url = f"/api/sessions/{session.pk}/messages/"
    body = api.get(url + "?limit=2").json()
    assert [m["id"] for m in body["results"]] == [messages[3].pk, messages[4].pk]
    assert body["has_more"] is True
    assert set(body["results"][0]) == MESSAGE_FIELDS
    body = api.get(url + f"?limit=2&before={messages[3].pk}").json()
    assert [m["id"] for m in body["results"]] == [messages[1].pk, messages[2].pk]
    body = api.get(url + f"?before={messages[1].pk}").json()
    assert [m["id"] for m in body["results"]] == [messages[0].pk]
    assert body["has_more"] is False


@pytest.mark.parametrize(
    "query",
    [
        "limit=-1",
        "limit=0",
        "limit=201",
        "limit=99999999999999999999",
        "limit=ten",
        "before=abc",
        "before=-5",
        "before=999999",
        "page=2",
    ],
)
def test_bad_message_page_queries_are_400(api, session, query):
    MessageFactory(session=session)
    assert_error(api.get(f"/api/sessions/{session.pk}/messages/?{query}"), 400)


def test_message_page_before_another_sessions_message_is_400(api, user, session):
    elsewhere = MessageFactory(session=ChatSessionFactory(user=user))
    error = assert_error(
        api.get(f"/api/sessions/{session.pk}/messages/?before={elsewhere.pk}"), 400
    )
    assert error["fields"] == {"before": [error["message"]]}


def test_send_stores_message_and_placeholder_and_answers_202(api, session):
    response = api.post(
        f"/api/sessions/{session.pk}/messages/",
        {"content": "What is a stop loss?", "client_id": "c-1"},
        format="json",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    user_message, reply = body["user_message"], body["assistant_message"]
    assert (user_message["role"], user_message["content"]) == ("user", "What is a stop loss?")
    assert (reply["role"], reply["status"], reply["reply_to"]) == (
        "assistant",
        "streaming",
        user_message["id"],
    )
    stored = list(Message.objects.filter(session=session).values_list("role", "status"))
    assert stored == [("user", "complete"), ("assistant", "streaming")]
    session.refresh_from_db()
    assert session.title == "What is a stop loss?" and session.message_count == 2


def test_same_client_id_again_returns_the_same_messages_with_200(api, session):
    url = f"/api/sessions/{session.pk}/messages/"
    first = api.post(url, {"content": "Hello", "client_id": "same"}, format="json").json()
    again = api.post(url, {"content": "Hello", "client_id": "same"}, format="json")
    assert again.status_code == 200
    assert again.json()["user_message"]["id"] == first["user_message"]["id"]
    assert again.json()["assistant_message"]["id"] == first["assistant_message"]["id"]
    assert Message.objects.filter(session=session).count() == 2


def test_sending_into_an_inactive_session_makes_it_active(api, user, session):
    newer, _ = services.conversation_start(user=user)
    response = api.post(
        f"/api/sessions/{session.pk}/messages/", {"content": "back here"}, format="json"
    )
    assert response.status_code == 202
    session.refresh_from_db()
    newer.refresh_from_db()
    assert session.is_active and not newer.is_active


@pytest.mark.parametrize(
    "body, field",
    [
        ({"content": ""}, "content"),
        ({"content": "   \n"}, "content"),
        ({"content": 42}, "content"),
        ({"content": None}, "content"),
        ({}, "content"),
        ({"content": "hi", "client_id": 7}, "client_id"),
        ({"content": "hi", "client_id": "x" * 65}, "client_id"),
        ({"content": "hi", "role": "system"}, "role"),
    ],
)
def test_bad_messages_are_400_and_store_nothing(api, session, body, field):
    error = assert_error(
        api.post(f"/api/sessions/{session.pk}/messages/", body, format="json"), 400
    )
    assert field in error["fields"]
    assert not Message.objects.exists()


def test_over_long_message_is_400_with_the_limit(api, session, settings):
    settings.MAX_MESSAGE_CHARS = 100
    error = assert_error(
        api.post(f"/api/sessions/{session.pk}/messages/", {"content": "x" * 101}, format="json"),
        400,
        "message_too_long",
    )
    assert "100" in error["message"]
    assert not Message.objects.exists()


def test_second_message_while_a_reply_streams_is_409(api, session):
    url = f"/api/sessions/{session.pk}/messages/"
    assert api.post(url, {"content": "one"}, format="json").status_code == 202
    assert_error(api.post(url, {"content": "two"}, format="json"), 409, "generation_in_progress")
    assert Message.objects.count() == 2


def test_sending_is_rate_limited_per_user(api, other_api, user, other_user, settings):
    settings.THROTTLE_MESSAGES = "2/min"
    mine = ChatSessionFactory(user=user)
    theirs = ChatSessionFactory(user=other_user)
    for index in range(2):
        response = api.post(
            f"/api/sessions/{mine.pk}/messages/",
            {"content": f"m{index}", "client_id": f"c{index}"},
            format="json",
        )
        assert response.status_code in (200, 202)
        # Finish the placeholder so the next message is accepted.
        services.reply_finish(
            message_id=response.json()["assistant_message"]["id"], content="ok", status="complete"
        )
    response = api.post(f"/api/sessions/{mine.pk}/messages/", {"content": "m3"}, format="json")
    # The same code as the WebSocket's and SSE's: one send budget, one answer.
    assert_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1
    assert Message.objects.filter(session=mine).count() == 4
    # Reading is not limited, and another user has their own budget.
    assert api.get(f"/api/sessions/{mine.pk}/messages/").status_code == 200
    assert (
        other_api.post(
            f"/api/sessions/{theirs.pk}/messages/", {"content": "hi"}, format="json"
        ).status_code
        == 202
    )


@pytest.mark.django_db(transaction=True)
def test_stop_without_a_reply_in_flight_answers_false(api, session):
    # transaction=True: the engine reads the session on its own connection.
    response = api.post(f"/api/sessions/{session.pk}/stop/")
    assert response.status_code == 200 and response.json() == {"stopped": False}


@pytest.mark.django_db(transaction=True)
def test_reply_is_written_by_the_development_llm(user):
    from chat import streaming

    from .conftest import bearer_client

    api = bearer_client(user)
    session = api.post("/api/sessions/", {}, format="json").json()
    response = api.post(
        f"/api/sessions/{session['id']}/messages/", {"content": "Say hello"}, format="json"
    )
    assert response.status_code == 202
    reply_id = response.json()["assistant_message"]["id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        reply = Message.objects.get(pk=reply_id)
        if reply.status != Message.Status.STREAMING:
            break
        time.sleep(0.05)
    assert reply.status == Message.Status.COMPLETE, (reply.status, reply.error)
    assert reply.content
    page = api.get(f"/api/sessions/{session['id']}/messages/").json()
    assert [m["status"] for m in page["results"]] == ["complete", "complete"]
    assert ChatSession.objects.get(pk=session["id"]).message_count == 2
    # Let the background title job finish before the test database goes away.
    streaming.wait_idle_sync(10)


@pytest.mark.django_db(transaction=True)
def test_stop_keeps_the_partial_reply_as_stopped(user, settings):
    from chat import streaming
    from chat.devllm import DevConfig, DevLLMThread

    from .conftest import bearer_client

    server = DevLLMThread(DevConfig(tokens=400, first_token_ms=0, token_ms=10)).start()
    try:
        settings.LLM_BASE_URL = server.base_url
        api = bearer_client(user)
        session = api.post("/api/sessions/", {}, format="json").json()["id"]
        reply_id = api.post(
            f"/api/sessions/{session}/messages/", {"content": "Tell me a long story"}, format="json"
        ).json()["assistant_message"]["id"]
        time.sleep(0.3)
        response = api.post(f"/api/sessions/{session}/stop/")
        assert response.status_code == 200 and response.json() == {"stopped": True}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            reply = Message.objects.get(pk=reply_id)
            if reply.status != Message.Status.STREAMING:
                break
            time.sleep(0.05)
        assert reply.status == Message.Status.STOPPED
        streaming.wait_idle_sync(10)
    finally:
        server.stop()
