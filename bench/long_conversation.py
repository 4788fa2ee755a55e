"""Database work per reply in a long conversation (PostgreSQL only), from outside the server.

Two conversations of 1,000 and 5,000 messages are bulk-inserted in the steady state a
long conversation reaches (a rolling summary covering everything older than the last
CONTEXT_MESSAGES), the database is vacuumed and analyzed, and a dedicated server (one
worker, the in-memory layer, the recovery sweep off) gets WARMUP (5) replies into each.
Then, for each size, 10 replies (200 tokens) over SSE, one after the other, twice (the
sizes in one order, then the other: the first window of a run touches more pages,
whatever its conversation), measured by the bench database's counters in
``pg_stat_database``:

- buffer pages touched per reply, ``blks_hit + blks_read`` deltas over the 10 replies and
  whatever they caused (title, summary jobs), divided by 10;
- rows written per reply (``tup_inserted + tup_updated + tup_deleted``) and transactions;
- summary requests the upstream received for those 10 replies (the bench's fake upstream
  counts requests whose system prompt says "Summarize the conversation").

PostgreSQL's backends publish their counters when idle, at most PGSTAT_IDLE_INTERVAL
(10 s) later, so every read comes after ``FLUSH_WAIT`` seconds of quiet and after
``pg_stat_clear_snapshot()``; the readings are taken from a connection to the
``postgres`` database so they add nothing to the bench database. Autovacuum runs inside
a window would be counted too: they are detected (``pg_stat_user_tables``) and reported.

Last, one 1,000-token reply at 5 ms/token (5 s) into a short conversation, with the rows
written per table (``pg_stat_user_tables``): database writes per reply must be bounded,
not per token.
"""

import asyncio
import os
import time
import uuid
from datetime import timedelta

REPLIES = 10
# Warm-up replies into each conversation before the windows: enough for the server's
# pooled connections to be open and to have prepared the reply path's statements (each
# new connection's first statements read PostgreSQL's catalogs: thousands of rows that
# the first window counted, and not the second).
WARMUP = 5
SIZES = (1_000, 5_000)
FLUSH_WAIT = float(os.environ.get("BENCH_PG_FLUSH_WAIT", "11"))
SETTLE = 2.0
PAGES_TARGET_SPREAD = 0.10  # 5,000 within 10 % of 1,000
SUMMARY_TARGET = 1  # at most one summary call per 10 replies


