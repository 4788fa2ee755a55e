"""Management commands: seed_demo, chat_report, cleanup_empty_sessions."""

import json
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import User
from chat import reports, services
from chat.management.commands.cleanup_empty_sessions import parse_age
from chat.models import ChatSession, Message
from models_app import services as model_services
from models_app.models import Model, Run, Trade
from tests.factories import append_message

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def counts():
    return {
        model.__name__: model.objects.count() for model in (ChatSession, Message, Model, Run, Trade)
    }


def test_seed_demo_is_idempotent_and_prints_the_demo_login():
    first = run("seed_demo")
    seeded = counts()
    second = run("seed_demo")
    assert counts() == seeded
    for output in (first, second):
        assert "Demo login: demo / parlor-demo" in output
    assert authenticate(username="demo", password="parlor-demo") is not None
    assert seeded["Model"] == 2 and seeded["Run"] == 1
    assert 24 <= seeded["Trade"] <= 60
    assert seeded["ChatSession"] >= 5
    assert not Message.objects.filter(status=Message.Status.STREAMING).exists()


def test_seed_demo_builds_two_different_models_a_run_and_every_context():
    run("seed_demo")
    scalper, swing = Model.objects.order_by("id")
    assert (scalper.trading_mode, scalper.trading_style, scalper.instrument) == (
        "paper",
        "scalping",
        "stocks",
    )
    assert scalper.margin_account and scalper.allow_shorting
    assert (swing.trading_mode, swing.trading_style, swing.instrument) == (
        "live",
        "swing",
        "options",
    )
    assert not swing.margin_account and swing.allow_options_strategies
    demo_run = Run.objects.get()
    trades = demo_run.trades.all()
    assert {t.side for t in trades} == {"buy", "sell"}
    assert len({t.symbol for t in trades}) >= 3
    assert demo_run.ending_equity - demo_run.starting_capital == sum(t.realized_pnl for t in trades)
    sessions = ChatSession.objects.all()
    contexts = {(s.context, s.model_id) for s in sessions}
    assert {("general", None), ("model", scalper.pk), ("model", swing.pk), ("run", scalper.pk)} <= (
        contexts
    )
    assert all(s.message_count >= 2 and s.title for s in sessions)
    # Exactly one active session per context, as the services keep it.
    assert reports.active_duplicates() == []
    assert reports.active_counts() == {"general": 1, "model": 2, "run": 1}


def test_seed_demo_is_deterministic():
    run("seed_demo")
    trades = list(Trade.objects.order_by("id").values_list("symbol", "side", "price"))
    titles = sorted(ChatSession.objects.values_list("title", flat=True))
    ChatSession.objects.all().delete()
    Model.objects.all().delete()
    run("seed_demo")
    assert list(Trade.objects.order_by("id").values_list("symbol", "side", "price")) == trades
    assert sorted(ChatSession.objects.values_list("title", flat=True)) == titles


def test_seed_demo_with_password_and_admin():
    output = run("seed_demo", "--password", "another-pass-1", "--admin")
    assert "Demo login: demo / another-pass-1" in output
    assert "Admin login: admin / parlor-admin" in output
    admin = authenticate(username="admin", password="parlor-admin")
    assert admin is not None and admin.is_staff and admin.is_superuser
    assert authenticate(username="demo", password="another-pass-1") is not None


def test_seed_demo_without_admin_creates_no_staff():
    run("seed_demo")
    assert not User.objects.filter(is_staff=True).exists()


def test_chat_report_prints_the_figures_after_seed_demo():
    run("seed_demo")
    text = run("chat_report")
    assert "overall: OK" in text
    assert "contexts with more than one active session: 0" in text
    assert "active sessions: general 1, model 2, run 1" in text
    assert f"conversations: {ChatSession.objects.count()}" in text
    assert f"messages: {Message.objects.count()}" in text
    assert "Momentum Scalper" in text

    data = json.loads(run("chat_report", "--json"))
    assert set(data) == {
        "generated_at",
        "database",
        "health",
        "usage",
        "top_models",
        "feedback",
    }
    health, usage = data["health"], data["usage"]
    assert health["ok"] is True
    assert health["contexts_with_several_active"] == 0
    assert all(health["constraints"].values()) and len(health["constraints"]) == 5
    assert health["active_sessions"] == {"general": 1, "model": 2, "run": 1}
    assert health["empty_conversations"] == {"total": 0, "older_than_24h": 0}
    assert usage["conversations"] == ChatSession.objects.count()
    assert usage["messages"] == Message.objects.count()
    per = usage["messages_per_conversation"]
    assert per["max"] == max(ChatSession.objects.values_list("message_count", flat=True))
    assert 0 < per["avg"] <= per["max"] and 0 < per["median"] <= per["max"]
    assert usage["tokens"]["total"] == usage["tokens"]["prompt"] + usage["tokens"]["completion"]
    assert usage["tokens"]["total"] > 0
    assert [m["name"] for m in data["top_models"]] == ["Momentum Scalper", "Options Swing"]


