"""chat_report --details: the conversations behind each health figure (SPEC 4.5)."""

import json
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import prompting, reports, services
from chat.models import ChatSession, Context, Message
from models_app import services as model_services
from models_app.models import Model

from ..factories import ChatSessionFactory, ModelFactory, RunFactory, UserFactory

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("chat_report", *args, stdout=out)
    return out.getvalue()


def details(*args) -> dict:
    return json.loads(run("--json", "--details", *args))["details"]


def exchanges(user, count: int, **where) -> ChatSession:
    """Start a conversation of ``count`` messages, each with a complete reply; return it."""
    session = None
    for i in range(count):
        target = {"session_id": str(session.pk if session else uuid.uuid4()), **where}
        reply = services.reply_start(user=user, content=f"Question {i} " + "x" * 150, **target)
        services.reply_finish(
            message_id=reply.assistant_message.pk, content=f"Answer {i}", status="complete"
        )
        session = reply.session
    session.refresh_from_db()
    return session


def summarize(session: ChatSession, *, covers: int) -> None:
    """Give ``session`` a summary of its first ``covers`` messages, as the summary job would."""
    until = Message.objects.filter(session=session).order_by("created_at", "id")[covers - 1]
    services.conversation_set_summary(
        session_id=session.pk,
        summary="Earlier: x.",
        until_message_id=until.pk,
        message_count=covers,
    )


def ids(found: dict) -> list[str]:
    return [row["id"] for row in found["rows"]]


@pytest.fixture
def small_windows(settings):
    """A window of 4 messages, summaries past 6 and every 2 more: conversations stay short."""
    settings.CONTEXT_MESSAGES = 4
    settings.SUMMARY_THRESHOLD = 6
    settings.SUMMARY_EVERY = 2
    return settings


@pytest.fixture
def world(small_windows):
    """Two owners, each with conversations in every state the details list."""
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    now = timezone.now()
    complete = ModelFactory(owner=bob, name="Complete")
    lacking = ModelFactory(owner=alice, name="Lacking", instrument="", allowed_order_types=[])
    unused = ModelFactory(owner=bob, name="Unused", instrument="")
    only_detached = ModelFactory(owner=bob, name="Only detached", buying_power=0)
    doomed = ModelFactory(owner=bob, name="Doomed")

    w = {"alice": alice, "bob": bob, "complete": complete, "lacking": lacking, "unused": unused}
    # Empty: one of alice's two days old, one of bob's an hour old.
    old_empty, _ = services.conversation_start(user=alice)
    ChatSession.objects.filter(pk=old_empty.pk).update(created_at=now - timedelta(days=2))
    new_empty, _ = services.conversation_start(user=bob, model_id=complete.pk)
    ChatSession.objects.filter(pk=new_empty.pk).update(created_at=now - timedelta(hours=1))
    w["empty"] = [old_empty.pk, new_empty.pk]
    # Short: 2 messages, no summary needed.
    w["short"] = exchanges(alice, 1).pk
    # Past the threshold with no summary (14 messages, the last one streaming: 10 have
    # left the window).
    w["no_summary"] = exchanges(bob, 6, model_id=complete.pk).pk
    # Past the threshold, summary lagging (16 messages: covers 4 of the 12 older than the
    # window).
    lagging = exchanges(alice, 8, model_id=lacking.pk)
    summarize(lagging, covers=4)
    w["lagging"] = lagging.pk
    # Past the threshold, summary up to date (10 messages: covers all 6 older than the
    # window).
    fresh = exchanges(alice, 5)
    summarize(fresh, covers=6)
    w["fresh"] = fresh.pk
    # Detached: a deleted model's conversation, and a deleted run's (which keeps its model).
    w["detached_model"] = exchanges(bob, 1, model_id=doomed.pk).pk
    model_services.model_delete(user=bob, model_id=doomed.pk)
    gone_run = RunFactory(model=only_detached)
    w["detached_run"] = exchanges(bob, 1, model_id=only_detached.pk, run_id=gone_run.pk).pk
    model_services.run_delete(user=bob, run_id=gone_run.pk)
    # A reply whose writer died an hour ago, and one being written now.
    stuck = services.reply_start(user=alice, content="Still there?", session_id=w["short"])
    Message.objects.filter(pk=stuck.assistant_message.pk).update(
        updated_at=now - timedelta(hours=1), content="Half an ans"
    )
    w["stuck"] = stuck.assistant_message.pk
    live = services.reply_start(user=bob, content="Go on", session_id=w["no_summary"])
    w["live"] = live.assistant_message.pk
    return w


