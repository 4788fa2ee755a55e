"""People in the loop through the REST API (SPEC 4.6, "Operators"; issue 15).

An owner asks for a person; an operator (permission ``chat.operate_conversations``) finds
the conversation in the queue, joins it, writes in person and leaves. Everyone without
access gets 404, staff without the permission included. Every client here authenticates
with a bearer token, as the API's clients do.
"""

import json
import time
import uuid

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.test import AsyncClient
from rest_framework.test import APIClient

from chat import services, streaming
from chat.models import ChatSession, Message, Participant
from tests.chat.conftest import dev_llm, dev_llm_server  # noqa: F401 (fixtures)
from tests.factories import UserFactory

from .conftest import assert_error, bearer_client

pytestmark = pytest.mark.django_db

OPERATOR_PATHS = [
    "/api/operator/queue/",
    "/api/sessions/{session_id}/handoff/",
    "/api/sessions/{session_id}/join/",
    "/api/sessions/{session_id}/leave/",
    "/api/sessions/{session_id}/participants/",
]
SUGGEST_PATH = "/api/sessions/{session_id}/suggest/"


def make_operator(**fields):
    """A user with the permission ``chat.operate_conversations``."""
    user = UserFactory(**fields)
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="chat", codename="operate_conversations")
    )
    return user


@pytest.fixture
def operator(db):
    return make_operator(display_name="Olivia Support")


@pytest.fixture
def operator_api(operator):
    return bearer_client(operator)


@pytest.fixture
def conversation(user):
    """One of ``user``'s conversations with a finished first turn."""
    session, _ = services.conversation_start(user=user)
    first = services.reply_start(user=user, content="My order is late", session_id=session.pk)
    services.reply_finish(
        message_id=first.assistant_message.pk, status="complete", content="Let me check."
    )
    return session


def url(session, action: str) -> str:
    return f"/api/sessions/{session.pk if hasattr(session, 'pk') else session}/{action}/"


def send(client, session, content, **fields):
    return client.post(url(session, "messages"), {"content": content, **fields}, format="json")


def messages_of(session) -> list[tuple[str, str]]:
    return list(
        Message.objects.filter(session=session)
        .order_by("created_at", "id")
        .values_list("role", "content")
    )


def open_rows(session) -> int:
    return Participant.objects.filter(session=session, left_at__isnull=True).count()


# Who may do what -------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["staff", "stranger"])
def test_everyone_without_access_gets_404_everywhere(who, user, conversation, operator):
    """Staff without the permission as much as a stranger: no sign the conversation exists."""
    services.handoff_request(user=user, session_id=conversation.pk)
    services.operator_join(user=operator, session_id=conversation.pk)  # someone is in it
    outsider_api = bearer_client(UserFactory(is_staff=who == "staff"))
    before = (messages_of(conversation), open_rows(conversation), LogEntry.objects.count())

    calls = [
        outsider_api.get("/api/operator/queue/"),
        outsider_api.get("/api/operator/queue/?q=" + user.username),
        outsider_api.post(url(conversation, "join")),
        outsider_api.post(url(conversation, "leave")),
        outsider_api.get(url(conversation, "participants")),
        outsider_api.get(url(conversation, "messages")),
        send(outsider_api, conversation, "let me in"),
        outsider_api.post(url(conversation, "handoff")),
    ]
    for response in calls:
        assert_error(response, 404, "not_found")
    assert (messages_of(conversation), open_rows(conversation), LogEntry.objects.count()) == before
    row = ChatSession.objects.get(pk=conversation.pk)
    assert row.handoff_requested_at is not None
    assert row.operators_present == open_rows(conversation)


