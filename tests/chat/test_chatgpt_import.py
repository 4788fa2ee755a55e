"""Importing a ChatGPT data export: the tree as ChatGPT had it, once per user, all or
nothing for a file that is not an export (SPEC 4.6, POST /api/import/chatgpt/)."""

import copy
import io
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from chat import chatgpt, exports, services
from chat.exceptions import DomainError
from chat.models import ChatSession, Message

from .chatgpt_export import (
    TRIP_ID,
    TRIP_TREE,
    UNTITLED_ID,
    UNTITLED_TREE,
    conversations,
    export_bytes,
    export_zip,
    tree,
)

T0 = datetime.fromtimestamp(1700000000, UTC)


def imported(user) -> dict[str, ChatSession]:
    return {
        s.imported_from.removeprefix(chatgpt.SOURCE): s
        for s in ChatSession.objects.filter(user=user)
    }


@pytest.mark.django_db
def test_an_export_becomes_conversations_with_chatgpts_tree_and_current_path(user):
    active, _ = services.conversation_start(user=user)
    result = services.import_chatgpt(user=user, file=export_bytes())

    assert (result.imported, result.skipped, result.errors) == (2, 0, [])
    sessions = imported(user)
    trip, untitled = sessions[TRIP_ID], sessions[UNTITLED_ID]
    # Left out: the empty root, the system message, the hidden custom instructions, the
    # tool's output and the hidden message; the edited question and the regenerated reply
    # are siblings; the path follows current_node to the older reply.
    assert tree(trip) == TRIP_TREE
    assert tree(untitled) == UNTITLED_TREE
    assert (trip.title, trip.title_source) == ("Trip to Portugal", ChatSession.TitleSource.USER)
    assert (untitled.title, untitled.title_source) == ("", ChatSession.TitleSource.PROVISIONAL)
    assert (trip.context, trip.is_active, trip.message_count) == ("general", False, 5)
    assert trip.created_at == T0
    assert trip.last_message_at == T0 + timedelta(seconds=220)
    assert trip.preview == "About 385 metres."
    times = list(trip.messages.order_by("id").values_list("created_at", flat=True))
    assert times[0] == T0 + timedelta(seconds=10)
    assert times[-1] == T0 + timedelta(seconds=300)
    llms = list(trip.messages.order_by("id").values_list("llm", flat=True))
    assert llms == ["", "gpt-4o", "", "gpt-4o", "", "gpt-4o", "gpt-4o", "o3"]
    # A reply without a time comes right after its question.
    question, reply = untitled.messages.order_by("id")
    assert question.created_at < reply.created_at < question.created_at + timedelta(seconds=1)
    active.refresh_from_db()
    assert active.is_active


@pytest.mark.django_db
def test_an_imported_conversation_exports_and_imports_again_as_the_same_tree(user):
    services.import_chatgpt(user=user, file=export_bytes())
    for session in list(ChatSession.objects.filter(user=user)):
        data = json.loads(json.dumps(exports.export_json(session=session)))
        header, messages = exports.check_import(data)
        copied = services.conversation_import(user=user, messages=messages, **header)
        assert tree(copied) == tree(session)
        assert (copied.title, copied.created_at) == (session.title, session.created_at)
        assert copied.imported_from == ""


@pytest.mark.django_db
def test_a_second_import_of_the_same_export_skips_every_conversation(user):
    services.import_chatgpt(user=user, file=export_bytes())
    counts = ChatSession.objects.count(), Message.objects.count()

    again = services.import_chatgpt(user=user, file=export_zip())

    assert (again.imported, again.skipped, again.errors) == (0, 2, [])
    assert (ChatSession.objects.count(), Message.objects.count()) == counts


@pytest.mark.django_db
def test_a_conversation_twice_in_one_file_is_imported_once(user):
    trip = conversations()[0]
    result = services.import_chatgpt(user=user, file=export_bytes([trip, trip]))
    assert (result.imported, result.skipped) == (1, 1)


@pytest.mark.django_db
def test_the_export_zip_is_read_with_conversations_json_in_a_folder(user):
    result = services.import_chatgpt(user=user, file=io.BytesIO(export_zip()))
    assert result.imported == 2
    assert tree(imported(user)[TRIP_ID]) == TRIP_TREE


def broken_conversations() -> list[dict]:
    cycle = copy.deepcopy(conversations()[0])
    cycle.update(id="cycle", conversation_id="cycle", title="Going round")
    cycle["mapping"]["a-root"]["parent"] = "a-a2"
    orphan = copy.deepcopy(conversations()[1])
    orphan.update(id="orphan", conversation_id="orphan", title=None)
    orphan["mapping"]["b-u1"]["parent"] = "not-there"
    no_id = copy.deepcopy(conversations()[1])
    no_id.update(id=None, conversation_id=None, title="Nameless")
    return [cycle, orphan, no_id]