def test_every_list_holds_exactly_the_conversations_behind_its_figure(world):
    found = details()
    assert found["multi_active"] == {"contexts": 0, "total": 0, "rows": []}

    assert ids(found["empty"]) == [str(pk) for pk in world["empty"]]  # oldest first
    old, new = found["empty"]["rows"]
    assert (old["owner"], old["context"], old["model_id"], old["message_count"]) == (
        "alice",
        "general",
        None,
        0,
    )
    assert 2 * 86400 <= old["age_seconds"] < 2 * 86400 + 60
    assert (new["owner"], new["context"], new["model_id"], new["model_name"]) == (
        "bob",
        "model",
        world["complete"].pk,
        "Complete",
    )

    # summary_due: the one without a summary (14 uncovered) before the lagging one (12).
    unsummarized = found["unsummarized"]
    assert ids(unsummarized) == [str(world["no_summary"]), str(world["lagging"])]
    nosum, lagging = unsummarized["rows"]
    assert nosum["summary"] == {
        "covers": 0,
        "until_id": None,
        "chars": 0,
        "behind": 10,
        "due": True,
    }
    assert (lagging["summary"]["covers"], lagging["summary"]["behind"]) == (4, 8)
    assert lagging["summary"]["chars"] == len("Earlier: x.")

    orphaned = found["orphaned"]
    assert sorted(ids(orphaned)) == sorted(
        [str(world["detached_model"]), str(world["detached_run"])]
    )
    by_id = {row["id"]: row for row in orphaned["rows"]}
    gone_model = by_id[str(world["detached_model"])]
    assert (gone_model["context"], gone_model["model_id"]) == ("detached", None)
    assert gone_model["detached_label"] == "Doomed (deleted model)"
    gone_run = by_id[str(world["detached_run"])]
    assert gone_run["context"] == "detached" and gone_run["model_id"] is not None
    assert gone_run["detached_label"].endswith("(deleted run)")

    # Past CONTEXT_MESSAGES (4): largest first, each with its summary's state.
    large = found["large"]
    assert ids(large) == [str(world["lagging"]), str(world["no_summary"]), str(world["fresh"])]
    assert [row["message_count"] for row in large["rows"]] == [16, 14, 10]
    fresh = large["rows"][2]
    assert fresh["summary"]["covers"] == 6 and fresh["summary"]["due"] is False
    assert fresh["tokens"] == 0

    stuck = found["stuck_streaming"]
    assert stuck["total"] == 1 and stuck["lease_seconds"] == services.REPLY_LEASE
    (row,) = stuck["rows"]
    assert (row["message_id"], row["id"], row["owner"]) == (
        world["stuck"],
        str(world["short"]),
        "alice",
    )
    assert row["chars"] == len("Half an ans") and row["stuck_seconds"] >= 3600

    models = found["incomplete_models"]
    assert models["total"] == 1
    assert models["rows"] == [
        {
            "id": world["lacking"].pk,
            "name": "Lacking",
            "owner": "alice",
            "conversations": 1,
            "missing": ["instrument", "allowed_order_types"],
        }
    ]
    assert models["required"] == list(reports.MODEL_REQUIRED)