def test_an_operator_not_in_the_conversation_can_neither_read_nor_write_it(
    user, conversation, operator, operator_api
):
    services.handoff_request(user=user, session_id=conversation.pk)
    # Listed in the queue, but not readable before joining…
    queue = operator_api.get("/api/operator/queue/").json()
    assert [item["id"] for item in queue["results"]] == [str(conversation.pk)]
    before = messages_of(conversation)
    for response in (
        operator_api.get(url(conversation, "messages")),
        send(operator_api, conversation, "hello?"),
        operator_api.get(url(conversation, "participants")),
    ):
        assert_error(response, 404, "not_found")
    # …readable while in it…
    assert operator_api.post(url(conversation, "join")).status_code == 200
    assert operator_api.get(url(conversation, "messages")).status_code == 200
    # …and not after leaving.
    assert operator_api.post(url(conversation, "leave")).status_code == 200
    assert_error(operator_api.get(url(conversation, "messages")), 404, "not_found")
    assert_error(send(operator_api, conversation, "one more thing"), 404, "not_found")
    assert_error(operator_api.get(url(conversation, "participants")), 404, "not_found")
    assert messages_of(conversation) == before
    # The owner's own message endpoints stay theirs: no edit or regeneration of them.
    question = Message.objects.filter(session=conversation, role="user").get()
    reply = Message.objects.filter(session=conversation, role="assistant").get()
    assert operator_api.post(url(conversation, "join")).status_code == 200
    edit = operator_api.post(
        f"/api/messages/{question.pk}/edit/", {"content": "changed"}, format="json"
    )
    assert_error(edit, 404)
    assert_error(operator_api.post(f"/api/messages/{reply.pk}/regenerate/"), 404)
    assert messages_of(conversation) == before


def test_only_the_owner_asks_for_a_person(conversation, operator_api, other_api):
    assert_error(other_api.post(url(conversation, "handoff")), 404, "not_found")
    assert_error(operator_api.post(url(conversation, "handoff")), 404, "not_found")
    assert ChatSession.objects.get(pk=conversation.pk).handoff_requested_at is None


def test_an_operator_cannot_join_their_own_conversation(operator, operator_api):
    mine, _ = services.conversation_start(user=operator)
    assert_error(operator_api.post(url(mine, "join")), 400, "invalid")
    assert not Participant.objects.exists()
    assert ChatSession.objects.get(pk=mine.pk).operators_present == 0


def test_a_superuser_has_the_permission(user, conversation):
    boss = UserFactory(is_superuser=True, is_staff=True)
    response = bearer_client(boss).post(url(conversation, "join"))
    assert response.status_code == 200, response.content
    assert [p["kind"] for p in response.json()["results"]] == ["user", "assistant", "operator"]


def test_signed_out_callers_are_401(conversation):
    anonymous = APIClient()
    for response in (
        anonymous.get("/api/operator/queue/"),
        anonymous.post(url(conversation, "join")),
        anonymous.post(url(conversation, "handoff")),
    ):
        assert_error(response, 401)
    broken = APIClient()
    broken.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert_error(broken.post(url(conversation, "join")), 401)
    assert not Participant.objects.exists()


# Bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["join", "leave", "participants", "handoff", "messages"])
def test_a_session_id_that_is_no_uuid_is_400_and_an_unknown_one_404(action, api, operator_api):
    caller = api if action == "handoff" else operator_api
    method = caller.get if action in ("participants", "messages") else caller.post
    error = assert_error(method(url("not-a-uuid", action)), 400, "invalid")
    assert "not-a-uuid" in error["message"]
    assert_error(method(url(uuid.uuid4(), action)), 404, "not_found")
    assert not Participant.objects.exists()


@pytest.mark.parametrize("query", ["page=2", "q=" + "x" * 151])
def test_bad_queue_queries_are_400(operator_api, query):
    assert_error(operator_api.get(f"/api/operator/queue/?{query}"), 400)


@pytest.mark.parametrize("content", ["", "   \n\t "])
def test_an_empty_operator_message_is_400(user, conversation, operator, operator_api, content):
    services.operator_join(user=operator, session_id=conversation.pk)
    before = messages_of(conversation)
    assert_error(send(operator_api, conversation, content), 400, "empty_message")
    assert messages_of(conversation) == before


def test_the_same_client_id_twice_is_one_operator_message(user, conversation, operator_api):
    operator_api.post(url(conversation, "join"))
    first = send(operator_api, conversation, "I am looking into it.", client_id="op-1")
    again = send(operator_api, conversation, "I am looking into it.", client_id="op-1")
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["user_message"]["id"] == first.json()["user_message"]["id"]
    assert again.json()["assistant_message"] is None
    assert Message.objects.filter(session=conversation, role="operator").count() == 1
    assert ChatSession.objects.get(pk=conversation.pk).message_count == 3


