"""Usage and limits (SPEC 4.6): every finished reply adds its tokens to the owner's usage
of the UTC day with its LLM; a spent daily quota refuses sending on the streams too; the
settings page's chart and table; the admin's list; what it costs a send."""

import threading
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import User
from accounts.tokens import token_issue, token_user
from chat import services, usage
from chat.models import ChatSession, Message, UsageDay
from tests.factories import UserFactory, spent

from .conftest import finish, open_socket, receive_until


def rows(user) -> dict[str, tuple[int, int]]:
    return {
        row.llm: (row.prompt_tokens, row.completion_tokens)
        for row in UsageDay.objects.filter(user=user, date=usage.today())
    }


def finished_turn(user, *, llm="parlor-dev", prompt=0, completion=0, session_id=None):
    """Store a question and finish its reply with the given tokens; return the reply."""
    if session_id is None:
        session_id = services.conversation_start(user=user, llm=llm)[0].pk
    reply = services.reply_start(user=user, content="A question", session_id=session_id)
    services.reply_finish(
        message_id=reply.assistant_message.pk,
        status=Message.Status.COMPLETE,
        content="An answer.",
        prompt_tokens=prompt or None,
        completion_tokens=completion or None,
    )
    return reply


# Counting ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_finished_replies_add_up_per_day_and_llm(user, other_user):
    first = finished_turn(user, llm="parlor-dev-mini", prompt=10, completion=20)
    finished_turn(user, prompt=1, completion=2, session_id=first.session.pk)
    finished_turn(user, llm="parlor-dev-large", prompt=3, completion=4)
    finished_turn(user, llm="parlor-dev-large", prompt=5, completion=6)
    finished_turn(other_user, prompt=100, completion=100)
    assert rows(user) == {"parlor-dev-mini": (11, 22), "parlor-dev-large": (8, 10)}
    assert rows(other_user) == {"parlor-dev": (100, 100)}


@pytest.mark.django_db
def test_a_reply_without_tokens_or_finished_twice_counts_once(user):
    reply = finished_turn(user, prompt=7, completion=8)
    again = services.reply_finish(
        message_id=reply.assistant_message.pk,
        status=Message.Status.COMPLETE,
        prompt_tokens=7,
        completion_tokens=8,
    )
    assert again is False
    interrupted = services.reply_start(user=user, content="More", session_id=reply.session.pk)
    services.reply_interrupt(message_id=interrupted.assistant_message.pk)
    assert rows(user) == {"parlor-dev": (7, 8)}


@pytest.mark.django_db(transaction=True)
async def test_replies_over_the_socket_are_counted_with_their_llm_titles_are_not(dev_llm):
    user = await database_sync_to_async(UserFactory)()
    socket = await open_socket(user)
    await socket.send_json_to({"type": "send", "content": "One", "llm": "parlor-dev-mini"})
    first = await receive_until(socket, timeout=10)
    session = first[0]["session"]
    await socket.send_json_to({"type": "send", "content": "Two", "session": session})
    await receive_until(socket, timeout=10)
    await socket.send_json_to(
        {"type": "send", "content": "Three", "session": session, "llm": "parlor-dev-large"}
    )
    third = await receive_until(socket, timeout=10)
    await finish(socket)

    def stored():
        replies = Message.objects.filter(session_id=session, role=Message.Role.ASSISTANT)
        per_llm: dict[str, tuple[int, int]] = {}
        for reply in replies:
            prompt, completion = per_llm.get(reply.llm, (0, 0))
            per_llm[reply.llm] = (
                prompt + reply.prompt_tokens,
                completion + reply.completion_tokens,
            )
        return per_llm, rows(user)

    per_llm, usage_rows = await database_sync_to_async(stored)()
    assert set(per_llm) == {"parlor-dev-mini", "parlor-dev-large"}
    # The title (made by LLM_TITLE_MODEL, parlor-dev) is Parlor's work, not counted.
    assert usage_rows == per_llm
    assert third[-1]["usage"] == {
        "prompt_tokens": per_llm["parlor-dev-large"][0],
        "completion_tokens": per_llm["parlor-dev-large"][1],
    }


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_replies_finishing_at_once_all_count(user):
    replies = [finished_turn(user) for _ in range(8)]
    for reply in replies:
        Message.objects.filter(pk=reply.assistant_message.pk).update(status="streaming")
    UsageDay.objects.all().delete()
    barrier = threading.Barrier(len(replies))

    def end(reply):
        try:
            barrier.wait(5)
            services.reply_finish(
                message_id=reply.assistant_message.pk,
                status=Message.Status.COMPLETE,
                prompt_tokens=3,
                completion_tokens=4,
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=end, args=(reply,)) for reply in replies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert rows(user) == {"parlor-dev": (24, 32)}