def admin_dsn(database_url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    return make_conninfo(**dict(conninfo_to_dict(_dsn(database_url)), dbname="postgres"))


def _dsn(database_url: str) -> str:
    # psycopg takes postgres:// and postgresql:// URIs; django-environ also allows pgsql://.
    for prefix in ("pgsql://", "psql://"):
        if database_url.startswith(prefix):
            return "postgresql://" + database_url[len(prefix) :]
    return database_url


def db_name(database_url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    return conninfo_to_dict(_dsn(database_url))["dbname"]


def recreate_database(database_url: str) -> None:
    """Drop and create the bench database (its name must contain "bench")."""
    import psycopg

    name = db_name(database_url)
    if "bench" not in name:
        raise SystemExit(
            f"BENCH_DATABASE_URL names {name!r}: the bench drops and recreates its database, "
            "so its name must contain 'bench'."
        )
    with psycopg.connect(admin_dsn(database_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(database_url: str) -> None:
    import psycopg

    name = db_name(database_url)
    with psycopg.connect(admin_dsn(database_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_counters(database_url: str) -> dict:
    """The bench database's row of pg_stat_database, read from the postgres database."""
    import psycopg

    columns = (
        "blks_hit",
        "blks_read",
        "xact_commit",
        "xact_rollback",
        "tup_returned",
        "tup_fetched",
        "tup_inserted",
        "tup_updated",
        "tup_deleted",
    )
    with psycopg.connect(admin_dsn(database_url), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            f"SELECT {', '.join(columns)} FROM pg_stat_database WHERE datname = %s",
            (db_name(database_url),),
        ).fetchone()
    return dict(zip(columns, row, strict=True))


def table_counters(database_url: str) -> dict:
    """Per table: rows inserted/updated/deleted and (auto)vacuum/analyze counts."""
    import psycopg

    with psycopg.connect(_dsn(database_url), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = conn.execute(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del, autovacuum_count, "
            "autoanalyze_count FROM pg_stat_user_tables"
        ).fetchall()
    return {
        r[0]: {"ins": r[1], "upd": r[2], "del": r[3], "autovacuum": r[4], "autoanalyze": r[5]}
        for r in rows
    }


def _delta(after: dict, before: dict) -> dict:
    return {k: after[k] - before[k] for k in after}


def seed(user, size: int, context_messages: int):
    """Bulk-insert a conversation of ``size`` messages whose summary is up to date."""
    from django.db import connection

    from chat.models import ChatSession, Message

    now = timezone_now()
    start = now - timedelta(seconds=size + 60)
    session = ChatSession.objects.create(
        user=user,
        title=f"Long conversation of {size:,} messages",
        title_source="auto",
        is_active=False,
        preview="A long conversation",
        created_at=start,
        activity_at=now - timedelta(seconds=30),
        last_message_at=now - timedelta(seconds=30),
        message_count=size,
    )
    rows = [
        Message(
            session=session,
            role=Message.Role.USER if i % 2 == 0 else Message.Role.ASSISTANT,
            content=f"Message {i} of a long conversation. " + "lorem ipsum dolor " * 15,
            status=Message.Status.COMPLETE,
            llm="" if i % 2 == 0 else "fake-model",
            created_at=start + timedelta(seconds=i),
            updated_at=start + timedelta(seconds=i),
        )
        for i in range(size)
    ]
    Message.objects.bulk_create(rows, batch_size=2000)
    ids = list(
        Message.objects.filter(session=session)
        .order_by("created_at", "id")
        .values_list("id", flat=True)
    )
    # One path: each message follows the one before it.
    linked = [Message(id=ids[i], parent_id=ids[i - 1]) for i in range(1, len(ids))]
    Message.objects.bulk_update(linked, ["parent"], batch_size=2000)
    covered = size - context_messages
    ChatSession.objects.filter(pk=session.pk).update(
        summary="Summary of the conversation so far: " + "facts and decisions, " * 20,
        summary_until_id=ids[covered - 1],
        summary_message_count=covered,
    )
    connection.close()
    return session


def timezone_now():
    from django.utils import timezone

    return timezone.now()


async def _fake_stats(upstream_url: str) -> dict:
    import aiohttp

    base = upstream_url.rsplit("/v1", 1)[0]
    async with aiohttp.ClientSession() as s, s.get(f"{base}/_stats") as r:
        return await r.json()


async def _replies(session, url, headers, conv, prompt, n) -> list[dict]:
    import aiohttp

    from bench.loadclient import one_request

    body = {"messages": [{"role": "user", "content": prompt}]}
    timeout = aiohttp.ClientTimeout(total=120)
    out = []
    for _ in range(n):
        rec = await one_request(session, url, headers, body, timeout, "parlor", conv)
        if not rec["ok"]:
            raise RuntimeError(f"reply into {conv} failed: {rec['error']}")
        out.append(rec)
    return out


def run(*, database_url: str, server_base: str, token: str, upstream_url: str, user) -> dict:
    """Run the measurement against a started server; return the figures."""
    import aiohttp
    from django.conf import settings
    from django.db import connection

    context = settings.CONTEXT_MESSAGES
    sessions = {size: seed(user, size, context) for size in SIZES}
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    connection.close()
    url = f"{server_base}/api/chat/stream"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    prompt = "Say something."
    out: dict = {
        "replies_per_size": REPLIES,
        "context_messages": context,
        "summary_threshold": settings.SUMMARY_THRESHOLD,
        "summary_every": getattr(settings, "SUMMARY_EVERY", None),
        "flush_wait_s": FLUSH_WAIT,
        "sizes": {},
    }

    async def main():
        async with aiohttp.ClientSession() as http:
            # Warm-up (caches, pooled connections and their prepared statements, any
            # catch-up): WARMUP replies into each.
            f0 = await _fake_stats(upstream_url)
            for size in SIZES:
                await _replies(http, url, headers, str(sessions[size].pk), prompt, WARMUP)
            short = str(uuid.uuid4())
            await _replies(http, url, headers, short, prompt, 1)  # a new one, with its title
            await asyncio.sleep(SETTLE)
            f1 = await _fake_stats(upstream_url)
            out["warmup_summary_requests"] = f1["by_kind"]["summary"] - f0["by_kind"]["summary"]
            tables0 = await asyncio.to_thread(table_counters, database_url)
            await asyncio.sleep(FLUSH_WAIT)
            before = await asyncio.to_thread(database_counters, database_url)
            fake_before = await _fake_stats(upstream_url)
            # Each size is measured twice, in both orders (1,000, 5,000, 5,000, 1,000):
            # whichever window comes first touched 35-60 more pages a reply than the
            # second, whatever its conversation's length.
            windows = {size: [] for size in SIZES}
            for size in (*SIZES, *reversed(SIZES)):
                started = time.perf_counter()
                recs = await _replies(http, url, headers, str(sessions[size].pk), prompt, REPLIES)
                elapsed = time.perf_counter() - started
                await asyncio.sleep(FLUSH_WAIT)
                after = await asyncio.to_thread(database_counters, database_url)
                fake_after = await _fake_stats(upstream_url)
                d = _delta(after, before)
                d["summary"] = fake_after["by_kind"]["summary"] - fake_before["by_kind"]["summary"]
                d["title"] = fake_after["by_kind"]["title"] - fake_before["by_kind"]["title"]
                d["ttfts"] = [r["ttft"] for r in recs]
                d["seconds"] = elapsed
                windows[size].append(d)
                before, fake_before = after, fake_after
            for size, measured in windows.items():
                replies = REPLIES * len(measured)

                def total(name, measured=measured):
                    return sum(d[name] for d in measured)

                ttfts = sorted(t for d in measured for t in d["ttfts"])
                out["sizes"][str(size)] = {
                    "messages_before": size + 2 * WARMUP,
                    "windows": len(measured),
                    "pages_per_reply": round((total("blks_hit") + total("blks_read")) / replies, 1),
                    "pages_per_reply_by_window": [
                        round((d["blks_hit"] + d["blks_read"]) / REPLIES, 1) for d in measured
                    ],
                    "blks_hit": total("blks_hit"),
                    "blks_read": total("blks_read"),
                    "rows_written_per_reply": round(
                        (total("tup_inserted") + total("tup_updated") + total("tup_deleted"))
                        / replies,
                        1,
                    ),
                    "rows_fetched_per_reply": round(total("tup_fetched") / replies, 1),
                    "rows_scanned_per_reply": round(total("tup_returned") / replies, 1),
                    "transactions_per_reply": round(
                        (total("xact_commit") + total("xact_rollback")) / replies, 1
                    ),
                    # Per REPLIES replies (the target's unit): the most of its windows.
                    "summary_requests": max(d["summary"] for d in measured),
                    "title_requests": total("title"),
                    "ttft_ms_median": round(ttfts[len(ttfts) // 2] * 1000, 2),
                    "seconds": round(total("seconds"), 2),
                }
            # Writes of one long, slow reply: bounded, not per token.
            t_before = await asyncio.to_thread(table_counters, database_url)
            slow = "Write slowly. [dev:tokens=1000] [dev:token_ms=5]"
            started = time.perf_counter()
            rec = (await _replies(http, url, headers, short, slow, 1))[0]
            elapsed = time.perf_counter() - started
            await asyncio.sleep(FLUSH_WAIT)
            t_after = await asyncio.to_thread(table_counters, database_url)
            by_table = {}
            for name, row in t_after.items():
                base = t_before.get(name, {"ins": 0, "upd": 0, "del": 0})
                changed = {k: row[k] - base[k] for k in ("ins", "upd", "del")}
                if any(changed.values()):
                    by_table[name] = changed
            rows = sum(sum(v.values()) for v in by_table.values())
            out["reply_1000_tokens_5ms"] = {
                "seconds": round(elapsed, 2),
                "tokens": rec["words"],
                "token_events": rec["chunks"],
                "rows_written": rows,
                "rows_written_by_table": by_table,
                "bounded": rows < 100,
            }
            tables1 = t_after
            autovac = sorted(
                name
                for name, row in tables1.items()
                if name in tables0
                and (
                    row["autovacuum"] != tables0[name]["autovacuum"]
                    or row["autoanalyze"] != tables0[name]["autoanalyze"]
                )
            )
            out["autovacuum_during_windows"] = autovac

    asyncio.run(main())
    small, large = (out["sizes"][str(s)] for s in SIZES)
    ratio = (
        large["pages_per_reply"] / small["pages_per_reply"] if small["pages_per_reply"] else None
    )
    out["pages_ratio_5000_over_1000"] = round(ratio, 3) if ratio else None
    out["pages_met"] = ratio is not None and abs(ratio - 1) <= PAGES_TARGET_SPREAD
    out["summary_requests_per_10_replies"] = max(s["summary_requests"] for s in (small, large))
    out["summary_met"] = out["summary_requests_per_10_replies"] <= SUMMARY_TARGET
    if out["autovacuum_during_windows"]:
        out["note"] = (
            "autovacuum/autoanalyze ran during the measured windows on "
            + ", ".join(out["autovacuum_during_windows"])
            + ": its pages are counted too"
        )
    return out