def test_recent_is_the_twenty_latest_messages_of_model_conversations(world):
    expected = list(
        Message.objects.filter(session__in=ChatSession.objects.of_context(Context.MODEL))
        .order_by("-created_at", "-id")
        .values_list("pk", "session_id", "content")[:20]
    )
    recent = details()["recent"]["rows"]
    assert [(r["message_id"], r["conversation"]) for r in recent] == [
        (pk, str(session)) for pk, session, _ in expected
    ]
    assert [r["preview"] for r in recent] == [content[:100] for _, _, content in expected]
    assert any(len(content) > 100 for _, _, content in expected)
    assert max(len(r["preview"]) for r in recent) == 100
    assert {r["owner"] for r in recent} == {"alice", "bob"}
    # Only model conversations: no general, run or detached one.
    contexts = ChatSession.objects.in_bulk([r["conversation"] for r in recent])
    assert {s.context for s in contexts.values()} == {Context.MODEL}


def test_recent_never_misses_a_message_of_a_quiet_conversation(small_windows):
    """A newer conversation with older messages, and many conversations: still the latest."""
    user = UserFactory()
    model = ModelFactory(owner=user)
    sessions = [exchanges(user, 2, model_id=model.pk) for _ in range(3)]
    for _ in range(22):
        services.conversation_start(user=user, model_id=model.pk)  # empty, newer
    services.reply_start(user=user, content="Latest", session_id=str(sessions[0].pk))
    recent = details()["recent"]["rows"]
    expected = list(
        Message.objects.filter(session__model=model)
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)[:20]
    )
    assert [r["message_id"] for r in recent] == expected
    assert recent[0]["status"] == "streaming" and recent[1]["preview"] == "Latest"


def test_a_context_with_two_active_sessions_is_listed(world):
    alice, bob = world["alice"], world["bob"]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX one_active_model_session")
        a = ChatSessionFactory(user=alice, model=world["complete"], is_active=True)
        b = ChatSessionFactory(user=alice, model=world["complete"], is_active=True)
        ChatSessionFactory(user=bob, is_active=True)  # bob's only active general one
        found = details()["multi_active"]
        text = run("--details")
        transaction.set_rollback(True)
    assert (found["contexts"], found["total"]) == (1, 2)
    assert sorted(ids(found)) == sorted([str(a.pk), str(b.pk)])
    assert {row["owner"] for row in found["rows"]} == {"alice"}
    assert "Contexts with more than one active session: 1" in text
    assert str(a.pk) in text and str(b.pk) in text


def test_the_text_has_a_readable_section_for_each_list(world):
    text = run("--details")
    before, after = text.split("Details (at most 50 rows a list", 1)
    assert "Health" in before and "Usage" in before
    assert "none (the one_active_* constraints forbid them; checked on the data)" in after
    assert "Empty conversations: 2, oldest first" in after
    assert "Past 6 messages without an up-to-date summary: 2, most uncovered first" in after
    assert "Conversations of deleted models or runs: 2, oldest first" in after
    assert "was Doomed (deleted model)" in after
    assert "Past 4 messages (the recent window): 3, largest first" in after
    assert "summary covers 6 (11 characters), up to date" in after
    assert "no summary, 10 messages behind: due" in after
    assert "Replies streaming with no writer (not written for 6 s): 1" in after
    assert f"reply #{world['stuck']} not written for 1h" in after
    lacking = world["lacking"].pk
    assert (
        f"model #{lacking} Lacking (owner alice): 1 conversation(s); missing instrument, " in after
    )
    assert "Latest 20 messages of model conversations, newest first" in after
    empty_line = next(line for line in after.splitlines() if str(world["empty"][0]) in line)
    assert "  alice  general  (untitled)  2d 0h old  0 messages" in empty_line
    # Without --details, nothing of it.
    plain = run()
    assert "Details" not in plain and "Question 0" not in plain
    assert "details" not in json.loads(run("--json"))