def test_the_owner_reusing_an_operators_client_id_is_no_server_error(
    user, api, conversation, operator_api
):
    operator_api.post(url(conversation, "join"))
    assert send(operator_api, conversation, "from the operator", client_id="c-9").status_code == 202
    client = bearer_client(user)
    client.raise_request_exception = False
    response = send(client, conversation, "from the owner", client_id="c-9")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"] == {
        "client_id": [response.json()["error"]["message"]]
    }
    assert not Message.objects.filter(
        session=conversation, role="user", content="from the owner"
    ).exists()
    # And an operator cannot take the owner's client_id for theirs either.
    owner_sent = send(client, conversation, "the owner's own", client_id="c-10")
    assert owner_sent.status_code == 202
    response = send(operator_api, conversation, "the operator's", client_id="c-10")
    assert response.status_code == 400
    assert not Message.objects.filter(session=conversation, content="the operator's").exists()


# Asking for a person, the queue ------------------------------------------------------------


def test_asking_for_a_person_is_idempotent_and_queues_the_conversation(
    user, api, conversation, operator_api
):
    user.display_name = "Una Owner"
    user.save()
    first = api.post(url(conversation, "handoff"))
    assert first.status_code == 200, first.content
    body = first.json()
    assert body["results"] == [
        {"kind": "user", "name": "Una Owner"},
        {"kind": "assistant", "name": "Assistant"},
    ]
    asked = body["handoff_requested_at"]
    assert asked is not None
    again = api.post(url(conversation, "handoff"))
    assert again.status_code == 200 and again.json()["handoff_requested_at"] == asked

    queue = operator_api.get("/api/operator/queue/")
    assert queue.status_code == 200
    [item] = queue.json()["results"]
    assert queue.json()["waiting"] == 1
    assert item == {
        "id": str(conversation.pk),
        "title": "My order is late",
        "user": "Una Owner",
        "username": user.username,
        "handoff_requested_at": asked,
        "operators": [],
        "message_count": 2,
        "last_message_at": item["last_message_at"],
        "preview": "Let me check.",
    }
    assert item["last_message_at"] is not None


def test_the_queue_lists_requests_newest_first_counts_the_waiting_and_searches(
    operator, operator_api
):
    alice, bob = UserFactory(username="alice-k"), UserFactory(username="bob-m")
    quiet = UserFactory(username="carol-n")
    asked = []
    for owner in (alice, bob):
        session, _ = services.conversation_start(user=owner)
        services.handoff_request(user=owner, session_id=session.pk)
        asked.append(session)
    services.conversation_start(user=quiet)  # never asks: never listed
    body = operator_api.get("/api/operator/queue/").json()
    assert [item["id"] for item in body["results"]] == [str(asked[1].pk), str(asked[0].pk)]
    assert body["waiting"] == 2

    services.operator_join(user=operator, session_id=asked[0].pk)
    body = operator_api.get("/api/operator/queue/").json()
    assert body["waiting"] == 1
    by_id = {item["id"]: item for item in body["results"]}
    assert by_id[str(asked[0].pk)]["operators"] == ["Olivia Support"]
    assert by_id[str(asked[1].pk)]["operators"] == []

    found = operator_api.get("/api/operator/queue/?q=ALICE").json()
    assert [item["username"] for item in found["results"]] == ["alice-k"]
    assert found["waiting"] == 1  # the count is the whole queue's, not the search's
    assert operator_api.get("/api/operator/queue/?q=carol").json()["results"] == []
    assert operator_api.get("/api/operator/queue/?q=nobody").json()["results"] == []


# Joining and leaving ----------------------------------------------------------------------


