"""Importing a conversation is a write of chat.services, whichever door the file comes in by."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from chat import services
from chat.models import ChatSession, Message
from chat.text import REPLACEMENT
from tests.api.conftest import bearer_client

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def message(role, content, **fields):
    return {"role": role, "content": content, "status": Message.Status.COMPLETE, **fields}


def test_an_import_is_a_new_inactive_general_conversation_with_its_counters(user):
    active, _ = services.conversation_start(user=user)
    session = services.conversation_import(
        user=user,
        title="  Imported   talk ",
        summary="Earlier: sizing.",
        pinned=True,
        created_at=T0,
        messages=[
            message("user", "How big?", created_at=T0 + timedelta(minutes=1)),
            message(
                "assistant",
                "1% of equity.",
                created_at=T0 + timedelta(minutes=2),
                prompt_tokens=10,
                completion_tokens=4,
            ),
            message("assistant", "", status=Message.Status.ERROR, error="interrupted"),
        ],
    )

    session.refresh_from_db()
    assert (session.context, session.is_active, session.pinned) == ("general", False, True)
    assert (session.title, session.title_source) == (
        "Imported talk",
        ChatSession.TitleSource.USER,
    )
    assert (session.message_count, session.prompt_tokens, session.completion_tokens) == (3, 10, 4)
    assert session.preview == "1% of equity."
    assert session.summary == "Earlier: sizing."
    # The last message had no time: it comes right after the one before, in file order.
    times = list(session.messages.order_by("created_at", "id").values_list("created_at", flat=True))
    assert times[0] == T0 + timedelta(minutes=1) and times[1] < times[2]
    assert session.last_message_at == session.activity_at == times[2]
    active.refresh_from_db()
    assert active.is_active


def test_an_import_keeps_the_file_order_when_times_go_backwards(user):
    session = services.conversation_import(
        user=user,
        created_at=T0,
        messages=[
            message("user", "first", created_at=T0 + timedelta(hours=1)),
            message("assistant", "second", created_at=T0),
        ],
    )
    contents = list(session.messages.order_by("created_at", "id").values_list("content", flat=True))
    assert contents == ["first", "second"]
    assert session.title_source == ChatSession.TitleSource.PROVISIONAL
    # Without a title it is titled like any new conversation.
    assert services.conversation_set_auto_title(session_id=session.pk, title="Auto") == "Auto"


def test_text_the_database_cannot_store_is_imported_with_a_replacement(user):
    session = services.conversation_import(
        user=user,
        title="half \ud83d emoji",
        messages=[message("user", "nul \x00 and \udc00 here", tools_used=[{"name": "\ud800"}])],
    )
    stored = Message.objects.get(session=session)
    assert stored.content == f"nul {REPLACEMENT} and {REPLACEMENT} here"
    assert stored.tools_used == [{"name": REPLACEMENT}]
    assert ChatSession.objects.get().title == f"half {REPLACEMENT} emoji"


@pytest.fixture
def calls(monkeypatch):
    """Record every call of services.conversation_import (which still runs)."""
    seen = []
    real = services.conversation_import

    def recording(**kwargs):
        seen.append(kwargs["user"])
        return real(**kwargs)

    monkeypatch.setattr(services, "conversation_import", recording)
    return seen


EXPORT = {
    "format": "parlor.conversation",
    "version": 1,
    "conversation": {"title": "From a file"},
    "messages": [{"role": "user", "content": "hi"}],
}


def test_the_api_and_the_command_import_through_the_service(user, tmp_path, calls):
    api = bearer_client(user)
    assert api.post("/api/sessions/import/", EXPORT, format="json").status_code == 201
    path = tmp_path / "export.json"
    path.write_text(json.dumps(EXPORT))
    call_command("import_conversations", "--user", user.username, str(path))
    assert calls == [user, user]
    assert ChatSession.objects.filter(title="From a file").count() == 2
