"""Health and usage figures over every user's conversations, for operators (chat_report).

Selectors, not services: they only read. Each function answers one question and returns
plain data (ints, lists, dicts) so the command can print it as text or JSON.
"""

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, Exists, Max, OuterRef, Sum
from django.utils import timezone

from models_app.models import Model

from .models import ChatSession, Context, Message

# The constraints that enforce invariant 1 and the session's consistency rules.
EXPECTED_CONSTRAINTS = (
    "one_active_general_session",
    "one_active_model_session",
    "one_active_run_session",
    "session_run_implies_model",
    "session_detached_is_inactive",
)
EMPTY_AGE = timedelta(hours=24)
STALE_STREAMING_AGE = timedelta(minutes=10)
TOP_MODELS = 5


def active_duplicates() -> list[dict]:
    """Return the contexts that have more than one active session (should be none)."""
    rows = (
        ChatSession.objects.filter(is_active=True)
        .values("user_id", "model_id", "run_id")
        .annotate(active=Count("id"))
        .filter(active__gt=1)
        .order_by("user_id", "model_id", "run_id")
    )
    return [dict(row) for row in rows]


def constraints_installed() -> dict[str, bool]:
    """Return, for each expected constraint, whether the database really has it."""
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, ChatSession._meta.db_table)
    return {name: name in found for name in EXPECTED_CONSTRAINTS}


def active_counts() -> dict[str, int]:
    """Return how many sessions are active in general, model and run contexts."""
    active = ChatSession.objects.filter(is_active=True)
    return {
        kind.value: active.of_context(kind).count()
        for kind in (Context.GENERAL, Context.MODEL, Context.RUN)
    }


def _empty_sessions():
    return ChatSession.objects.filter(message_count=0).exclude(
        Exists(Message.objects.filter(session=OuterRef("pk")))
    )


def empty_sessions(*, now=None) -> dict[str, int]:
    """Return how many conversations have no message, and how many of those are old."""
    now = now or timezone.now()
    empty = _empty_sessions()
    return {
        "total": empty.count(),
        "older_than_24h": empty.filter(created_at__lt=now - EMPTY_AGE).count(),
    }


def unsummarized_count() -> int:
    """Return how many conversations passed SUMMARY_THRESHOLD and still have no summary."""
    return ChatSession.objects.filter(
        message_count__gt=settings.SUMMARY_THRESHOLD, summary=""
    ).count()


def detached_count() -> int:
    """Return how many conversations belonged to a model or run that was deleted."""
    return ChatSession.objects.of_context(Context.DETACHED).count()


def streaming_leftovers(*, now=None) -> dict[str, int]:
    """Return how many replies are still ``streaming``, and how many look abandoned."""
    now = now or timezone.now()
    streaming = Message.objects.filter(status=Message.Status.STREAMING)
    return {
        "total": streaming.count(),
        "stale": streaming.filter(updated_at__lt=now - STALE_STREAMING_AGE).count(),
    }


def usage() -> dict:
    """Return totals: conversations, messages, messages per conversation, tokens."""
    totals = ChatSession.objects.aggregate(
        conversations=Count("id"),
        max_messages=Max("message_count"),
        messages_in_sessions=Sum("message_count"),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
    )
    conversations = totals["conversations"]
    median = 0.0
    if conversations:
        # The median from at most two rows of an ordered query, not the whole column.
        counts = ChatSession.objects.order_by("message_count").values_list(
            "message_count", flat=True
        )
        middle = conversations // 2
        if conversations % 2:
            median = float(counts[middle])
        else:
            low, high = counts[middle - 1 : middle + 1]
            median = (low + high) / 2
    prompt = totals["prompt_tokens"] or 0
    completion = totals["completion_tokens"] or 0
    return {
        "conversations": conversations,
        "messages": Message.objects.count(),
        "messages_per_conversation": {
            "avg": round((totals["messages_in_sessions"] or 0) / conversations, 2)
            if conversations
            else 0.0,
            "median": median,
            "max": totals["max_messages"] or 0,
        },
        "tokens": {"prompt": prompt, "completion": completion, "total": prompt + completion},
    }


def top_models(*, limit: int = TOP_MODELS) -> list[dict]:
    """Return the models with the most conversations (then messages), most active first."""
    rows = (
        Model.objects.annotate(
            conversations=Count("chat_sessions"),
            messages=Sum("chat_sessions__message_count"),
        )
        .filter(conversations__gt=0)
        .order_by("-conversations", "-messages", "id")
        .values("id", "name", "owner__username", "conversations", "messages")[:limit]
    )
    return [
        {
            "id": row["id"],
            "name": row["name"],
            "owner": row["owner__username"],
            "conversations": row["conversations"],
            "messages": row["messages"] or 0,
        }
        for row in rows
    ]


def report(*, now=None) -> dict:
    """Return every health and usage figure as one JSON-ready dict."""
    now = now or timezone.now()
    duplicates = active_duplicates()
    constraints = constraints_installed()
    return {
        "generated_at": now.isoformat(),
        "database": connection.vendor,
        "health": {
            "ok": not duplicates and all(constraints.values()),
            "contexts_with_several_active": len(duplicates),
            "several_active_details": duplicates,
            "constraints": constraints,
            "active_sessions": active_counts(),
            "empty_conversations": empty_sessions(now=now),
            "past_summary_threshold_without_summary": unsummarized_count(),
            "summary_threshold": settings.SUMMARY_THRESHOLD,
            "detached_conversations": detached_count(),
            "streaming_messages": streaming_leftovers(now=now),
        },
        "usage": usage(),
        "top_models": top_models(),
    }
