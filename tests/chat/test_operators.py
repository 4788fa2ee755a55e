"""People in the loop, live (SPEC 4.6, "Operators"; issue 15): the WebSocket events of
joining, leaving and writing in person, the services' counters, and their concurrency on
PostgreSQL (real connections, the owner's user lock).

The sockets go through the real ASGI stack; replies come from the development LLM over
HTTP.
"""

import json

import pytest
from channels.db import database_sync_to_async
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.db.models import Count

from chat import selectors, services
from chat.exceptions import ConversationNotFound, DomainError, OperatorPresent
from chat.models import ChatSession, Message, Participant
from tests.factories import UserFactory

from .conftest import finish, open_socket, receive_until, start
from .test_concurrency import at_once


def make_operator(**fields):
    """A user with the permission ``chat.operate_conversations``."""
    user = UserFactory(**fields)
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="chat", codename="operate_conversations")
    )
    return user


def answered(user, content="My order is late"):
    """A conversation of ``user``'s whose first question has a finished reply."""
    session = start(user)
    first = services.reply_start(user=user, content=content, session_id=session.pk)
    services.reply_finish(
        message_id=first.assistant_message.pk, status="complete", content="Let me check."
    )
    return session


def counters(session) -> tuple[int, int]:
    """The conversation's ``operators_present`` and its open Participant rows."""
    row = ChatSession.objects.get(pk=session.pk)
    return row.operators_present, Participant.objects.filter(
        session=session, left_at__isnull=True
    ).count()


@database_sync_to_async
def scene(*, handoff=False, join=True):
    """An owner with an answered conversation and an operator (joined unless ``join``)."""
    owner = UserFactory(display_name="Una Owner")
    operator = make_operator(display_name="Olivia Support")
    session = answered(owner)
    if handoff:
        services.handoff_request(user=owner, session_id=session.pk)
    if join:
        services.operator_join(user=operator, session_id=session.pk)
    return owner, operator, session


async def subscribed(user, session):
    """A socket of ``user`` following ``session``, caught up (the stored reply replayed)."""
    socket = await open_socket(user)
    await socket.send_json_to({"type": "subscribe", "session": str(session.pk)})
    replay = await receive_until(socket)
    assert replay[-1]["type"] == "done", replay
    return socket


async def next_of(socket, kind: str, timeout=5.0) -> dict:
    """The next event of ``kind`` (any other one before it is skipped)."""
    return (await receive_until(socket, types=(kind,), timeout=timeout))[-1]


# Sockets -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("dev_llm")
async def test_the_owners_socket_sees_the_request_the_join_the_operators_words_and_the_leave():
    owner, operator, session = await scene(join=False)
    key = str(session.pk)
    watcher = await subscribed(owner, session)

    await database_sync_to_async(services.handoff_request)(user=owner, session_id=session.pk)
    assert await next_of(watcher, "participant") == {
        "type": "participant",
        "session": key,
        "action": "requested",
        "name": "Una Owner",
    }
    # Asking again is no news.
    await database_sync_to_async(services.handoff_request)(user=owner, session_id=session.pk)
    await database_sync_to_async(services.operator_join)(user=operator, session_id=session.pk)
    assert await next_of(watcher, "participant") == {
        "type": "participant",
        "session": key,
        "action": "joined",
        "name": "Olivia Support",
    }

    # The operator writes through their own socket, as a send.
    desk = await open_socket(operator)
    await desk.send_json_to(
        {"type": "send", "session": key, "content": "Hi, I'm **Olivia**.", "client_id": "o-1"}
    )
    answer = await next_of(desk, "session")
    assert (answer["session"], answer["message"], answer["created"]) == (key, None, False)
    event = await next_of(watcher, "message")
    message = event["message"]
    assert event["session"] == key and message["id"] == answer["user_message"]
    assert (message["role"], message["content"], message["client_id"]) == (
        "operator",
        "Hi, I'm **Olivia**.",
        "o-1",
    )
    assert message["author"] == {"kind": "operator", "name": "Olivia Support"}
    assert "<strong>Olivia</strong>" in message["html"]
    stored = await database_sync_to_async(Message.objects.get)(pk=message["id"])
    assert (stored.role, stored.author_id, message["parent"]) == (
        "operator",
        operator.pk,
        stored.parent_id,
    )

    await database_sync_to_async(services.operator_leave)(user=operator, session_id=session.pk)
    assert await next_of(watcher, "participant") == {
        "type": "participant",
        "session": key,
        "action": "left",
        "name": "Olivia Support",
    }
    await finish(watcher, desk)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("dev_llm")