def test_join_is_idempotent_and_leave_hands_the_conversation_back(
    user, api, conversation, operator, operator_api
):
    api.post(url(conversation, "handoff"))
    joined = operator_api.post(url(conversation, "join"))
    assert joined.status_code == 200, joined.content
    people = joined.json()["results"]
    assert [(p["kind"], p["name"]) for p in people] == [
        ("user", user.username),
        ("assistant", "Assistant"),
        ("operator", "Olivia Support"),
    ]
    assert people[2]["joined_at"] and "joined_at" not in people[0]
    again = operator_api.post(url(conversation, "join"))
    assert again.status_code == 200 and again.json()["results"] == people
    row = ChatSession.objects.get(pk=conversation.pk)
    assert row.operators_present == 1 == open_rows(conversation)
    assert Participant.objects.filter(session=conversation, user=operator).count() == 1
    # The owner and the operator see the same people.
    assert api.get(url(conversation, "participants")).json() == joined.json()
    assert operator_api.get(url(conversation, "participants")).json() == joined.json()

    left = operator_api.post(url(conversation, "leave"))
    assert left.status_code == 200
    assert left.json() == {
        "results": [
            {"kind": "user", "name": user.username},
            {"kind": "assistant", "name": "Assistant"},
        ],
        "handoff_requested_at": None,
    }
    row = ChatSession.objects.get(pk=conversation.pk)
    assert (row.operators_present, row.handoff_requested_at) == (0, None)
    assert Participant.objects.get(session=conversation, user=operator).left_at is not None
    assert operator_api.get("/api/operator/queue/").json() == {"results": [], "waiting": 0}
    # Leaving again changes nothing.
    assert operator_api.post(url(conversation, "leave")).json() == left.json()
    assert ChatSession.objects.get(pk=conversation.pk).operators_present == 0


def test_the_request_stays_until_the_last_operator_leaves(user, api, conversation, operator):
    second = make_operator(username="sam-ops")
    api.post(url(conversation, "handoff"))
    first_api, second_api = bearer_client(operator), bearer_client(second)
    first_api.post(url(conversation, "join"))
    body = second_api.post(url(conversation, "join")).json()
    assert [p["name"] for p in body["results"] if p["kind"] == "operator"] == [
        "Olivia Support",
        "sam-ops",
    ]
    body = first_api.post(url(conversation, "leave")).json()
    assert [p["name"] for p in body["results"] if p["kind"] == "operator"] == ["sam-ops"]
    assert body["handoff_requested_at"] is not None
    assert ChatSession.objects.get(pk=conversation.pk).operators_present == 1
    # Still in: the owner's messages still go to a person.
    owner = send(api, conversation, "Are you still there?")
    assert owner.status_code == 202 and owner.json()["assistant_message"] is None
    second_api.post(url(conversation, "leave"))
    row = ChatSession.objects.get(pk=conversation.pk)
    assert (row.operators_present, row.handoff_requested_at) == (0, None)


# Writing in person ----------------------------------------------------------------------


def test_while_an_operator_is_in_the_owner_gets_no_ai_reply(
    user, api, conversation, operator, operator_api
):
    operator_api.post(url(conversation, "join"))
    response = send(api, conversation, "Can a person help?", client_id="owner-1")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["assistant_message"] is None
    assert body["user_message"]["author"] == {"kind": "user", "name": user.username}
    assert not Message.objects.filter(session=conversation, status="streaming").exists()
    # A regeneration would ask the assistant: refused while a person answers.
    reply = Message.objects.filter(session=conversation, role="assistant").get()
    assert_error(api.post(f"/api/messages/{reply.pk}/regenerate/"), 409, "operator_present")

    written = send(operator_api, conversation, "Hi, I'm Olivia. **Checking** now.", client_id="o-1")
    assert written.status_code == 202, written.content
    body = written.json()
    assert body["assistant_message"] is None
    message = body["user_message"]
    assert (message["role"], message["content"], message["client_id"]) == (
        "operator",
        "Hi, I'm Olivia. **Checking** now.",
        "o-1",
    )
    assert message["author"] == {"kind": "operator", "name": "Olivia Support"}
    assert message["parent"] == body_id(api, conversation, "Can a person help?")
    stored = Message.objects.get(pk=message["id"])
    assert (stored.author_id, stored.author_name) == (operator.pk, "Olivia Support")

    # Both read the same conversation, with each message's author.
    page = operator_api.get(url(conversation, "messages")).json()["results"]
    assert page == api.get(url(conversation, "messages")).json()["results"]
    assert [(m["role"], m["author"]) for m in page] == [
        ("user", {"kind": "user", "name": user.username}),
        ("assistant", {"kind": "assistant", "name": page[1]["llm"] or "Assistant"}),
        ("user", {"kind": "user", "name": user.username}),
        ("operator", {"kind": "operator", "name": "Olivia Support"}),
    ]
    row = ChatSession.objects.get(pk=conversation.pk)
    assert row.message_count == 4 == Message.objects.filter(session=conversation).count()
    assert row.preview == "Hi, I'm Olivia. **Checking** now."


