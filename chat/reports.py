"""Health and usage figures over every user's conversations, for operators (chat_report).

Selectors, not services: they only read. Each function answers one question and returns
plain data (ints, lists, dicts) so the command can print it as text or JSON.
"""

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    Max,
    OuterRef,
    Q,
    Sum,
    Window,
)
from django.db.models.functions import Left, Length
from django.utils import timezone

from models_app.models import Model

from . import prompting
from .models import ChatSession, Context, Feedback, Message
from .services import REPLY_LEASE

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


def empty_filter() -> Q:
    """Return the filter of a conversation without messages: its counter, and no row."""
    return Q(message_count=0) & ~Exists(Message.objects.filter(session=OuterRef("pk")))


def empty_sessions(*, now=None) -> dict[str, int]:
    """Return how many conversations have no message, and how many of those are old."""
    now = now or timezone.now()
    return ChatSession.objects.filter(empty_filter()).aggregate(
        total=Count("pk"),
        older_than_24h=Count("pk", filter=Q(created_at__lt=now - EMPTY_AGE)),
    )


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


def feedback() -> dict:
    """Return users' ratings of replies counted per LLM and per model (reply quality).

    ``by_model`` counts the replies of model conversations (general ones have no model);
    each row has ``up``, ``down`` and ``up_share`` (up / rated, 0-1).
    """
    counts = {
        "up": Count("id", filter=Q(rating=Feedback.Rating.UP)),
        "down": Count("id", filter=Q(rating=Feedback.Rating.DOWN)),
    }

    def rows(*keys):
        found = Feedback.objects.values(*keys).annotate(**counts).order_by(*keys)
        for row in found:
            rated = row["up"] + row["down"]
            row["up_share"] = round(row["up"] / rated, 3) if rated else 0.0
            yield row

    by_llm = [
        {"llm": row["message__llm"] or settings.LLM_MODEL, **_votes(row)}
        for row in rows("message__llm")
    ]
    by_model = [
        {"id": row["message__session__model"], "name": row["message__session__model__name"]}
        | _votes(row)
        for row in rows("message__session__model", "message__session__model__name")
        if row["message__session__model"] is not None
    ]
    return {"by_llm": by_llm, "by_model": by_model}


def _votes(row: dict) -> dict:
    return {"up": row["up"], "down": row["down"], "up_share": row["up_share"]}


# The conversations behind the figures (chat_report --details, SPEC 4.5). A constant
# number of queries whatever the data size: the health figures and one more aggregate (one
# pass over the conversations) count what each list matches, then each list reads its first
# ``limit`` rows with the owner and model joined in (no query per row). The counters
# (message_count, summary_message_count) stand for the messages: no count over the message
# table. At 100,000 conversations each list of conversations is one sequential scan of
# chat_chatsession and a top-N sort (EXPLAIN ANALYZE on PostgreSQL: 15-25 ms each on the
# 2-core machine), the replies and the recent messages go through indexes. An index on
# message_count would serve ``large`` and ``unsummarized``, at the cost of one more index
# write with every message (the counter changes with each): not worth it for this command.

DETAILS_LIMIT = 50
RECENT_MESSAGES = 20
RECENT_PREVIEW_CHARS = 100
# What a list reads of a conversation: never its summary or preview text.
SESSION_FIELDS = (
    "id",
    "user__username",
    "model__name",
    "run",
    "detached_label",
    "title",
    "created_at",
    "activity_at",
    "message_count",
)
# The fields of a model's configuration that the prompt relies on
# (prompting.model_configuration) and that a model can lack, each with the filter of
# lacking it. The others cannot be missing or are optional on purpose: the flags are
# booleans that always hold a value, an empty ``llm`` means LLM_MODEL by design, and the
# description, instructions and rules are the owner's free text, which the prompt
# truthfully calls "(none)" when empty.
MODEL_REQUIRED = {
    "name": Q(name=""),
    "trading_mode": ~Q(trading_mode__in=Model.TradingMode.values),
    "trading_style": ~Q(trading_style__in=Model.TradingStyle.values),
    "instrument": Q(instrument=""),
    "buying_power": Q(buying_power__lte=0),
    "allowed_order_types": Q(allowed_order_types=[]),
}