# The quota on the streams -------------------------------------------------------------------


@database_sync_to_async
def counts():
    return ChatSession.objects.count(), Message.objects.count()


@pytest.mark.django_db(transaction=True)
async def test_a_spent_quota_is_an_error_event_on_the_socket_and_stores_nothing(dev_llm, settings):
    settings.QUOTA_TOKENS_PER_DAY = 1000
    user = await database_sync_to_async(UserFactory)()
    turn = await database_sync_to_async(finished_turn)(user, prompt=400, completion=600)
    before = await counts()
    socket = await open_socket(user)
    frames = [
        {"type": "send", "content": "New chat", "session": "8c0b8a86-9c05-4a8f-9f4c-8d0f3c3f1a11"},
        {"type": "send", "content": "More", "session": str(turn.session.pk)},
        {"type": "edit", "message": turn.user_message.pk, "content": "Other"},
        {"type": "regenerate", "message": turn.assistant_message.pk},
    ]
    refusals = []
    for frame in frames:
        await socket.send_json_to(frame)
        refusals.append((await receive_until(socket, types=("error",), timeout=5))[-1])
    await finish(socket)
    for refused in refusals:
        assert refused["code"] == "quota_exceeded", refused
        assert "00:00 UTC" in refused["error"] and "message" not in refused
    assert await counts() == before


