"""Temporary chats (SPEC 4.6): never listed, searched, counted or exported in bulk, never
the active conversation of their context (invariant 1 untouched), deleted with their
messages TEMPORARY_CHAT_TTL after their last message by the sweep and by
``cleanup_empty_sessions``; started by ``temporary: true`` on REST, WebSocket and SSE."""

import asyncio
import json
from datetime import timedelta
from io import StringIO

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.db.models import Count, Q
from django.test import AsyncClient
from django.utils import timezone

from accounts.tokens import token_issue
from chat import exports, selectors, services, streaming
from chat.models import ChatSession, Message, SessionTag
from tests.factories import ModelFactory, UserFactory

from .conftest import HTMX, finish, open_socket, receive_until, start


def send(user, content="Hello", **fields):
    reply = services.reply_start(user=user, content=content, **fields)
    services.reply_finish(
        message_id=reply.assistant_message.pk, status=Message.Status.COMPLETE, content="Hi there"
    )
    return reply


def active_per_context(user) -> dict:
    """(model, run) -> how many active conversations: invariant 1 says at most one."""
    rows = (
        ChatSession.objects.filter(user=user, is_active=True)
        .values("model_id", "run_id")
        .annotate(n=Count("id"))
    )
    return {(row["model_id"], row["run_id"]): row["n"] for row in rows}


def age(session, **delta) -> None:
    ChatSession.objects.filter(pk=session.pk).update(
        activity_at=timezone.now() - timedelta(**delta)
    )


@pytest.mark.django_db
class TestNeverActive:
    def test_a_temporary_start_leaves_the_active_conversation_active(self, user):
        kept = start(user)
        temporary, created = services.conversation_start(user=user, temporary=True)
        assert created and temporary.temporary and not temporary.is_active
        kept.refresh_from_db()
        assert kept.is_active
        assert selectors.session_active(user=user) == kept

    def test_sending_into_a_temporary_one_activates_nothing(self, user):
        kept = start(user)
        temporary, _ = services.conversation_start(user=user, temporary=True)
        reply = send(user, session_id=temporary.pk)
        assert reply.session.pk == temporary.pk and not reply.session.is_active
        temporary.refresh_from_db()
        kept.refresh_from_db()
        assert (temporary.is_active, kept.is_active) == (False, True)
        assert temporary.message_count == 2
        assert active_per_context(user) == {(None, None): 1}

    def test_a_first_message_with_a_new_id_starts_a_temporary_one(self, user):
        kept = start(user)
        reply = send(user, session_id="7d1c1d36-6a52-4b8f-9d0e-1f0a5b8c2d3e", temporary=True)
        assert reply.session_created and reply.session.temporary
        session = ChatSession.objects.get(pk=reply.session.pk)
        assert session.temporary and not session.is_active
        kept.refresh_from_db()
        assert kept.is_active

    def test_without_a_session_a_temporary_send_starts_a_new_one(self, user):
        kept = start(user)
        first = send(user, temporary=True)
        second = send(user, temporary=True)
        assert first.session.pk != second.session.pk
        assert first.session.pk != kept.pk
        assert ChatSession.objects.filter(user=user, temporary=True).count() == 2
        assert active_per_context(user) == {(None, None): 1}

    def test_the_flag_is_ignored_in_an_existing_conversation(self, user):
        kept = start(user)
        reply = send(user, session_id=kept.pk, temporary=True)
        assert reply.session.pk == kept.pk
        kept.refresh_from_db()
        assert not kept.temporary and kept.is_active

    def test_resuming_opens_it_without_making_it_active(self, user):
        kept = start(user)
        temporary, _ = services.conversation_start(user=user, temporary=True)
        resumed = services.conversation_resume(user=user, session_id=temporary.pk)
        assert resumed.pk == temporary.pk and not resumed.is_active
        kept.refresh_from_db()
        assert kept.is_active

    def test_a_model_conversation_can_be_temporary_too(self, user):
        model = ModelFactory(owner=user)
        kept = start(user, model_id=model.pk)
        reply = send(user, model_id=model.pk, temporary=True)
        assert reply.session.model_id == model.pk and reply.session.temporary
        kept.refresh_from_db()
        assert kept.is_active
        assert active_per_context(user) == {(model.pk, None): 1}

    def test_the_flag_must_be_a_boolean(self, user):
        with pytest.raises(services.DomainError) as refused:
            services.conversation_start(user=user, temporary="yes")
        assert refused.value.field == "temporary"
        assert not ChatSession.objects.exists()