def summary_due_filter() -> Q:
    """Return prompting.summary_due's rule as a filter over the same counters.

    Past SUMMARY_THRESHOLD messages, SUMMARY_EVERY or more messages have left the window
    of CONTEXT_MESSAGES beyond what the summary covers (tests/chat/test_report_details.py
    holds the two together).
    """
    return Q(message_count__gt=settings.SUMMARY_THRESHOLD) & Q(
        message_count__gte=F("summary_message_count")
        + settings.CONTEXT_MESSAGES
        + settings.SUMMARY_EVERY
    )


def _seconds(now, then) -> int:
    return max(int((now - then).total_seconds()), 0)


def _session_row(session: ChatSession, now) -> dict:
    """Return what every list says of a conversation: whose, about what, how old, how long."""
    return {
        "id": str(session.pk),
        "owner": session.user.username,
        "context": session.context.value,
        "model_id": session.model_id,
        "model_name": session.model.name if session.model_id else None,
        "run_id": session.run_id,
        "detached_label": session.detached_label,
        "title": session.title,
        "created_at": session.created_at.isoformat(),
        "age_seconds": _seconds(now, session.created_at),
        "last_activity_at": session.activity_at.isoformat(),
        "message_count": session.message_count,
    }


def _session_list(
    queryset, *, total: int, order_by, limit: int, now, fields=(), extra=None
) -> dict:
    """Return {"total", "rows"}: the first ``limit`` conversations of ``queryset``.

    ``fields`` are read besides SESSION_FIELDS; ``extra(session)`` adds to each row. No
    query when ``total`` says there is nothing to list.
    """
    sessions = []
    if total:
        sessions = list(
            queryset.select_related("user", "model")
            .only(*SESSION_FIELDS, *fields)
            .order_by(*order_by)[:limit]
        )
    return {
        "total": total,
        "rows": [_session_row(s, now) | (extra(s) if extra else {}) for s in sessions],
    }


def multi_active_details(*, duplicates: list[dict], limit: int, now) -> dict:
    """Return the active conversations of the contexts that have more than one.

    The constraints one_active_* make them impossible; this check proves it on the data.
    ``duplicates`` is active_duplicates(); no query when it is empty.
    """
    if not duplicates:
        return {"contexts": 0, "total": 0, "rows": []}
    contexts = Q(pk__in=[])
    for row in duplicates[:limit]:
        model = Q(model_id=row["model_id"]) if row["model_id"] else Q(model__isnull=True)
        run = Q(run_id=row["run_id"]) if row["run_id"] else Q(run__isnull=True)
        contexts |= Q(user_id=row["user_id"]) & model & run
    found = _session_list(
        ChatSession.objects.filter(contexts, is_active=True),
        total=sum(row["active"] for row in duplicates),
        order_by=("user_id", "model_id", "run_id", "-activity_at", "id"),
        limit=limit,
        now=now,
    )
    return {"contexts": len(duplicates), **found}


def details_totals() -> dict[str, int]:
    """Return how many conversations are past the summary rule and the window, in one pass.

    The other lists' totals are health figures already (empty, detached).
    """
    return ChatSession.objects.aggregate(
        unsummarized=Count("pk", filter=summary_due_filter()),
        large=Count("pk", filter=Q(message_count__gt=settings.CONTEXT_MESSAGES)),
    )


def empty_details(*, total: int, limit: int, now) -> dict:
    """Return the conversations without a message, oldest first."""
    return _session_list(
        ChatSession.objects.filter(empty_filter()),
        total=total,
        order_by=("created_at", "id"),
        limit=limit,
        now=now,
    )


