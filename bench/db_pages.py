"""Read paths that must stay fast however much history there is.

- a 50-message page of a 1,000-message conversation (keyset pagination), oldest and newest;
- the sidebar's first page for a user with 10,000 conversations;
each timed over many runs (p50/p95) with the number of queries, which must not grow.
Runs against a scratch database: a temporary SQLite file, or ``BENCH_DATABASE_URL``.
"""

import statistics
import time
import uuid
from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

RUNS = 300


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return statistics.median(ordered), p95


def _timed(fn, runs: int = RUNS) -> dict:
    with CaptureQueriesContext(connection) as ctx:
        fn()
    queries = len(ctx.captured_queries)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    p50, p95 = _percentiles(samples)
    return {"p50_ms": round(p50, 3), "p95_ms": round(p95, 3), "queries": queries}


def seed(*, sessions: int = 10_000, messages: int = 1_000):
    """Create a user with ``sessions`` conversations, one of them ``messages`` long."""
    from accounts.models import User
    from chat.models import ChatSession, Message

    user = User.objects.create_user(f"bench-{uuid.uuid4().hex[:8]}", password="x")
    now = timezone.now()
    rows = [
        ChatSession(
            user=user,
            title=f"Conversation {i}",
            is_active=False,
            pinned=i % 500 == 0,
            preview=f"Preview of conversation {i}",
            activity_at=now - timedelta(minutes=i),
            last_message_at=now - timedelta(minutes=i),
            message_count=2,
        )
        for i in range(sessions)
    ]
    ChatSession.objects.bulk_create(rows, batch_size=2000)
    long = rows[0]
    Message.objects.bulk_create(
        [
            Message(
                session=long,
                role=Message.Role.USER if i % 2 == 0 else Message.Role.ASSISTANT,
                content=f"Message {i} " + "lorem ipsum " * 20,
                created_at=now - timedelta(seconds=messages - i),
            )
            for i in range(messages)
        ],
        batch_size=2000,
    )
    if connection.vendor == "postgresql":
        # Autovacuum would do this soon after a bulk load; measure the steady state.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE chat_chatsession, chat_message")
    return user, long


def run() -> dict:
    from chat import selectors
    from chat.models import Message

    user, long = seed()
    oldest_anchor = Message.objects.filter(session=long).order_by("created_at", "id")[60]

    def newest_page():
        rows, _ = selectors.message_page(session=long, limit=50)
        assert len(rows) == 50

    def deep_page():
        rows, _ = selectors.message_page(session=long, before_id=oldest_anchor.pk, limit=50)
        assert len(rows) == 50

    def sidebar():
        page = list(selectors.session_list(user=user)[:31])
        assert len(page) == 31

    return {
        "message_page_newest_of_1000": _timed(newest_page),
        "message_page_deep_of_1000": _timed(deep_page),
        "sidebar_first_page_of_10000": _timed(sidebar),
        "vendor": connection.vendor,
    }