@pytest.mark.django_db
class TestNeverListed:
    @pytest.fixture
    def both(self, user):
        kept = send(user, "Zanzibar notes").session
        temporary = send(user, "Zanzibar secrets", temporary=True).session
        services.conversation_update(user=user, session_id=temporary.pk, tags=["travel"])
        services.conversation_update(user=user, session_id=kept.pk, tags=["travel"])
        return kept, temporary

    def test_not_in_the_list_nor_the_sidebar(self, user, both):
        kept, temporary = both
        listed = [s.pk for s in selectors.session_list(user=user, archived=None)]
        assert listed == [kept.pk]
        assert [s.pk for s in selectors.sidebar_sessions(user=user)] == [kept.pk]
        assert [s.pk for s in selectors.sidebar_sessions(user=user, tag="travel")] == [kept.pk]
        page, _ = selectors.sidebar_group_page(user=user, group="general", offset=0)
        assert [s.pk for s in page] == [kept.pk]

    def test_not_searched_nor_counted_in_tags(self, user, both):
        kept, _ = both
        found, _ = selectors.session_search(user=user, query="Zanzibar", archived=None)
        assert [s.pk for s in found] == [kept.pk]
        found, _ = selectors.session_search(user=user, query="secrets", archived=None)
        assert found == []
        assert selectors.tag_counts(user=user, archived=None) == [{"name": "travel", "count": 1}]

    def test_not_in_the_bulk_export_but_exported_on_its_own(self, user, both, tmp_path):
        _, temporary = both
        call_command(
            "export_conversations",
            "--user",
            user.username,
            "--format",
            "markdown",
            "--output",
            str(tmp_path),
            stdout=StringIO(),
        )
        written = " ".join(path.read_text() for path in tmp_path.iterdir())
        assert "Zanzibar notes" in written and "Zanzibar secrets" not in written
        # One's own temporary conversation, asked for by its id, can still be saved.
        assert "Zanzibar secrets" in exports.export_markdown(session=temporary)

    def test_the_pages_and_the_search_box_do_not_show_it(self, user, both, web):
        kept, temporary = both
        sidebar = web.get("/sidebar", **HTMX).content.decode()
        assert str(kept.pk) in sidebar and str(temporary.pk) not in sidebar
        results = web.get("/search", {"q": "Zanzibar"}, **HTMX).content.decode()
        assert str(kept.pk) in results and str(temporary.pk) not in results

    def test_its_page_has_the_banner_and_no_share_menu(self, user, both, web):
        _, temporary = both
        page = web.get(f"/c/{temporary.pk}").content.decode()
        assert 'id="temporary-banner" role="status"' in page
        assert "data-temporary-banner hidden" not in page
        assert "data-share-menu" not in page and "data-temporary-toggle" not in page
        new = web.get("/new").content.decode()
        assert "data-temporary-toggle" in new and "data-temporary-banner hidden" in new


@pytest.mark.django_db
class TestDeletedAfterTheTTL:
    def test_the_sweep_deletes_expired_ones_with_their_messages_and_nothing_else(
        self, user, settings
    ):
        settings.TEMPORARY_CHAT_TTL = 3600
        kept = send(user).session
        age(kept, days=30)
        fresh = send(user, temporary=True).session
        expired = send(user, temporary=True).session
        age(fresh, minutes=59)
        age(expired, minutes=61)
        assert services.conversations_delete_expired_temporary(dry_run=True) == 1
        assert services.conversations_delete_expired_temporary() == 1
        assert set(ChatSession.objects.values_list("pk", flat=True)) == {kept.pk, fresh.pk}
        assert not Message.objects.filter(session_id=expired.pk).exists()
        assert services.conversations_delete_expired_temporary() == 0

    def test_a_message_sent_restarts_its_time(self, user, settings):
        settings.TEMPORARY_CHAT_TTL = 3600
        temporary = send(user, temporary=True).session
        age(temporary, hours=2)
        send(user, session_id=temporary.pk)
        assert services.conversations_delete_expired_temporary() == 0
        assert ChatSession.objects.filter(pk=temporary.pk).exists()

    def test_the_sweep_takes_a_batch_at_a_time_oldest_first(self, user):
        made = [send(user, temporary=True).session for _ in range(3)]
        for hours, session in zip((30, 50, 40), made, strict=True):
            age(session, hours=hours)
        assert services.conversations_delete_expired_temporary(limit=2) == 2
        assert list(ChatSession.objects.values_list("pk", flat=True)) == [made[0].pk]

    def test_the_cleanup_command_deletes_them_too(self, user, settings):
        settings.TEMPORARY_CHAT_TTL = 60
        kept = send(user).session
        expired = send(user, temporary=True).session
        fresh = send(user, temporary=True).session
        age(kept, days=3)
        age(expired, minutes=2)
        out = StringIO()
        call_command("cleanup_empty_sessions", "--dry-run", stdout=out)
        assert "Would delete 1 temporary conversation(s)" in out.getvalue()
        assert ChatSession.objects.count() == 3
        out = StringIO()
        call_command("cleanup_empty_sessions", stdout=out)
        assert "Deleted 1 temporary conversation(s)" in out.getvalue()
        assert set(ChatSession.objects.values_list("pk", flat=True)) == {kept.pk, fresh.pk}

    def test_deleting_one_keeps_the_tags_of_the_kept_ones(self, user):
        kept = send(user).session
        temporary = send(user, temporary=True).session
        for session in (kept, temporary):
            services.conversation_update(user=user, session_id=session.pk, tags=["x"])
        age(temporary, days=2)
        services.conversations_delete_expired_temporary()
        assert list(SessionTag.objects.values_list("session_id", flat=True)) == [kept.pk]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("dev_llm")