def _summary_state(session: ChatSession) -> dict:
    """Return how far a conversation's summary covers it, from its counters."""
    covers = session.summary_message_count
    return {
        "summary": {
            "covers": covers,
            "until_id": session.summary_until_id,
            "chars": session.summary_chars,
            # Messages older than the recent window that the summary does not cover.
            "behind": max(session.message_count - settings.CONTEXT_MESSAGES - covers, 0),
            "due": prompting.summary_due(
                message_count=session.message_count, summary_message_count=covers
            ),
        },
    }


SUMMARY_FIELDS = ("summary_message_count", "summary_until_id")


def unsummarized_details(*, total: int, limit: int, now) -> dict:
    """Return the conversations whose summary is due (summary_due), most uncovered first."""
    queryset = ChatSession.objects.filter(summary_due_filter()).annotate(
        uncovered=F("message_count") - F("summary_message_count"),
        summary_chars=Length("summary"),
    )
    return _session_list(
        queryset,
        total=total,
        order_by=("-uncovered", "id"),
        limit=limit,
        now=now,
        fields=SUMMARY_FIELDS,
        extra=_summary_state,
    )


def orphaned_details(*, total: int, limit: int, now) -> dict:
    """Return the conversations of deleted models or runs (detached), oldest first."""
    return _session_list(
        ChatSession.objects.of_context(Context.DETACHED),
        total=total,
        order_by=("created_at", "id"),
        limit=limit,
        now=now,
    )


def _size(session: ChatSession) -> dict:
    return _summary_state(session) | {
        "tokens": session.prompt_tokens + session.completion_tokens,
    }


def large_details(*, total: int, limit: int, now) -> dict:
    """Return the conversations past CONTEXT_MESSAGES, largest first, with their summary."""
    queryset = ChatSession.objects.filter(message_count__gt=settings.CONTEXT_MESSAGES).annotate(
        summary_chars=Length("summary")
    )
    return _session_list(
        queryset,
        total=total,
        order_by=("-message_count", "id"),
        limit=limit,
        now=now,
        fields=(*SUMMARY_FIELDS, "prompt_tokens", "completion_tokens"),
        extra=_size,
    )


def stuck_streaming_details(*, limit: int, now) -> dict:
    """Return the replies left ``streaming`` longer than REPLY_LEASE, oldest write first.

    Not written for that long, their writer is gone: the recovery sweep of any live process
    ends them as interrupted within seconds, so rows here mean none is running. Read
    through the partial index of streaming replies.
    """
    cutoff = now - timedelta(seconds=REPLY_LEASE)
    # Few rows whatever the data size (replies being written): the total is a window count.
    replies = list(
        Message.objects.filter(status=Message.Status.STREAMING, updated_at__lt=cutoff)
        .select_related("session__user", "session__model")
        .only(
            "id",
            "created_at",
            "updated_at",
            *(f"session__{name}" for name in SESSION_FIELDS),
        )
        .annotate(chars=Length("content"), matched=Window(Count("pk")))
        .order_by("updated_at", "id")[:limit]
    )
    return {
        "total": replies[0].matched if replies else 0,
        "lease_seconds": REPLY_LEASE,
        "rows": [
            _session_row(reply.session, now)
            | {
                "message_id": reply.pk,
                "reply_started_at": reply.created_at.isoformat(),
                "last_written_at": reply.updated_at.isoformat(),
                "stuck_seconds": _seconds(now, reply.updated_at),
                "chars": reply.chars,
            }
            for reply in replies
        ],
    }