async def test_an_operator_subscribes_only_to_conversations_they_joined():
    owner, operator, joined = await scene()
    elsewhere = await database_sync_to_async(answered)(owner, "Another question")
    desk = await subscribed(operator, joined)  # the stored reply, replayed: readable

    await desk.send_json_to({"type": "subscribe", "session": str(elsewhere.pk)})
    refusal = json.loads(await desk.receive_from(timeout=3))
    assert (refusal["type"], refusal["code"], refusal["session"]) == (
        "error",
        "not_found",
        str(elsewhere.pk),
    )
    # …nor write in it.
    await desk.send_json_to({"type": "send", "session": str(elsewhere.pk), "content": "psst"})
    refusal = json.loads(await desk.receive_from(timeout=3))
    assert (refusal["type"], refusal["code"]) == ("error", "not_found")
    count = await database_sync_to_async(Message.objects.filter(session=elsewhere).count)()
    assert count == 2

    # Staff without the permission find nothing either.
    staff = await database_sync_to_async(UserFactory)(is_staff=True)
    peeker = await open_socket(staff)
    await peeker.send_json_to({"type": "subscribe", "session": str(joined.pk)})
    refusal = json.loads(await peeker.receive_from(timeout=3))
    assert (refusal["type"], refusal["code"]) == ("error", "not_found")
    await finish(desk, peeker)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("dev_llm")
async def test_the_owners_send_while_an_operator_is_in_goes_to_the_operator_unanswered():
    owner, operator, session = await scene(handoff=True)
    key = str(session.pk)
    desk = await subscribed(operator, session)
    socket = await open_socket(owner)
    await socket.send_json_to(
        {"type": "send", "session": key, "content": "Is anyone _there_?", "client_id": "u-2"}
    )
    answer = await next_of(socket, "session")
    assert (answer["session"], answer["message"], answer["duplicate"]) == (key, None, False)

    event = await next_of(desk, "message")
    message = event["message"]
    assert message["id"] == answer["user_message"]
    assert (message["role"], message["content"], message["client_id"]) == (
        "user",
        "Is anyone _there_?",
        "u-2",
    )
    assert message["author"] == {"kind": "user", "name": "Una Owner"}
    assert "<em>there</em>" in message["html"]

    # A regeneration is refused while a person answers.
    reply = await database_sync_to_async(
        Message.objects.filter(session=session, role="assistant").get
    )()
    await socket.send_json_to({"type": "regenerate", "message": reply.pk})
    refusal = await next_of(socket, "error")
    assert refusal["code"] == "operator_present"

    rows = await database_sync_to_async(
        lambda: list(Message.objects.filter(session=session).values_list("role", "status"))
    )()
    assert rows == [("user", "complete"), ("assistant", "complete"), ("user", "complete")]
    row = await database_sync_to_async(ChatSession.objects.get)(pk=session.pk)
    assert row.message_count == 3
    await finish(socket, desk)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("dev_llm")
async def test_after_leaving_an_operators_socket_gets_nothing_more_of_the_conversation():
    owner, operator, session = await scene()
    desk = await subscribed(operator, session)
    await database_sync_to_async(services.operator_leave)(user=operator, session_id=session.pk)
    await next_of(desk, "participant")  # their own leaving
    socket = await open_socket(owner)
    await socket.send_json_to(
        {"type": "send", "session": str(session.pk), "content": "A private follow-up"}
    )
    await receive_until(socket)  # the assistant answers again
    try:
        assert await desk.receive_nothing(timeout=1.0), json.loads(await desk.receive_from())
    finally:
        await finish(socket, desk)