def test_chat_report_counts_feedback_per_llm_and_per_model(user, model, other_user):
    general = services.conversation_start(user=user)[0]
    about_model = services.conversation_start(user=user, model_id=model.pk)[0]
    replies = []
    for session, llm in [(general, "llm-a"), (general, "llm-a"), (about_model, "llm-b")]:
        reply = append_message(session, "a reply", role=Message.Role.ASSISTANT)
        Message.objects.filter(pk=reply.pk).update(llm=llm)
        replies.append(reply)
    services.feedback_set(user=user, message_id=replies[0].pk, rating="up")
    services.feedback_set(user=user, message_id=replies[1].pk, rating="down", note="wrong")
    services.feedback_set(user=user, message_id=replies[2].pk, rating="up")
    data = json.loads(run("chat_report", "--json"))["feedback"]
    assert data["by_llm"] == [
        {"llm": "llm-a", "up": 1, "down": 1, "up_share": 0.5},
        {"llm": "llm-b", "up": 1, "down": 0, "up_share": 1.0},
    ]
    assert data["by_model"] == [
        {"id": model.pk, "name": model.name, "up": 1, "down": 0, "up_share": 1.0}
    ]
    text = run("chat_report")
    assert "LLM llm-a: 1 up, 1 down (50% up)" in text
    assert f"model {model.name} (#{model.pk}): 1 up, 0 down (100% up)" in text


def test_chat_report_counts_the_problems_it_looks_for(user, model, settings):
    settings.SUMMARY_THRESHOLD = 3
    old_empty, _ = services.conversation_start(user=user)
    ChatSession.objects.filter(pk=old_empty.pk).update(
        created_at=timezone.now() - timedelta(days=2)
    )
    services.conversation_start(user=user)  # a new empty one
    long = services.reply_start(user=user, content="One", model_id=model.pk)
    services.reply_finish(message_id=long.assistant_message.pk, content="x", status="complete")
    services.reply_start(user=user, content="Two", session_id=long.session.pk)  # streaming
    Message.objects.filter(status="streaming").update(
        updated_at=timezone.now() - timedelta(hours=1)
    )
    model_services.model_delete(user=user, model_id=model.pk)

    health = reports.report()["health"]
    assert health["empty_conversations"] == {"total": 2, "older_than_24h": 1}
    assert health["past_summary_threshold_without_summary"] == 1
    assert health["detached_conversations"] == 1
    assert health["streaming_messages"] == {"total": 1, "stale": 1}
    assert health["active_sessions"] == {"general": 1, "model": 0, "run": 0}


def test_chat_report_notices_a_missing_constraint(user):
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX one_active_general_session")
        constraints = reports.constraints_installed()
        text = run("chat_report")
        transaction.set_rollback(True)
    assert constraints["one_active_general_session"] is False
    assert constraints["one_active_model_session"] is True
    assert "constraints missing in the database: one_active_general_session" in text
    assert "PROBLEM" in text
    assert reports.constraints_installed()["one_active_general_session"] is True


def test_chat_report_on_an_empty_database():
    data = json.loads(run("chat_report", "--json"))
    assert data["usage"]["conversations"] == 0
    assert data["usage"]["messages_per_conversation"] == {"avg": 0.0, "median": 0.0, "max": 0}
    assert data["top_models"] == []
    assert "(none)" in run("chat_report")


def make_old_and_new(user):
    """Return (old empty, old with messages, new empty) conversations of ``user``."""
    old_empty, _ = services.conversation_start(user=user)
    old_full = services.reply_start(user=user, content="Keep me", session_id=str(uuid.uuid4()))
    new_empty, _ = services.conversation_start(user=user)
    ChatSession.objects.filter(pk__in=[old_empty.pk, old_full.session.pk]).update(
        created_at=timezone.now() - timedelta(hours=30)
    )
    return old_empty, old_full.session, new_empty


def test_cleanup_dry_run_deletes_nothing(user):
    make_old_and_new(user)
    before = counts()
    output = run("cleanup_empty_sessions", "--older-than", "24h", "--dry-run")
    assert "Would delete 1 empty conversation(s) older than 24h" in output
    assert counts() == before


def test_cleanup_deletes_exactly_the_old_empty_conversations(user):
    old_empty, old_full, new_empty = make_old_and_new(user)
    output = run("cleanup_empty_sessions", "--older-than", "24h")
    assert "Deleted 1 empty conversation(s)" in output
    assert set(ChatSession.objects.values_list("pk", flat=True)) == {old_full.pk, new_empty.pk}
    # A shorter age also takes the new empty one; never one with messages.
    ChatSession.objects.filter(pk=new_empty.pk).update(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    assert "Deleted 1" in run("cleanup_empty_sessions", "--older-than", "1m")
    assert list(ChatSession.objects.values_list("pk", flat=True)) == [old_full.pk]


@pytest.mark.parametrize("value", ["24", "abc", "-1h", "1.5h", "24x", "h", ""])
def test_cleanup_refuses_a_bad_age(user, value):
    make_old_and_new(user)
    before = counts()
    with pytest.raises(CommandError, match="--older-than must be a whole number"):
        call_command("cleanup_empty_sessions", f"--older-than={value}", stdout=StringIO())
    assert counts() == before


@pytest.mark.parametrize(("value", "expected"), [("90s", 90), ("30m", 1800), ("2d", 172800)])
def test_cleanup_accepts_every_unit(value, expected):
    assert parse_age(value) == timedelta(seconds=expected)


def test_summarize_sessions_refuses_an_id_that_is_not_a_conversation_id(db):
    with pytest.raises(CommandError, match="not a valid conversation id"):
        call_command("summarize_sessions", "--session", "nope", stdout=StringIO())
