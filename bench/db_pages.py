"""Read paths that must stay fast however much history there is.

- a 50-message page of a 1,000-message conversation (keyset pagination), oldest and newest;
- the sidebar's first page for a user with 10,000 conversations, with their tags (and
  without, the path before tags), filtered by a common and by a rare tag, the sidebar's
  groups, and the user's tag counts;
- the sidebar's groups of a user whose 10,000 conversations are in 12 groups (general, 10
  models with their runs, detached), and the next page of a group, general and a model's;
- the sidebar's groups of a user whose 10,000 general conversations are nine in ten in 10
  folders, and the next page of a folder;
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


def _tags_of(i: int) -> list[str]:
    """Return the tags of the bench's ``i``-th conversation: 0 to 4, most carry one."""
    names = [f"project {i // 2 % 100}"] if i % 2 == 0 else []
    names += ["work"] if i % 3 == 0 else []
    names += ["home"] if i % 4 == 1 else []
    names += ["rare"] if i % 1000 == 7 else []
    return names


def seed(*, sessions: int = 10_000, messages: int = 1_000):
    """Create a user with ``sessions`` conversations, one of them ``messages`` long.

    Their tags are ``_tags_of``'s; another user's ``sessions`` conversations all carry
    "rare", so that the name is common in the table though rare for the user.
    """
    from accounts.models import User
    from chat.models import ChatSession, Message, SessionTag

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
    other = User.objects.create_user(f"bench-{uuid.uuid4().hex[:8]}", password="x")
    theirs = [ChatSession(user=other, is_active=False) for _ in range(sessions)]
    ChatSession.objects.bulk_create(theirs, batch_size=2000)
    tags = [
        SessionTag(user=user, session=row, name=name)
        for i, row in enumerate(rows)
        for name in _tags_of(i)
    ]
    tags += [SessionTag(user=other, session=row, name="rare") for row in theirs]
    SessionTag.objects.bulk_create(tags, batch_size=2000)
    long = rows[0]
    created = Message.objects.bulk_create(
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
    # One path: each message follows the one before it.
    for previous, message in zip(created, created[1:], strict=False):
        message.parent_id = previous.pk
    Message.objects.bulk_update(created[1:], ["parent"], batch_size=2000)
    if connection.vendor == "postgresql":
        # Autovacuum would do this soon after a bulk load; measure the steady state.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE chat_chatsession, chat_message, chat_sessiontag")
    return user, long


def seed_groups(*, sessions: int = 10_000, models: int = 10):
    """Create a user with ``sessions`` conversations in ``models`` + 2 sidebar groups.

    Of each ten: three general, six about a model (a third of them about one of its two
    runs), one detached (of a deleted model, or of a deleted run keeping its model); every
    97th pinned, every 11th archived, tags as ``_tags_of``. Return the user and a model.
    """
    from accounts.models import User
    from chat.models import ChatSession, SessionTag
    from models_app.models import Model, Run

    user = User.objects.create_user(f"bench-{uuid.uuid4().hex[:8]}", password="x")
    owned = [Model.objects.create(owner=user, name=f"Model {n}") for n in range(models)]
    runs = [[Run.objects.create(model=model) for _ in range(2)] for model in owned]
    now = timezone.now()
    rows = []
    for i in range(sessions):
        n = i // 10 % models
        context = {}
        if 3 <= i % 10 <= 8:
            context = {"model_id": owned[n].pk}
            if i % 3 == 0:
                context["run_id"] = runs[n][i % 2].pk
        elif i % 10 == 9:
            label = (
                "Gone (deleted model)" if i % 20 == 9 else f"Run of {owned[n].name} (deleted run)"
            )
            context = {"detached_label": label, "model_id": None if i % 20 == 9 else owned[n].pk}
        rows.append(
            ChatSession(
                user=user,
                title=f"Conversation {i}",
                is_active=False,
                pinned=i % 97 == 0,
                archived=i % 11 == 0,
                preview=f"Preview of conversation {i}",
                activity_at=now - timedelta(minutes=i),
                last_message_at=now - timedelta(minutes=i),
                message_count=2,
                **context,
            )
        )
    ChatSession.objects.bulk_create(rows, batch_size=2000)
    tags = [
        SessionTag(user=user, session=row, name=name)
        for i, row in enumerate(rows)
        for name in _tags_of(i)
    ]
    SessionTag.objects.bulk_create(tags, batch_size=2000)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE chat_chatsession, chat_sessiontag")
    return user, owned[0]


def seed_folders(*, sessions: int = 10_000, folders: int = 10):
    """Create a user with ``sessions`` general conversations, nine in ten of them in
    ``folders`` folders (in turn), every 97th pinned, every 11th archived. Return the user
    and a folder."""
    from accounts.models import User
    from chat.models import ChatSession, Folder

    user = User.objects.create_user(f"bench-{uuid.uuid4().hex[:8]}", password="x")
    made = [Folder.objects.create(user=user, name=f"Folder {n}") for n in range(folders)]
    now = timezone.now()
    rows = [
        ChatSession(
            user=user,
            title=f"Conversation {i}",
            is_active=False,
            pinned=i % 97 == 0,
            archived=i % 11 == 0,
            folder=made[i // 10 % folders] if i % 10 else None,
            activity_at=now - timedelta(minutes=i),
            message_count=2,
        )
        for i in range(sessions)
    ]
    ChatSession.objects.bulk_create(rows, batch_size=2000)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE chat_chatsession, chat_folder")
    return user, made[0]


def run() -> dict:
    from chat import selectors
    from chat.models import Message

    user, long = seed()
    grouped, model = seed_groups()
    filed, folder = seed_folders()
    oldest_anchor = Message.objects.filter(session=long).order_by("created_at", "id")[60]

    def newest_page():
        rows, _ = selectors.message_page(session=long, limit=50)
        assert len(rows) == 50

    def deep_page():
        rows, _ = selectors.message_page(session=long, before_id=oldest_anchor.pk, limit=50)
        assert len(rows) == 50

    def sidebar():
        # What GET /api/sessions/ reads: the page, then its sessions' tags.
        page = list(selectors.session_list(user=user, with_tags=True)[:31])
        assert len(page) == 31 and any(session.tag_names() for session in page)

    def sidebar_without_tags():
        page = list(selectors.session_list(user=user)[:31])
        assert len(page) == 31

    def tagged(name: str, found: int):
        def page():
            rows = list(selectors.session_list(user=user, tag=name, with_tags=True)[:31])
            assert len(rows) == found and all(name in s.tag_names() for s in rows)

        return page

    def sidebar_groups():
        assert len(selectors.sidebar_sessions(user=user)) == 30

    def sidebar_groups_of_many():
        sessions = selectors.sidebar_sessions(user=grouped)
        assert len(sessions) == 12 * 30 and len({s.group_key for s in sessions}) == 12

    def sidebar_groups_in_folders():
        sessions = selectors.sidebar_sessions(user=filed)
        assert len(sessions) == 11 * 30
        assert len({(s.group_key, s.folder_id) for s in sessions}) == 11

    def group_page(who, group: str):
        def page():
            rows, has_more = selectors.sidebar_group_page(user=who, group=group, offset=30)
            assert len(rows) == 30 and has_more

        return page

    def tag_counts():
        assert len(selectors.tag_counts(user=user)) == 103

    return {
        "message_page_newest_of_1000": _timed(newest_page),
        "message_page_deep_of_1000": _timed(deep_page),
        "sidebar_first_page_of_10000": _timed(sidebar),
        "sidebar_first_page_of_10000_without_tags": _timed(sidebar_without_tags),
        "sessions_tagged_common_of_10000": _timed(tagged("work", 31)),
        "sessions_tagged_rare_of_10000": _timed(tagged("rare", 10)),
        "sidebar_groups_of_10000": _timed(sidebar_groups),
        "sidebar_groups_of_10000_in_12_groups": _timed(sidebar_groups_of_many),
        "sidebar_group_page_2_of_10000": _timed(group_page(user, "general")),
        "sidebar_model_group_page_2_of_10000": _timed(group_page(grouped, f"model-{model.pk}")),
        "sidebar_groups_of_10000_in_10_folders": _timed(sidebar_groups_in_folders),
        "sidebar_folder_page_2_of_10000": _timed(group_page(filed, f"folder-{folder.pk}")),
        "tag_counts_of_10000": _timed(tag_counts),
        "vendor": connection.vendor,
    }