def incomplete_models_details(*, limit: int) -> dict:
    """Return the models in use whose configuration lacks what the prompt relies on.

    In use: an attached (not detached) conversation is about the model. Most
    conversations first; each with the MODEL_REQUIRED fields it lacks.
    """
    lacking = Q()
    for condition in MODEL_REQUIRED.values():
        lacking |= condition
    # One row a model, whatever the number of conversations: the total is a window count.
    models = list(
        Model.objects.filter(lacking)
        .annotate(
            conversations=Count("chat_sessions", filter=Q(chat_sessions__detached_label="")),
            **{
                f"lacks_{name}": ExpressionWrapper(condition, output_field=BooleanField())
                for name, condition in MODEL_REQUIRED.items()
            },
        )
        .filter(conversations__gt=0)
        .select_related("owner")
        .only("id", "name", "llm", "owner__username")
        .annotate(matched=Window(Count("pk")))
        .order_by("-conversations", "id")[:limit]
    )
    return {
        "required": list(MODEL_REQUIRED),
        "total": models[0].matched if models else 0,
        "rows": [
            {
                "id": model.pk,
                "name": model.name,
                "owner": model.owner.username,
                "conversations": model.conversations,
                "missing": [name for name in MODEL_REQUIRED if getattr(model, f"lacks_{name}")],
            }
            for model in models
        ],
    }


def recent_details(*, limit: int = RECENT_MESSAGES) -> dict:
    """Return the latest messages of model conversations, newest first, with previews.

    A conversation's ``last_message_at`` is its newest message's time, so the latest
    ``limit`` messages are all in the ``limit`` model conversations with the latest
    ``last_message_at``: the messages are read from those only, through the message index,
    not sorted over the whole table.
    """
    latest = (
        ChatSession.objects.of_context(Context.MODEL)
        .filter(last_message_at__isnull=False)
        .order_by("-last_message_at", "-id")
        .values("pk")[:limit]
    )
    messages = (
        Message.objects.filter(session__in=latest)
        .select_related("session__user", "session__model")
        .only(
            "id",
            "role",
            "status",
            "created_at",
            "session__id",
            "session__title",
            "session__user__username",
            "session__model__name",
        )
        .annotate(preview=Left("content", RECENT_PREVIEW_CHARS), chars=Length("content"))
        .order_by("-created_at", "-id")[:limit]
    )
    return {
        "rows": [
            {
                "message_id": message.pk,
                "conversation": str(message.session_id),
                "owner": message.session.user.username,
                "model_id": message.session.model_id,
                "model_name": message.session.model.name,
                "title": message.session.title,
                "role": message.role,
                "status": message.status,
                "created_at": message.created_at.isoformat(),
                "chars": message.chars,
                "preview": message.preview,
            }
            for message in messages
        ],
    }


def details(*, health: dict, limit: int = DETAILS_LIMIT, now=None) -> dict:
    """Return the conversations behind each figure of ``health``, at most ``limit`` a list.

    ``health`` is report()'s: its counts are the totals of the lists with the same filter.
    """
    now = now or timezone.now()
    duplicates = health["several_active_details"]
    totals = details_totals() | {
        "empty": health["empty_conversations"]["total"],
        "orphaned": health["detached_conversations"],
    }
    lists = {
        name: function(total=totals[name], limit=limit, now=now)
        for name, function in (
            ("empty", empty_details),
            ("unsummarized", unsummarized_details),
            ("orphaned", orphaned_details),
            ("large", large_details),
        )
    }
    return {
        "limit": limit,
        "multi_active": multi_active_details(duplicates=duplicates, limit=limit, now=now),
        **lists,
        "stuck_streaming": stuck_streaming_details(limit=limit, now=now),
        "incomplete_models": incomplete_models_details(limit=limit),
        "recent": recent_details(),
    }


def report(*, now=None, details_limit: int | None = None) -> dict:
    """Return every health and usage figure as one JSON-ready dict.

    With ``details_limit``, also the conversations behind the figures (``details``), at
    most that many a list.
    """
    now = now or timezone.now()
    duplicates = active_duplicates()
    constraints = constraints_installed()
    data = {
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
        "feedback": feedback(),
    }
    if details_limit is not None:
        data["details"] = details(health=data["health"], limit=details_limit, now=now)
    return data
