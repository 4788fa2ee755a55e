"""A send's bearer token is checked by the send's locking statement
(accounts.tokens.token_sender): a token seen lately costs the send no round trip of its
own, and a token revoked, expired or whose user was deactivated since is refused at
once, with nothing stored. On SQLite and PostgreSQL."""

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiToken, User
from accounts.services import token_revoke
from accounts.tokens import InvalidToken, token_issue, token_sender
from chat import services
from chat.models import ChatSession, Message

pytestmark = pytest.mark.django_db

TOKENS = ApiToken._meta.db_table


def counts():
    return ChatSession.objects.count(), Message.objects.count()


def answered(reply) -> None:
    services.reply_finish(
        message_id=reply.assistant_message.pk,
        status=Message.Status.COMPLETE,
        content="An answer.",
    )


@pytest.fixture
def seen(user):
    """A token this process has just found valid (its first use, looked up)."""
    raw, token = token_issue(user=user)
    first = token_sender(raw)
    assert first == user and not hasattr(first, "_token_unconfirmed")
    return raw, token


def test_a_token_seen_lately_costs_a_send_no_query_of_its_own(user, seen):
    raw, _ = seen
    first = services.reply_start(user=token_sender(raw), content="one")
    answered(first)
    with CaptureQueriesContext(connection) as captured:
        sender = token_sender(raw)
        reply = services.reply_start(user=sender, content="two", session_id=first.session.pk)
    statements = [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]
    with_token = [sql for sql in statements if TOKENS in sql]
    assert len(with_token) == 1, statements  # the lock's statement, which checks it
    assert reply.user_message.content == "two"
    # The lock loaded what the reply's prompt reads, as token_user does.
    assert sender.get_deferred_fields().isdisjoint(
        {"about_me", "response_style", "default_llm", "quota_tokens_per_day"}
    )
    assert not hasattr(sender, "_token_unconfirmed")


@pytest.mark.parametrize("how", ["revoked", "expired", "user deactivated", "user deleted"])
def test_a_token_no_longer_valid_is_refused_by_the_send_and_nothing_is_stored(user, seen, how):
    raw, token = seen
    first = services.reply_start(user=token_sender(raw), content="one")
    answered(first)
    if how == "revoked":
        token_revoke(user=user, token_id=token.pk)
    elif how == "expired":
        ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(1))
    elif how == "user deactivated":
        User.objects.filter(pk=user.pk).update(is_active=False)
    else:
        ChatSession.objects.filter(user=user).delete()
        User.objects.filter(pk=user.pk).delete()
    before = counts()
    sender = token_sender(raw)  # still remembered: checked by the lock
    assert hasattr(sender, "_token_unconfirmed")
    with pytest.raises(InvalidToken):
        services.reply_start(user=sender, content="two", session_id=first.session.pk)
    with pytest.raises(InvalidToken):
        services.reply_start(user=token_sender(raw), content="new conversation")
    assert counts() == before


def test_an_edit_and_a_regeneration_check_the_token_too(user, seen):
    raw, token = seen
    first = services.reply_start(user=token_sender(raw), content="one")
    answered(first)
    token_revoke(user=user, token_id=token.pk)
    before = counts()
    with pytest.raises(InvalidToken):
        services.reply_edit(user=token_sender(raw), message_id=first.user_message.pk, content="x")
    with pytest.raises(InvalidToken):
        services.reply_regenerate(user=token_sender(raw), message_id=first.assistant_message.pk)
    assert counts() == before


def test_settings_changed_since_the_token_was_seen_reach_the_reply(user, seen):
    raw, _ = seen
    User.objects.filter(pk=user.pk).update(about_me="I trade futures.", quota_tokens_per_day=7)
    sender = token_sender(raw)
    services.reply_start(user=sender, content="one")
    assert (sender.about_me, sender.quota_tokens_per_day) == ("I trade futures.", 7)


def test_a_token_is_remembered_only_for_a_while(user, seen, monkeypatch):
    raw, _ = seen
    import time

    later = time.monotonic() + 61
    monkeypatch.setattr(time, "monotonic", lambda: later)
    with CaptureQueriesContext(connection) as captured:
        sender = token_sender(raw)
    assert sender == user and not hasattr(sender, "_token_unconfirmed")
    assert any(TOKENS in q["sql"] for q in captured.captured_queries)  # looked up again


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("dev_llm")
async def test_the_stream_answers_401_to_a_token_revoked_after_it_was_seen():
    from channels.db import database_sync_to_async

    @database_sync_to_async
    def setup():
        user = User.objects.create(username="sender")
        raw, token = token_issue(user=user)
        assert token_sender(raw) == user
        return user, raw, token

    user, raw, token = await setup()
    headers = {"Authorization": f"Bearer {raw}"}
    body = json.dumps({"message": "Hi [dev:tokens=1]"})
    client = AsyncClient()
    first = await client.post(
        "/api/chat/stream", data=body, content_type="application/json", headers=headers
    )
    assert first.status_code == 200
    b"".join([chunk async for chunk in first.streaming_content])
    await database_sync_to_async(token_revoke)(user=user, token_id=token.pk)
    before = await database_sync_to_async(counts)()
    refused = await client.post(
        "/api/chat/stream", data=body, content_type="application/json", headers=headers
    )
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "not_authenticated"
    assert await database_sync_to_async(counts)() == before