@pytest.mark.django_db
def test_a_broken_conversation_is_reported_and_the_others_are_imported(user):
    good = conversations()
    result = services.import_chatgpt(
        user=user, file=export_bytes([good[0], *broken_conversations(), good[1]])
    )

    assert (result.imported, result.skipped) == (2, 0)
    assert result.errors == [
        {"conversation": "Going round", "error": "Its messages' parents form a cycle."},
        {
            "conversation": "orphan",
            "error": "The parent of its node b-u1 is not one of its messages.",
        },
        {"conversation": "Nameless", "error": "It has no valid conversation id."},
    ]
    assert set(imported(user)) == {TRIP_ID, UNTITLED_ID}


NOT_AN_EXPORT = {
    "not JSON": b"conversations, but not as JSON",
    "empty": b"",
    "an object": b'{"conversations": []}',
    "a list of other things": b'[{"title": "no mapping"}]',
    "a list of numbers": b"[1, 2]",
    "JSON cut short after a conversation": export_bytes()[:-200],
    "a zip without conversations.json": export_zip(name="other.json"),
    "a damaged zip": export_zip()[:100],
}


@pytest.mark.django_db
@pytest.mark.parametrize("data", NOT_AN_EXPORT.values(), ids=NOT_AN_EXPORT.keys())
def test_a_file_that_is_not_a_chatgpt_export_is_refused_whole(user, data):
    with pytest.raises(DomainError) as raised:
        services.import_chatgpt(user=user, file=data)
    assert (raised.value.code, raised.value.field) == ("invalid", "file")
    assert ChatSession.objects.count() == 0


def test_a_conversation_larger_than_the_limit_is_refused(monkeypatch):
    monkeypatch.setattr(chatgpt, "CONVERSATION_MAX_BYTES", 2000)
    with pytest.raises(DomainError, match="larger than"):
        list(chatgpt.read_export(export_bytes()))


def fields_of(messages: dict, **conversation) -> dict:
    """Return the import fields of a one-branch conversation of ``messages`` (id: message)."""
    keys = list(messages)
    mapping = {
        key: {"id": key, "message": message, "parent": keys[i - 1] if i else None}
        for i, (key, message) in enumerate(messages.items())
    }
    return chatgpt.conversation_fields({"mapping": mapping, **conversation})


def message(role, content, **fields):
    return {"author": {"role": role}, "content": content, "recipient": "all", **fields}


def test_what_parlor_cannot_show_is_a_note_and_code_is_fenced():
    fields = fields_of(
        {
            "q": message(
                "user",
                {
                    "content_type": "multimodal_text",
                    "parts": [
                        {"content_type": "image_asset_pointer", "asset_pointer": "sediment://x"},
                        {"content_type": "audio_transcription", "text": "Spoken words."},
                        {"content_type": "audio_asset_pointer", "asset_pointer": "y"},
                    ],
                },
            ),
            "call": message(
                "assistant",
                {"content_type": "text", "parts": ['{"query": "weather"}']},
                recipient="browser",
            ),
            "out": message(
                "assistant", {"content_type": "execution_output", "text": "has ``` inside"}
            ),
            "empty": message("assistant", {"content_type": "text", "parts": ["", " "]}),
            "quote": message(
                "assistant",
                {"content_type": "tether_quote", "text": "Quoted.", "title": "A page"},
            ),
        },
        current_node="empty",
    )
    assert [(m["key"], m["parent"], m["content"]) for m in fields["messages"]] == [
        ("q", None, "[image omitted]\n\nSpoken words.\n\n[audio omitted]"),
        ("out", "q", "````\nhas ``` inside\n````"),
        ("quote", "out", "> Quoted.\n>\n> — A page"),
    ]
    # The current node was left out: the path ends at its nearest kept ancestor.
    assert fields["current_leaf"] == "out"


def test_without_a_known_current_node_the_path_ends_at_the_newest_leaf():
    trip = conversations()[0]
    trip["current_node"] = "gone"
    fields = chatgpt.conversation_fields(trip)
    assert fields["current_leaf"] is None  # conversation_import's default: the last
    assert fields["messages"][-1]["key"] == "a-a2-regen"