def body_id(client, session, content) -> int:
    page = client.get(url(session, "messages")).json()["results"]
    return next(m["id"] for m in page if m["content"] == content)


def test_operator_acts_are_in_the_admin_log(user, conversation, operator, operator_api):
    operator_api.post(url(conversation, "join"))
    operator_api.post(url(conversation, "join"))  # no change, no entry
    written = send(operator_api, conversation, "On it.").json()["user_message"]
    operator_api.post(url(conversation, "leave"))
    operator_api.post(url(conversation, "leave"))  # no change, no entry
    entries = list(LogEntry.objects.order_by("id"))
    assert [entry.get_change_message() for entry in entries] == [
        "Joined the conversation.",
        f"Wrote message {written['id']}.",
        "Left the conversation.",
    ]
    kind = ContentType.objects.get_for_model(ChatSession)
    for entry in entries:
        assert (entry.user_id, entry.content_type_id, entry.object_id) == (
            operator.pk,
            kind.pk,
            str(conversation.pk),
        )
    # The owner's messages and requests are not the admin log's business.
    services.handoff_request(user=user, session_id=conversation.pk)
    assert LogEntry.objects.count() == 3


def test_the_send_rate_limits_operators_too(settings, conversation, operator, operator_api):
    settings.THROTTLE_MESSAGES = "2/min"
    operator_api.post(url(conversation, "join"))
    for number in range(2):
        assert send(operator_api, conversation, f"note {number}").status_code == 202
    response = send(operator_api, conversation, "note 3")
    assert_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1
    assert Message.objects.filter(session=conversation, role="operator").count() == 2


# The assistant again, and drafts (the development LLM over HTTP) -------------------------


def wait_finished(message_id: int, timeout: float = 20) -> Message:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = Message.objects.get(pk=message_id)
        if reply.status != Message.Status.STREAMING:
            return reply
        time.sleep(0.05)
    raise AssertionError(f"reply {message_id} still streaming after {timeout}s")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("dev_llm")
def test_after_the_operator_leaves_the_ai_answers_with_their_words_in_its_context(user):
    operator = make_operator(display_name="Olivia Support")
    api, operator_api = bearer_client(user), bearer_client(operator)
    session = api.post("/api/sessions/", {}, format="json").json()["id"]
    first = send(api, session, "Where is my parcel?").json()["assistant_message"]
    assert wait_finished(first["id"]).status == "complete"
    assert api.post(url(session, "handoff")).status_code == 200
    assert operator_api.post(url(session, "join")).status_code == 200

    waiting = send(api, session, "Hello? [dev:echo=context]")
    assert waiting.status_code == 202 and waiting.json()["assistant_message"] is None
    send(operator_api, session, "It ships tomorrow, tracking 42.")
    time.sleep(0.3)  # a reply started by mistake would have begun by now
    assert not Message.objects.filter(session_id=session, status="streaming").exists()
    assert Message.objects.filter(session_id=session, role="assistant").count() == 1
    assert operator_api.post(url(session, "leave")).status_code == 200

    response = send(api, session, "Thanks! Anything else? [dev:echo=context]")
    assert response.status_code == 202
    reply = wait_finished(response.json()["assistant_message"]["id"])
    streaming.wait_idle_sync(10)
    assert reply.status == "complete", (reply.status, reply.error)
    echoed = reply.content
    operator_said = (
        "assistant: [Olivia Support, a person from the support team, wrote:]\n"
        "It ships tomorrow, tracking 42."
    )
    assert operator_said in echoed
    lines = echoed.splitlines()
    # In order: the owner's unanswered message, the operator's, then the new question.
    assert lines.index("user: Hello? [dev:echo=context]") < lines.index(
        "assistant: [Olivia Support, a person from the support team, wrote:]"
    )
    assert lines[-1] == "user: Thanks! Anything else? [dev:echo=context]"
    assert "operator:" not in echoed  # no role the LLM APIs do not know
    row = ChatSession.objects.get(pk=session)
    assert row.message_count == 6 == Message.objects.filter(session_id=session).count()


