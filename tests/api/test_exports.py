import copy
import json

import pytest
from django.utils import timezone

from chat import services
from chat.models import ChatSession, Message
from tests.factories import ChatSessionFactory

from .conftest import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(user, model):
    session, _ = services.conversation_start(
        user=user, model_id=model.pk, title="Risk & Sizing: Q3"
    )
    reply = services.reply_start(user=user, session_id=session.pk, content="How big a position?")
    services.reply_finish(
        message_id=reply.assistant_message.pk,
        content="Risk **1%** per trade.",
        status=Message.Status.COMPLETE,
        prompt_tokens=12,
        completion_tokens=5,
    )
    session.refresh_from_db()
    return session


def test_markdown_export_is_a_named_download(api, conversation):
    response = api.get(f"/api/sessions/{conversation.pk}/export/", {"format": "markdown"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    today = timezone.now().date().isoformat()
    assert response["Content-Disposition"] == (
        f'attachment; filename="parlor-risk-sizing-q3-{today}.md"'
    )
    text = response.content.decode()
    assert text.startswith("# Risk & Sizing: Q3")
    assert "How big a position?" in text and "Risk **1%** per trade." in text
    assert f"Model: {conversation.model.name}" in text


def test_json_export_round_trips_through_import(api, user, conversation):
    response = api.get(f"/api/sessions/{conversation.pk}/export/", {"format": "json"})
    assert response.status_code == 200
    assert response["Content-Disposition"].endswith('.json"')
    data = json.loads(response.content)
    assert data["format"] == "parlor.conversation" and data["version"] == 2
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]

    imported = api.post("/api/sessions/import/", data, format="json")
    assert imported.status_code == 201, imported.content
    body = imported.json()
    assert body["id"] != str(conversation.pk)
    assert (body["title"], body["message_count"], body["is_active"]) == (
        "Risk & Sizing: Q3",
        2,
        False,
    )
    copied = Message.objects.filter(session_id=body["id"]).order_by("created_at", "id")
    assert [(m.role, m.content) for m in copied] == [
        ("user", "How big a position?"),
        ("assistant", "Risk **1%** per trade."),
    ]
    # The original active conversation stays the active one of its context.
    conversation.refresh_from_db()
    assert conversation.is_active


def test_export_defaults_to_markdown_and_refuses_unknown_formats(api, conversation):
    url = f"/api/sessions/{conversation.pk}/export/"
    assert api.get(url)["Content-Type"].startswith("text/markdown")
    assert_error(api.get(url, {"format": "pdf"}), 400)


def valid_export():
    return {
        "format": "parlor.conversation",
        "version": 1,
        "conversation": {"title": "Imported"},
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello", "status": "streaming"},
        ],
    }


def broken(change):
    data = copy.deepcopy(valid_export())
    change(data)
    return data


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"format": "other", "version": 1, "conversation": {}, "messages": []},
        broken(lambda d: d.update(version=3)),
        broken(lambda d: d.update(extra=True)),
        broken(lambda d: d.update(messages={})),
        broken(lambda d: d["messages"].append({"role": "wizard", "content": "x"})),
        broken(lambda d: d["messages"].append({"role": "user", "content": 5})),
        broken(lambda d: d["messages"].append({"role": "user", "created_at": "yesterday"})),
        broken(lambda d: d["messages"].append({"role": "user", "prompt_tokens": -1})),
        broken(lambda d: d["messages"].append("text")),
        broken(lambda d: d["conversation"].update(title=["x"])),
        broken(lambda d: d["conversation"].update(pinned="yes")),
    ],
)
def test_malformed_import_is_400_and_changes_nothing(api, user, data):
    ChatSessionFactory(user=user)
    error = assert_error(api.post("/api/sessions/import/", data, format="json"), 400)
    assert error["message"]
    assert ChatSession.objects.count() == 1
    assert not Message.objects.exists()


def test_import_of_an_interrupted_reply_marks_it_as_error(api):
    body = api.post("/api/sessions/import/", valid_export(), format="json").json()
    statuses = list(Message.objects.filter(session_id=body["id"]).values_list("status", flat=True))
    assert statuses == ["complete", "error"]


def test_import_rejects_invalid_json_body(api):
    response = api.post("/api/sessions/import/", "{", content_type="application/json")
    assert_error(response, 400, "invalid_json")
    assert not ChatSession.objects.exists()


def test_export_and_import_commands(tmp_path, user, conversation, other_user):
    from django.core.management import CommandError, call_command

    call_command("export_conversations", "--user", user.username, "--output", str(tmp_path))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].endswith(".json")
    call_command(
        "export_conversations",
        "--user",
        user.username,
        "--format",
        "markdown",
        "--output",
        str(tmp_path),
    )
    assert any(p.suffix == ".md" for p in tmp_path.iterdir())

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CommandError):
        call_command("import_conversations", "--user", other_user.username, str(bad))
    assert not ChatSession.objects.filter(user=other_user).exists()

    call_command("import_conversations", "--user", other_user.username, str(tmp_path / files[0]))
    imported = ChatSession.objects.get(user=other_user)
    assert imported.title == conversation.title and imported.message_count == 2