class TestStreams:
    async def test_a_websocket_send_with_temporary_starts_one(self):
        user = await database_sync_to_async(UserFactory)()
        kept = await database_sync_to_async(start)(user)
        socket = await open_socket(user)
        await socket.send_json_to(
            {
                "type": "send",
                "session": "2b9f6f8e-3a41-4a43-9d57-5d4b0f0a1c11",
                "content": "Off the record",
                "temporary": True,
            }
        )
        events = await receive_until(socket)
        await finish(socket)
        assert events[0]["type"] == "session" and events[0]["created"] is True
        assert events[-1]["type"] == "done"
        row = await database_sync_to_async(ChatSession.objects.get)(pk=events[0]["session"])
        assert row.temporary and not row.is_active
        still = await database_sync_to_async(ChatSession.objects.get)(pk=kept.pk)
        assert still.is_active

    async def test_a_websocket_temporary_that_is_not_a_boolean_is_refused(self):
        user = await database_sync_to_async(UserFactory)()
        socket = await open_socket(user)
        await socket.send_json_to({"type": "send", "content": "Hi", "temporary": "true"})
        events = await receive_until(socket, types=("error",))
        await finish(socket)
        assert events[-1]["code"] == "invalid"
        assert not await database_sync_to_async(ChatSession.objects.exists)()

    async def test_an_sse_body_with_temporary_starts_one(self):
        user = await database_sync_to_async(UserFactory)()
        raw, _ = await database_sync_to_async(token_issue)(user=user)
        response = await AsyncClient().post(
            "/api/chat/stream",
            data=json.dumps({"message": "Off the record", "temporary": True}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {raw}"},
        )
        assert response.status_code == 200
        body = b"".join([chunk async for chunk in response.streaming_content]).decode()
        await streaming.Engine.current().wait_idle()
        first = json.loads(body.split("\n\n")[0][6:])
        row = await database_sync_to_async(ChatSession.objects.get)(pk=first["session"])
        assert row.temporary and not row.is_active
        refused = await AsyncClient().post(
            "/api/chat/stream",
            data=json.dumps({"message": "Hi", "temporary": 1}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {raw}"},
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["fields"] == {
            "temporary": [refused.json()["error"]["message"]]
        }

    async def test_the_engine_sweep_deletes_expired_ones_and_tells_their_watchers(self, settings):
        settings.TEMPORARY_CHAT_TTL = 60
        user = await database_sync_to_async(UserFactory)()
        socket = await open_socket(user)
        await socket.send_json_to({"type": "send", "content": "Soon gone", "temporary": True})
        events = await receive_until(socket)
        session = events[0]["session"]
        await database_sync_to_async(
            lambda: ChatSession.objects.filter(pk=session).update(
                activity_at=timezone.now() - timedelta(minutes=5)
            )
        )()
        assert await streaming.Engine.current().delete_expired_temporary() == 1
        gone = await receive_until(socket, types=("error",))
        await finish(socket)
        assert gone[-1]["code"] == "not_found" and gone[-1]["session"] == session
        assert not await database_sync_to_async(ChatSession.objects.filter(Q(pk=session)).exists)()

    async def test_the_engines_periodic_sweep_deletes_them(self, settings):
        settings.RECOVERY_INTERVAL = 0.05
        settings.TEMPORARY_CHAT_TTL = 3600
        user = await database_sync_to_async(UserFactory)()

        def expired_and_fresh():
            old = send(user, temporary=True).session
            age(old, hours=2)
            return old.pk, send(user, temporary=True).session.pk

        old, fresh = await database_sync_to_async(expired_and_fresh)()
        engine = streaming.Engine.current()
        engine.start_sweeping()
        try:
            for _ in range(100):
                if not await database_sync_to_async(ChatSession.objects.filter(pk=old).exists)():
                    break
                await asyncio.sleep(0.05)
        finally:
            engine.sweeper.cancel()
        remaining = await database_sync_to_async(
            lambda: list(ChatSession.objects.values_list("pk", flat=True))
        )()
        assert remaining == [fresh]