# The services: counters and rules -------------------------------------------------------


@pytest.mark.django_db
def test_counters_follow_the_open_participant_rows():
    owner = UserFactory()
    first, second = make_operator(), make_operator()
    session = answered(owner)
    services.handoff_request(user=owner, session_id=session.pk)

    assert services.operator_join(user=first, session_id=session.pk).operators_present == 1
    assert services.operator_join(user=first, session_id=session.pk).operators_present == 1
    assert services.operator_join(user=second, session_id=session.pk).operators_present == 2
    assert counters(session) == (2, 2)
    assert selectors.queue_waiting() == 0

    left = services.operator_leave(user=first, session_id=session.pk)
    assert left.operators_present == 1 and left.handoff_requested_at is not None
    assert counters(session) == (1, 1)
    assert services.operator_leave(user=first, session_id=session.pk).operators_present == 1
    # Back again: a new visit, a new row; the old one stays closed.
    services.operator_join(user=first, session_id=session.pk)
    assert counters(session) == (2, 2)
    assert Participant.objects.filter(session=session, user=first).count() == 2

    services.operator_leave(user=first, session_id=session.pk)
    done = services.operator_leave(user=second, session_id=session.pk)
    assert (done.operators_present, done.handoff_requested_at) == (0, None)
    assert counters(session) == (0, 0)
    assert selectors.operator_queue() == []
    # Nobody in it: the owner's next message is answered by the assistant again.
    reply = services.reply_start(user=owner, content="Back to you", session_id=session.pk)
    assert reply.assistant_message is not None and reply.assistant_message.status == "streaming"


@pytest.mark.django_db
def test_asking_while_an_operator_is_in_changes_nothing():
    owner, operator = UserFactory(), make_operator()
    session = answered(owner)
    services.operator_join(user=operator, session_id=session.pk)  # unasked: allowed
    assert services.handoff_request(user=owner, session_id=session.pk).handoff_requested_at is None
    assert selectors.operator_queue() == []
    services.operator_leave(user=operator, session_id=session.pk)
    assert ChatSession.objects.get(pk=session.pk).handoff_requested_at is None


@pytest.mark.django_db
def test_who_may_operate():
    owner = UserFactory()
    operator, retired = make_operator(), make_operator()
    retired.is_active = False
    retired.save()
    session = answered(owner)
    assert selectors.can_operate(operator) and not selectors.can_operate(retired)
    assert not selectors.can_operate(UserFactory(is_staff=True))
    assert selectors.can_operate(UserFactory(is_superuser=True))
    for outsider in (retired, UserFactory(is_staff=True)):
        with pytest.raises(ConversationNotFound):
            services.operator_join(user=outsider, session_id=session.pk)
        with pytest.raises(ConversationNotFound):
            services.operator_leave(user=outsider, session_id=session.pk)
        with pytest.raises(ConversationNotFound):
            services.operator_message(user=outsider, session_id=session.pk, content="hi")
    with pytest.raises(ConversationNotFound):
        services.operator_message(user=operator, session_id=session.pk, content="not joined")
    mine = answered(operator)
    with pytest.raises(DomainError) as refused:
        services.operator_join(user=operator, session_id=mine.pk)
    assert refused.value.status == 400
    assert not Participant.objects.exists()
    assert ChatSession.objects.filter(operators_present__gt=0).count() == 0