@pytest.mark.django_db(transaction=True)
async def test_a_spent_quota_is_429_on_sse_with_retry_after(dev_llm, settings):
    settings.QUOTA_TOKENS_PER_DAY = 10
    user = await database_sync_to_async(UserFactory)()
    await database_sync_to_async(spent)(user, 10)
    raw, _ = await database_sync_to_async(token_issue)(user=user)
    before = await counts()
    response = await AsyncClient().post(
        "/api/chat/stream",
        data={"message": "Hello"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert 0 < int(response["Retry-After"]) <= 86400
    assert await counts() == before


@pytest.mark.django_db(transaction=True)
async def test_the_quota_resets_with_the_day(dev_llm, settings):
    """Yesterday's usage, however large, leaves today's budget whole."""
    settings.QUOTA_TOKENS_PER_DAY = 10
    user = await database_sync_to_async(UserFactory)()
    await database_sync_to_async(spent)(user, 10_000, days_ago=1)
    socket = await open_socket(user)
    await socket.send_json_to({"type": "send", "content": "A new day"})
    events = await receive_until(socket, timeout=10)
    await finish(socket)
    assert events[-1]["type"] == "done"


@pytest.mark.django_db
def test_the_message_says_when_the_budget_resets(user, settings):
    settings.QUOTA_TOKENS_PER_DAY = 5
    spent(user, 5)
    with pytest.raises(services.DomainError) as caught:
        services.reply_start(user=user, content="Hi")
    error = caught.value
    tomorrow = usage.today() + timedelta(days=1)
    assert (error.status, error.code) == (429, "quota_exceeded")
    assert f"resets at 00:00 UTC ({tomorrow:%Y-%m-%d})" in error.message
    assert 0 < error.retry_after <= 86400


# What it costs a send ------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_send_reads_the_usage_only_when_a_quota_applies(settings):
    user = UserFactory()
    session = services.conversation_start(user=user)[0]

    def send_queries():
        loaded = User.objects.get(pk=user.pk)  # as a browser's session loads it: whole
        with CaptureQueriesContext(connection) as captured:
            reply = services.reply_start(user=loaded, content="Hi", session_id=session.pk)
        services.reply_finish(message_id=reply.assistant_message.pk, status="complete")
        return [q["sql"] for q in captured.captured_queries]

    settings.QUOTA_TOKENS_PER_DAY = None
    send_queries()  # the first question of a conversation is one read more
    without = send_queries()
    settings.QUOTA_TOKENS_PER_DAY = 1_000_000
    with_quota = send_queries()
    table = UsageDay._meta.db_table
    assert not any(table in sql for sql in without)
    assert len(with_quota) == len(without) + 1
    assert sum(table in sql for sql in with_quota) == 1


@pytest.mark.django_db
def test_a_bearer_tokens_user_comes_with_its_quota(user, settings):
    """A send of a token's user reads no user row more than a browser's."""
    settings.QUOTA_TOKENS_PER_DAY = None
    User.objects.filter(pk=user.pk).update(quota_tokens_per_day=10_000)
    raw, _ = token_issue(user=user)
    session = services.conversation_start(user=user)[0]
    services.reply_finish(
        message_id=services.reply_start(
            user=user, content="Hi", session_id=session.pk
        ).assistant_message.pk,
        status="complete",
    )
    counts = []
    for sender in (User.objects.get(pk=user.pk), token_user(raw)):
        with CaptureQueriesContext(connection) as captured:
            reply = services.reply_start(user=sender, content="Hi", session_id=session.pk)
        services.reply_finish(message_id=reply.assistant_message.pk, status="complete")
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1]
    assert token_user(raw).quota_tokens_per_day == 10_000


@pytest.mark.django_db
def test_finishing_a_reply_adds_one_statement_for_its_usage(user):
    reply = services.reply_start(user=user, content="Hi")
    with CaptureQueriesContext(connection) as captured:
        services.reply_finish(
            message_id=reply.assistant_message.pk,
            status=Message.Status.COMPLETE,
            content="Done.",
            prompt_tokens=3,
            completion_tokens=4,
        )
    table = UsageDay._meta.db_table
    statements = [q["sql"] for q in captured.captured_queries]
    assert sum(table in sql for sql in statements) == 1
    assert rows(user) == {"parlor-dev": (3, 4)}


# The settings page and the admin -------------------------------------------------------------


@pytest.mark.django_db
def test_the_settings_page_shows_the_chart_and_the_table(web, user, settings):
    settings.QUOTA_TOKENS_PER_DAY = 50_000
    spent(user, 1200, llm="parlor-dev-mini")
    spent(user, 300)
    spent(user, 4000, days_ago=3)
    page = web.get("/settings/").content.decode()
    section = page.split('id="usage"', 1)[1].split("</section>", 1)[0]
    chart = section.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert 'role="img"' in chart and "<title" in chart and "<desc" in chart
    assert chart.count('class="usage-bar"') == 3
    assert "style=" not in section
    assert "<strong>1,500</strong> of your 50,000 tokens a day" in " ".join(section.split())
    table = section.split("<table", 1)[1]
    assert table.count("<tr>") == 5  # the header, three rows, the totals
    assert "parlor-dev-mini" in table and "5,500" in table


@pytest.mark.django_db
def test_the_settings_page_without_usage_says_so(web):
    section = web.get("/settings/").content.decode().split('id="usage"', 1)[1]
    assert "No tokens used in the last 30 days." in section
    assert 'class="usage-bar"' not in section


@pytest.mark.django_db
def test_the_chart_stacks_each_days_llms_to_scale(user):
    spent(user, 600, llm="a")
    spent(user, 400, llm="b")
    spent(user, 250, days_ago=29, llm="a")
    chart = usage.usage_chart(user=user)
    today_bars = [bar for bar in chart["bars"] if bar.x == max(b.x for b in chart["bars"])]
    assert [round(bar.height, 1) for bar in today_bars] == [108.0, 72.0]  # of 180, top 1,000
    assert today_bars[0].y == chart["baseline"] - today_bars[0].height
    assert today_bars[1].y + today_bars[1].height == pytest.approx(today_bars[0].y)
    assert today_bars[0].colour != today_bars[1].colour
    assert chart["grid"][-1]["text"] == "1k" and chart["total"] == 1250


@pytest.mark.django_db
def test_staff_see_every_users_usage_in_the_admin(client, user, other_user):
    spent(user, 10)
    spent(other_user, 20, llm="parlor-dev-mini")
    staff = UserFactory(username="staff", is_staff=True, is_superuser=True)
    client.force_login(staff)
    url = reverse("admin:chat_usageday_changelist")
    page = client.get(url).content.decode()
    assert user.username in page and other_user.username in page
    filtered = client.get(url + "?llm=parlor-dev-mini").content.decode()
    assert '<td class="field-llm">parlor-dev-mini</td>' in filtered
    assert '<td class="field-llm">parlor-dev</td>' not in filtered
    assert client.get(url + f"?user__id__exact={user.pk}").status_code == 200
    assert client.get(url + "?date__gte=2020-01-01").status_code == 200
    change = reverse("admin:accounts_user_change", args=[user.pk])
    assert 'name="quota_tokens_per_day"' in client.get(change).content.decode()


@pytest.mark.django_db
def test_people_without_staff_rights_do_not_see_the_usage_list(web):
    response = web.get(reverse("admin:chat_usageday_changelist"))
    assert response.status_code == 302
