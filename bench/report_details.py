"""``chat_report --details --json`` on 100,000 conversations (the bench's ``report`` part).

The data set is bulk-created in the scratch database, shaped like a busy server's:

- USERS users and MODELS models (one in ten lacking an instrument or order types), RUNS
  runs; SESSIONS conversations over 90 days: 60 % general, 30 % a model's, 8 % a run's,
  2 % detached (their model or run deleted); each user's newest general one active;
- counters as the services keep them: 5 % empty, 2 % past CONTEXT_MESSAGES (up to 400
  messages; one in three with an up-to-date summary, one lagging, one without), the rest
  2-20 messages;
- message rows: the last exchange (a question and its reply) of every conversation that
  has messages, at its ``last_message_at``, and STUCK replies left ``streaming`` an hour
  ago. The report reads the counters, not the rows, except for those two lists.

PostgreSQL gets ``ANALYZE`` after the load (autovacuum would, soon after). Then the
command runs in this process (``call_command`` into a buffer), once to warm up and
``runs`` times timed, each run beside one of ``chat_report --json`` without ``--details``:
p50, min and max, the p50 without details, the number of queries of each, and the size of
each list.
"""

import io
import statistics
import time
import uuid
from datetime import timedelta
from decimal import Decimal

SESSIONS = 100_000
USERS = 1_000
MODELS = 300
RUNS = 100
STUCK = 25
RUNS_TIMED = 7
BATCH = 5_000


def _message_count(i: int, context_messages: int) -> tuple[int, int]:
    """Return (message_count, summary_message_count) of conversation ``i``."""
    bucket = i % 1000
    if bucket < 50:
        return 0, 0
    if bucket < 70:
        count = context_messages + 2 + (i * 7919) % 370
        covered = max(count - context_messages, 0)
        state = i % 3
        if state == 0:
            return count, covered  # up to date
        if state == 1:
            return count, covered // 2  # lagging
        return count, 0  # none
    return 2 + i % 19, 0


def seed(*, sessions: int = SESSIONS) -> dict:
    """Bulk-create the data set; return what it holds."""
    from django.conf import settings
    from django.contrib.auth.hashers import make_password
    from django.db import connection
    from django.utils import timezone

    from accounts.models import User, username_key
    from chat.models import ChatSession, Message
    from models_app.models import Model, Run

    started = time.monotonic()
    now = timezone.now()
    prefix = f"bench-report-{uuid.uuid4().hex[:6]}"
    unusable = make_password(None)
    names = [f"{prefix}-{i}" for i in range(USERS)]
    User.objects.bulk_create(
        [User(username=n, username_key=username_key(n), password=unusable) for n in names],
        batch_size=BATCH,
    )
    users = list(User.objects.filter(username__startswith=prefix).order_by("pk"))
    Model.objects.bulk_create(
        [
            Model(
                owner=users[i % USERS],
                name=f"Model {i}",
                instrument="" if i % 10 == 0 else "stocks",
                buying_power=Decimal("10000"),
                allowed_order_types=[] if i % 10 == 5 else ["market", "limit"],
            )
            for i in range(MODELS)
        ],
        batch_size=BATCH,
    )
    models = list(Model.objects.filter(owner__in=users).order_by("pk"))
    Run.objects.bulk_create([Run(model=models[i % MODELS]) for i in range(RUNS)])
    runs = list(Run.objects.filter(model__in=models).order_by("pk"))

    window = settings.CONTEXT_MESSAGES
    rows = []
    for i in range(sessions):
        # Newest first: conversation i is i minutes older than the one before it (~69 days).
        created = now - timedelta(minutes=i + 1, days=i % 21)
        count, covered = _message_count(i, window)
        last = created + timedelta(minutes=count) if count else None
        kind = i % 50
        model = run = None
        label = ""
        if kind < 30:
            owner = users[i % USERS]
        elif kind < 45:
            model = models[i % MODELS]
            owner = model.owner
        elif kind < 49:
            run = runs[i % RUNS]
            model = run.model
            owner = model.owner
        else:
            owner = users[i % USERS]
            label = f"Model {i % MODELS} (deleted model)"
        rows.append(
            ChatSession(
                user=owner,
                model=model,
                run=run,
                title=f"Conversation {i}",
                is_active=kind < 30,
                detached_label=label,
                summary=f"Summary of conversation {i}. " * 8 if covered else "",
                summary_message_count=covered,
                preview=f"Preview of conversation {i}",
                created_at=created,
                updated_at=last or created,
                last_message_at=last,
                activity_at=last or created,
                message_count=count,
                prompt_tokens=count * 400,
                completion_tokens=count * 150,
            )
        )
    # One active general conversation per user (the constraint): its newest.
    seen = set()
    for row in rows:
        if row.is_active:
            row.is_active = row.user_id not in seen
            seen.add(row.user_id)
    ChatSession.objects.bulk_create(rows, batch_size=BATCH)

    messages = []
    stuck_left = STUCK
    for row in rows:
        if not row.message_count:
            continue
        at = row.last_message_at
        streaming = stuck_left > 0 and row.model_id is not None and row.message_count > 4
        stuck_left -= streaming
        messages.append(
            Message(session=row, role="user", content=f"Question about {row.title}", created_at=at)
        )
        messages.append(
            Message(
                session=row,
                role="assistant",
                content=("Half an answer " if streaming else "An answer, in some detail. ") * 12,
                status="streaming" if streaming else "complete",
                created_at=at + timedelta(microseconds=1),
                updated_at=now - timedelta(hours=1) if streaming else at,
            )
        )
        if len(messages) >= BATCH:
            Message.objects.bulk_create(messages, batch_size=BATCH)
            messages = []
    Message.objects.bulk_create(messages, batch_size=BATCH)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return {
        "conversations": ChatSession.objects.count(),
        "messages": Message.objects.count(),
        "users": USERS,
        "models": MODELS,
        "seed_seconds": round(time.monotonic() - started, 1),
    }


def run(*, runs: int = RUNS_TIMED, sessions: int = SESSIONS) -> dict:
    import json

    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    data = seed(sessions=sessions)

    def report(*args) -> str:
        out = io.StringIO()
        call_command("chat_report", "--json", *args, stdout=out)
        return out.getvalue()

    report()  # warm-up: the first also introspects the database
    with CaptureQueriesContext(connection) as captured:
        found = json.loads(report("--details"))["details"]
    with CaptureQueriesContext(connection) as plain:
        report()
    # Interleaved with the report without --details, so that a busy machine slows both.
    samples = {"details": [], "plain": []}
    for _ in range(runs):
        for name, args in (("details", ("--details",)), ("plain", ())):
            started = time.perf_counter()
            report(*args)
            samples[name].append((time.perf_counter() - started) * 1000)
    details, plain_ms = samples["details"], samples["plain"]
    return {
        "vendor": connection.vendor,
        "data_set": data,
        "runs": runs,
        "p50_ms": round(statistics.median(details), 1),
        "min_ms": round(min(details), 1),
        "max_ms": round(max(details), 1),
        "without_details_p50_ms": round(statistics.median(plain_ms), 1),
        "queries": len(captured.captured_queries),
        "queries_without_details": len(plain.captured_queries),
        "lists": {
            name: found[name].get("total", len(found[name]["rows"]))
            for name in (
                "multi_active",
                "empty",
                "unsummarized",
                "orphaned",
                "large",
                "stuck_streaming",
                "incomplete_models",
                "recent",
            )
        },
    }