@pytest.mark.django_db
def test_an_operator_message_follows_the_leaf_and_keeps_the_counters():
    owner, operator = UserFactory(), make_operator(display_name="Olivia Support")
    session = answered(owner)
    services.operator_join(user=operator, session_id=session.pk)
    question = services.reply_start(user=owner, content="Help?", session_id=session.pk)
    assert question.assistant_message is None
    written = services.operator_message(
        user=operator, session_id=session.pk, content="  Here to help.  ", client_id="op-1"
    )
    message = written.user_message
    assert (message.role, message.parent_id, message.author_name) == (
        "operator",
        question.user_message.pk,
        "Olivia Support",
    )
    assert message.content.strip() == "Here to help."
    again = services.operator_message(
        user=operator, session_id=session.pk, content="Here to help.", client_id="op-1"
    )
    assert again.duplicate and again.user_message.pk == message.pk
    with pytest.raises(OperatorPresent):
        services.reply_regenerate(
            user=owner,
            message_id=Message.objects.get(session=session, role="assistant").pk,
        )
    row = ChatSession.objects.get(pk=session.pk)
    assert row.message_count == 4 == Message.objects.filter(session=session).count()
    assert list(
        Message.objects.filter(session=session, on_path=True)
        .order_by("created_at", "id")
        .values_list("role", flat=True)
    ) == ["user", "assistant", "user", "operator"]
    # The operator's account going keeps the message and its name.
    operator.delete()
    message.refresh_from_db()
    assert (message.author_id, message.author_name) == (None, "Olivia Support")


# Concurrency (PostgreSQL: real row locks, one connection per worker) ------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_operators_joining_at_once_are_counted_once_each():
    owner = UserFactory()
    session = answered(owner)
    services.handoff_request(user=owner, session_id=session.pk)
    operators = [make_operator() for _ in range(6)]
    workers = 18  # each operator three times, all at once

    def work(number):
        return services.operator_join(user=operators[number % 6], session_id=session.pk)

    outcomes = at_once(workers, work)
    assert [kind for kind, _ in outcomes] == ["sent"] * workers, outcomes
    assert counters(session) == (6, 6)
    per_operator = (
        Participant.objects.filter(session=session).values("user").annotate(n=Count("id"))
    )
    assert sorted(row["n"] for row in per_operator) == [1] * 6
    assert LogEntry.objects.filter(object_id=str(session.pk)).count() == 6

    # Half leave while the others join again and the leavers' leave races itself.
    def churn(number):
        operator = operators[number % 6]
        if number % 6 < 3:
            return services.operator_leave(user=operator, session_id=session.pk)
        return services.operator_join(user=operator, session_id=session.pk)

    outcomes = at_once(workers, churn)
    assert [kind for kind, _ in outcomes] == ["sent"] * workers, outcomes
    assert counters(session) == (3, 3)
    row = ChatSession.objects.get(pk=session.pk)
    assert row.handoff_requested_at is not None

    outcomes = at_once(
        6, lambda n: services.operator_leave(user=operators[n], session_id=session.pk)
    )
    assert [kind for kind, _ in outcomes] == ["sent"] * 6, outcomes
    row = ChatSession.objects.get(pk=session.pk)
    assert (row.operators_present, row.handoff_requested_at) == (0, None)
    assert counters(session) == (0, 0)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_an_owners_sends_racing_joins_see_the_operators_or_not_never_half():
    """The owner's user lock orders every send against the joins: a message written before
    the first join gets a reply (at most one: one generation at a time), none after it.

    Several rounds, each a fresh conversation: two operators join while the owner sends.
    """
    owner = UserFactory()
    operators = [make_operator(), make_operator()]
    workers = 8
    for _ in range(10):
        session = answered(owner)

        def work(number, session=session):
            if number < len(operators):
                return services.operator_join(user=operators[number], session_id=session.pk)
            return services.reply_start(
                user=owner, content=f"message {number}", session_id=session.pk
            )

        outcomes = at_once(workers, work)
        kinds = [kind for kind, _ in outcomes]
        assert "failed" not in kinds, outcomes
        assert counters(session) == (2, 2)
        first_join = min(Participant.objects.filter(session=session).values_list("joined_at"))[0]
        questions = Message.objects.filter(session=session, role="user").exclude(
            content="My order is late"
        )
        replies = Message.objects.filter(session=session, role="assistant")
        for question in questions:
            has_reply = replies.filter(parent=question).exists()
            assert has_reply == (question.created_at < first_join), (question.content, has_reply)
        assert replies.filter(status="streaming").count() <= 1
        # Every send not refused as busy stored its question; nothing more.
        assert questions.count() == kinds.count("sent") - len(operators)
        row = ChatSession.objects.get(pk=session.pk)
        assert row.message_count == Message.objects.filter(session=session).count()