async def post_stream(path: str, token: str) -> tuple[int, str, list[dict] | dict]:
    response = await AsyncClient().post(path, headers={"Authorization": f"Bearer {token}"})
    if response["Content-Type"] != "text/event-stream":
        return response.status_code, response["Content-Type"], json.loads(response.content)
    text = b"".join([chunk async for chunk in response.streaming_content]).decode()
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    return response.status_code, response["Content-Type"], events


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("dev_llm")
async def test_suggest_streams_a_draft_to_the_operator_and_stores_nothing(settings):
    # transaction=True: the view reads the database on threads of its own.
    from channels.db import database_sync_to_async

    from accounts.tokens import token_issue

    @database_sync_to_async
    def setup():
        owner = UserFactory()
        operator = make_operator(display_name="Olivia Support")
        outsider = make_operator()  # has the permission, is not in this conversation
        session, _ = services.conversation_start(user=owner)
        first = services.reply_start(user=owner, content="My order?", session_id=session.pk)
        services.reply_finish(message_id=first.assistant_message.pk, status="complete", content="A")
        services.operator_join(user=operator, session_id=session.pk)
        services.reply_start(
            user=owner, content="Still late [dev:echo=context]", session_id=session.pk
        )
        people = (owner, operator, UserFactory(is_staff=True), UserFactory(), outsider)
        tokens = [token_issue(user=person)[0] for person in people]
        state = (
            list(Message.objects.order_by("id").values_list("id", "content", "status")),
            ChatSession.objects.values_list("message_count", "preview").get(pk=session.pk),
        )
        return session, tokens, state

    session, (owner, operator, staff, stranger, outsider), before = await setup()
    path = url(session, "suggest")
    status, content_type, events = await post_stream(path, operator)
    assert (status, content_type) == (200, "text/event-stream")
    kinds = [event["type"] for event in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"token"}, kinds
    assert all(event["draft"] is True and event["message"] is None for event in events)
    assert all(event["session"] == str(session.pk) for event in events)
    draft = "".join(event["content"] for event in events[:-1])
    done = events[-1]
    assert done["content"] == draft and done["html"].startswith("<")
    # The draft is written for a person to send, from the conversation as it stands.
    assert "Olivia Support, a person from the support team, is answering" in draft
    assert draft.splitlines()[-1] == "user: Still late [dev:echo=context]"

    status, _, body = await post_stream(path, owner)
    assert (status, body["error"]["code"]) == (403, "not_operator")
    for token in (staff, stranger, outsider):
        status, _, body = await post_stream(path, token)
        assert (status, body["error"]["code"]) == (404, "not_found")
    status, _, body = await post_stream(url("not-a-uuid", "suggest"), operator)
    assert (status, body["error"]["code"]) == (400, "invalid")
    status, _, body = await post_stream(url(uuid.uuid4(), "suggest"), operator)
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, _, body = await post_stream(path, "not-a-token")
    assert status == 401
    response = await AsyncClient().get(path, headers={"Authorization": f"Bearer {operator}"})
    assert response.status_code == 405
    # A draft counts against the operator's send rate (THROTTLE_MESSAGES): none left, it
    # is refused (no budget at all, so no window can roll over in between).
    settings.THROTTLE_MESSAGES = "0/d"
    status, _, body = await post_stream(path, operator)
    assert (status, body["error"]["code"]) == (429, "rate_limited")

    @database_sync_to_async
    def state():
        return (
            list(Message.objects.order_by("id").values_list("id", "content", "status")),
            ChatSession.objects.values_list("message_count", "preview").get(pk=session.pk),
        )

    assert await state() == before
    await streaming.Engine.current().wait_idle()


# The schema -------------------------------------------------------------------------------


def schema_paths() -> dict:
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return response.json()["paths"]


def test_the_schema_documents_the_operator_endpoints():
    paths = schema_paths()
    methods = dict(zip(OPERATOR_PATHS, ["get", "post", "post", "post", "get"], strict=True))
    for path, method in methods.items():
        assert list(paths.get(path, {})) == [method], path
        responses = paths[path][method]["responses"]
        assert {"200", "400", "401", "404"} <= set(responses), (path, responses)
    queue = paths["/api/operator/queue/"]["get"]
    assert [p["name"] for p in queue["parameters"]] == ["q"]


def test_the_schema_documents_the_suggest_endpoint():
    assert SUGGEST_PATH in schema_paths()