def test_each_list_is_bounded_and_says_how_many_it_left_out(world):
    found = details("--limit", "1")
    assert found["limit"] == 1
    for name in ("empty", "unsummarized", "orphaned", "large"):
        assert len(found[name]["rows"]) == 1
    assert (found["empty"]["total"], found["large"]["total"]) == (2, 3)
    assert ids(found["large"]) == [str(world["lagging"])]
    assert len(found["recent"]["rows"]) == 20  # the recent list has its own size
    text = run("--details", "--limit", "1")
    assert "… showing 1 of 3" in text and "… showing 1 of 2" in text


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_a_limit_below_one_is_refused(limit):
    with pytest.raises(CommandError, match="--limit must be at least 1"):
        run("--details", "--limit", limit)


def test_on_an_empty_database_every_list_is_empty():
    found = details()
    for name in ("multi_active", "empty", "unsummarized", "orphaned", "large"):
        assert (found[name]["total"], found[name]["rows"]) == (0, [])
    assert found["stuck_streaming"]["rows"] == found["incomplete_models"]["rows"] == []
    assert found["recent"] == {"rows": []}
    assert "Latest 0 messages of model conversations, newest first\n  (none)" in run("--details")


def test_the_number_of_queries_does_not_grow_with_the_data(world, django_assert_max_num_queries):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            reports.report(details_limit=50)
        return len(captured.captured_queries)

    queries()  # the first also asks SQLite for its JSON support, once a connection
    before = queries()
    # More of every kind, other owners and models included.
    for _ in range(3):
        owner = UserFactory()
        model = ModelFactory(owner=owner, instrument="", allowed_order_types=[])
        exchanges(owner, 7, model_id=model.pk)
        services.conversation_start(user=owner)
        gone = ModelFactory(owner=owner)
        exchanges(owner, 1, model_id=gone.pk)
        model_services.model_delete(user=owner, model_id=gone.pk)
        stuck = services.reply_start(user=owner, content="?", model_id=model.pk)
        Message.objects.filter(pk=stuck.assistant_message.pk).update(
            updated_at=timezone.now() - timedelta(minutes=5)
        )
    found = reports.report(details_limit=50)["details"]
    assert found["incomplete_models"]["total"] == 4 and found["stuck_streaming"]["total"] == 4
    assert queries() == before
    # One aggregate, then one query a list (none for multi_active when there is nothing).
    health = reports.report()["health"]
    with django_assert_max_num_queries(8):
        reports.details(health=health, limit=50)


@pytest.mark.parametrize("threshold,window,every", [(60, 30, 20), (6, 4, 2), (3, 30, 20)])
def test_the_unsummarized_filter_is_summary_dues_rule(settings, threshold, window, every):
    settings.SUMMARY_THRESHOLD, settings.CONTEXT_MESSAGES = threshold, window
    settings.SUMMARY_EVERY = every
    user = UserFactory()
    pairs = [(m, s) for m in range(0, 2 * threshold + window + every, 3) for s in range(0, m, 4)]
    for m, s in pairs:
        ChatSessionFactory(user=user, message_count=m, summary_message_count=s)
    matched = set(
        ChatSession.objects.filter(reports.summary_due_filter()).values_list(
            "message_count", "summary_message_count"
        )
    )
    expected = {
        (m, s) for m, s in pairs if prompting.summary_due(message_count=m, summary_message_count=s)
    }
    assert expected and matched == expected


def test_a_model_lacking_each_required_field_is_listed_with_it(user):
    broken = {
        "name": {"name": ""},
        "trading_mode": {"trading_mode": ""},
        "trading_style": {"trading_style": "yolo"},
        "instrument": {"instrument": ""},
        "buying_power": {"buying_power": 0},
        "allowed_order_types": {"allowed_order_types": []},
    }
    assert set(broken) == set(reports.MODEL_REQUIRED)
    made = {}
    for field, values in broken.items():
        made[field] = ModelFactory(owner=user, **values)
        ChatSessionFactory(user=user, model=made[field])
    ChatSessionFactory(user=user, model=ModelFactory(owner=user))  # complete: not listed
    rows = {row["id"]: row["missing"] for row in details()["incomplete_models"]["rows"]}
    assert rows == {model.pk: [field] for field, model in made.items()}
    assert Model.objects.count() == 7