# Concurrency -----------------------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_imports_of_one_file_at_once_write_each_conversation_once(user):
    """The second waits on the unique index for the first to commit, then skips."""
    written, go = threading.Event(), threading.Event()
    results, failures = {}, []

    def first_pauses(read, total):
        written.set()
        go.wait(30)

    def work(name, progress):
        try:
            results[name] = services.import_chatgpt(
                user=user, file=export_bytes(), progress=progress
            )
        except Exception as exc:  # reported below
            failures.append(repr(exc))
        finally:
            connection.close()

    first = threading.Thread(target=work, args=("first", first_pauses))
    first.start()
    assert written.wait(30)
    second = threading.Thread(target=work, args=("second", None))
    second.start()
    second.join(1)
    assert second.is_alive()  # blocked on the first's uncommitted conversation
    go.set()
    first.join(30)
    second.join(30)

    assert failures == []
    assert (results["first"].imported, results["first"].skipped) == (2, 0)
    assert (results["second"].imported, results["second"].skipped) == (0, 2)
    assert ChatSession.objects.filter(user=user).count() == 2


# The command -----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_command_imports_with_a_progress_bar_and_a_summary(user, tmp_path):
    path = tmp_path / "export.zip"
    path.write_bytes(export_zip())
    out, err = io.StringIO(), io.StringIO()

    call_command("import_chatgpt", str(path), user=user.username, stdout=out, stderr=err)

    assert out.getvalue().strip() == (
        "2 conversation(s) imported, 0 skipped (imported before), 0 could not be read."
    )
    assert "Importing" in err.getvalue()
    assert set(imported(user)) == {TRIP_ID, UNTITLED_ID}


@pytest.mark.django_db
def test_the_command_names_the_conversations_it_could_not_read(user, tmp_path):
    path = tmp_path / "conversations.json"
    path.write_bytes(export_bytes(broken_conversations()))
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "import_chatgpt", str(path), "--no-progress", user=user.username, stdout=out, stderr=err
    )
    assert "0 conversation(s) imported, 0 skipped" in out.getvalue()
    assert "Not imported: Going round: Its messages' parents form a cycle." in err.getvalue()


@pytest.mark.django_db
def test_the_command_refuses_an_unknown_user_an_unreadable_file_and_a_foreign_one(user, tmp_path):
    good = tmp_path / "conversations.json"
    good.write_bytes(export_bytes())
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("import_chatgpt", str(good), user="nobody")
    with pytest.raises(CommandError, match="cannot be read"):
        call_command("import_chatgpt", str(tmp_path / "missing.json"), user=user.username)
    foreign = tmp_path / "notes.json"
    foreign.write_bytes(b'{"notes": []}')
    with pytest.raises(CommandError, match="JSON object.*Nothing was imported"):
        call_command("import_chatgpt", str(foreign), "--no-progress", user=user.username)
    assert ChatSession.objects.count() == 0


# The page --------------------------------------------------------------------------


def upload(data: bytes, name: str = "conversations.json"):
    file = io.BytesIO(data)
    file.name = name
    return file


@pytest.mark.django_db
def test_the_import_page_asks_for_a_file_of_a_signed_in_person(client, web):
    signed_out = client.get("/import/chatgpt")
    assert signed_out.status_code == 302
    assert signed_out["Location"].startswith("/accounts/login/?next=/import/chatgpt")

    page = web.get("/import/chatgpt")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'enctype="multipart/form-data"' in html
    assert '<label for="id_file">ChatGPT export</label>' in html
    assert 'type="file" name="file"' in html and "csrfmiddlewaretoken" in html
    assert "<script" not in html.split("</head>")[1] and "style=" not in html


@pytest.mark.django_db
def test_uploading_an_export_on_the_page_shows_what_was_imported(user, web):
    page = web.post("/import/chatgpt", {"file": upload(export_zip(), "export.zip")})
    assert page.status_code == 200
    assert "2 conversations imported, 0 skipped" in page.content.decode()
    assert set(imported(user)) == {TRIP_ID, UNTITLED_ID}

    good = conversations()
    again = web.post(
        "/import/chatgpt", {"file": upload(export_bytes([*good, *broken_conversations()]))}
    )
    html = again.content.decode()
    assert "0 conversations imported, 2 skipped (imported before), 3 could not be read" in html
    assert "<strong>Going round</strong>: Its messages&#x27; parents form a cycle." in html
    assert 'href="/">Go to your chats</a>' in html


@pytest.mark.django_db
def test_the_page_says_why_a_file_is_refused(web):
    page = web.post("/import/chatgpt", {"file": upload(b"[1, 2]")})
    assert page.status_code == 400
    assert "Item 1 of the list is not a ChatGPT conversation" in page.content.decode()
    assert web.post("/import/chatgpt", {}).status_code == 400
    assert ChatSession.objects.count() == 0
