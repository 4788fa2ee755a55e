"""Run every benchmark once and print one summary (``python -m bench`` / ``make bench``).

    make bench                                    # SQLite scratch file, ~6-8 minutes
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/parlor_bench make bench
    BENCH_QUICK=1 make bench                      # one short round of everything
    .venv/bin/python -m bench --only sse,ws       # some parts (see --help)

The database is a scratch one made for the run: a temporary SQLite file, or the
PostgreSQL database named by BENCH_DATABASE_URL, dropped and created at the start (its name
must contain "bench") and dropped at the end (BENCH_KEEP_DB=1 keeps it). Servers, the
upstream and Redis' bench db are the run's own; every process started is stopped at the
end, also on error, Ctrl-C or SIGTERM. The report goes to bench/results/latest.json and a
markdown table to stdout; progress goes to stderr.
"""

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PARTS = (
    "reads",
    "tree",
    "writes",
    "upstream",
    "pages",
    "sse",
    "ws",
    "workers",
    "report",
    "render",
)
# Open WebUI 0.12.4 at 50 clients, from issue 9's run on the 2-core machine (its
# /api/chat/completions, same fake upstream): TTFT p50 1,075 ms where direct was 106 ms,
# 8,811 tokens/s where direct was 91,073. The targets compare Parlor's ratio to direct in
# this run with the peer's ratio to direct in its run (../shared/peers/run_bench.sh).
PEER_TTFT_RATIO = 1075 / 106
PEER_TPS_RATIO = 8811 / 91073

T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def _env_int(name, default):
    return int(os.environ.get(name, default))


def parse_args(argv=None):
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0", "false")
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--quick", action="store_true", default=quick, help="BENCH_QUICK=1")
    p.add_argument(
        "--only",
        default=os.environ.get("BENCH_ONLY", ""),
        help=f"comma-separated parts (BENCH_ONLY): {', '.join(PARTS)}",
    )
    p.add_argument("--rounds", type=int, default=None, help="BENCH_ROUNDS (3; quick 1)")
    p.add_argument("--n1", type=int, default=None, help="BENCH_N1: requests at 1 client (50)")
    p.add_argument("--n50", type=int, default=None, help="BENCH_N50: requests at 50 (200)")
    p.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", ""),
        help="BENCH_DATABASE_URL",
    )
    p.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
        help="BENCH_REDIS_URL (its db is flushed)",
    )
    p.add_argument(
        "--settings",
        default=os.environ.get("BENCH_SETTINGS", "config.settings.production"),
        help="the servers' DJANGO_SETTINGS_MODULE (BENCH_SETTINGS)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=float(os.environ.get("BENCH_BUDGET", "1")),
        help="BENCH_BUDGET: scale of the time boxes that keep a slow server's run short "
        "(1; 0 = none: every request and round, however long)",
    )
    a = p.parse_args(argv)
    a.rounds = a.rounds or _env_int("BENCH_ROUNDS", 1 if a.quick else 3)
    a.n1 = a.n1 or _env_int("BENCH_N1", 20 if a.quick else 50)
    a.n50 = a.n50 or _env_int("BENCH_N50", 100 if a.quick else 200)
    a.warmup_n = 30 if a.quick else 50
    a.ws_replies = 15 if a.quick else 30
    a.ws_streams = 100 if a.quick else 200

    def box(seconds):
        return seconds * a.budget if a.budget > 0 else None

    # Time boxes: no request of a leg starts after this long (SSE), no round of a part
    # starts after this long (WebSocket). A fast server never reaches them.
    a.sse_leg_seconds = (box(5), box(10))
    a.workers_leg_seconds = box(10)
    a.ws_budgets = {"one_stream": box(20), "streams_200": box(45), "throughput": box(30)}
    a.parts = [x.strip() for x in a.only.split(",") if x.strip()] or list(PARTS)
    unknown = set(a.parts) - set(PARTS)
    if unknown:
        p.error(f"unknown parts: {', '.join(sorted(unknown))}")
    a.peer_ttft_ratio = float(os.environ.get("BENCH_PEER_TTFT_RATIO", PEER_TTFT_RATIO))
    a.peer_tps_ratio = float(os.environ.get("BENCH_PEER_TPS_RATIO", PEER_TPS_RATIO))
    a.keep_db = os.environ.get("BENCH_KEEP_DB", "") not in ("", "0", "false")
    return a


def setup_django(tmpdir: str, database_url: str = "") -> str:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    url = (
        database_url or os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{tmpdir}/bench.sqlite3"
    )
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # This process serves requests only in bench.stream_writes: no Redis of the caller's
    # (nor of a .env file), and the per-user send limit lifted as in the bench's servers.
    os.environ["REDIS_URL"] = ""
    os.environ["THROTTLE_MESSAGES"] = "1000000/min"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    return url


def make_tokens(count: int, prefix: str):
    """Create ``count`` users (no password hashing); return (users, raw bearer tokens)."""
    import uuid

    from django.contrib.auth.hashers import make_password
    from django.db import connection

    from accounts.models import User
    from accounts.tokens import token_issue

    prefix = f"{prefix}-{uuid.uuid4().hex[:6]}"
    unusable = make_password(None)
    # One save() each (not bulk_create): the model derives fields on save.
    users = [User.objects.create(username=f"{prefix}-{i}", password=unusable) for i in range(count)]
    tokens = [token_issue(user=user)[0] for user in users]
    connection.close()  # SQLite: hold no lock while the servers write
    return users, tokens


class Run:
    """One bench run: its knobs, its processes and the report being built."""

    def __init__(self, args, workdir: Path, database_url: str):
        from django.conf import settings

        from bench import procs

        self.args = args
        self.workdir = workdir
        self.database_url = database_url
        self.vendor = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        self.procs = procs
        self.upstream = None
        self.upstream_url = ""
        self.results: dict = {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "setup": {
                "database": self.vendor,
                "cpus": os.cpu_count(),
                "load_average_at_start": os.getloadavg(),
                "quick": args.quick,
                "rounds": args.rounds,
                "requests_c1": args.n1,
                "requests_c50": args.n50,
                "time_boxes": {
                    "sse_leg_seconds_c1_c50": args.sse_leg_seconds,
                    "workers_leg_seconds": args.workers_leg_seconds,
                    "ws_part_round_budgets": args.ws_budgets,
                },
                "server_settings": args.settings,
                "upstream": "bench/fake_upstream.py (a copy of the peer kit's fake_openai.py)",
                "server": "uvicorn config.asgi:application (its defaults), DEBUG=false, "
                "LOG_LEVEL=WARNING, --no-access-log, --ws-per-message-deflate=false, "
                "THROTTLE_MESSAGES=1000000/min",
            },
        }

    def part(self, name: str, fn) -> None:
        if name not in self.args.parts:
            return
        log(f"{name}: start")
        started = time.monotonic()
        try:
            self.results[name] = fn()
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing part is a result
            log(f"{name}: FAILED {type(exc).__name__}: {exc}")
            self.results[name] = {
                "failed": True,
                "error": f"{type(exc).__name__}: {exc}"[:1000],
                "traceback": traceback.format_exc()[-3000:],
            }
        self.results.setdefault("seconds", {})[name] = round(time.monotonic() - started, 1)
        log(f"{name}: done in {time.monotonic() - started:.1f} s")

    def ensure_upstream(self):
        if self.upstream is None or not self.upstream.alive():
            self.upstream, self.upstream_url = self.procs.start_upstream(self.workdir)
        return self.upstream

    def start_server(self, name, *, workers=1, redis_url="", extra=None):
        """Start a server as production would; fall back to the local settings (with
        DEBUG=false) if the production settings do not start, and say so."""
        self.ensure_upstream()
        reason = ""
        for settings_module in dict.fromkeys((self.args.settings, "config.settings.local")):
            env = self.procs.server_env(
                database_url=self.database_url,
                llm_url=self.upstream_url,
                redis_url=redis_url,
                settings=settings_module,
                extra=extra,
            )
            try:
                child, base = self.procs.start_server(name, self.workdir, env, workers=workers)
            except RuntimeError as exc:
                log(f"{name} with {settings_module} did not start: {str(exc)[-500:]}")
                lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                reason = lines[-1] if lines else str(exc)
                continue
            info = self.procs.runtime(child)
            info["settings"] = settings_module
            info["workers_requested"] = workers
            info["rss_at_start_mib"] = round(
                sum(
                    self.procs.status_mib(pid).get("VmRSS", 0)
                    for pid in self.procs.worker_pids(child)
                ),
                1,
            )
            self.results["setup"].setdefault("servers", {})[name] = info
            log(
                f"{name} up at {base} (pid {child.pid}, {settings_module}, uvloop "
                f"{info['uvloop']}, httptools {info['httptools']})"
            )
            return child, base
        raise RuntimeError(f"{name} did not start: {reason}"[:500])

    # Parts ---------------------------------------------------------------------------

    def reads(self):
        from bench import db_pages

        return db_pages.run()

    def tree(self):
        from bench import tree

        return tree.run()

    def report_details(self):
        from bench import report_details

        return report_details.run(runs=3 if self.args.quick else report_details.RUNS_TIMED)

    def render(self):
        from bench import render

        return render.run(quick=self.args.quick)

    def writes(self):
        from bench import stream_writes

        self.ensure_upstream()
        return stream_writes.run(self.upstream_url)

    def upstream_check(self):
        """The development LLM and the fake upstream, each called directly."""
        from bench import loadclient

        self.ensure_upstream()
        devllm, devllm_url = self.procs.start_devllm(self.workdir)
        out = {}
        try:

            async def main():
                for name, url, pid in (
                    ("devllm", devllm_url, devllm.pid),
                    ("fake_upstream", self.upstream_url, self.upstream.pid),
                ) * 2:
                    for c, n in ((1, 50), (50, 200)):
                        s = await loadclient.closed_loop(
                            url=f"{url}/chat/completions",
                            concurrency=c,
                            requests=n,
                            watch={"upstream": pid},
                        )
                        key = f"{name}_c{c}"
                        prev = out.get(key)
                        row = {
                            "chunks_per_s": s["chunks_per_s"],
                            "ttft_ms_p50": s["ttft_ms_p50"],
                            "ttft_ms_p95": s["ttft_ms_p95"],
                            "upstream_cpu_ms_per_reply": s["cpu_ms_per_req"]["upstream"],
                            "errors": s["errors"],
                        }
                        # Two passes, interleaved; keep the faster one of each.
                        if prev is None or row["chunks_per_s"] > prev["chunks_per_s"]:
                            out[key] = row

            asyncio.run(main())
        finally:
            devllm.stop()
        faster = (
            "fake_upstream"
            if out["fake_upstream_c50"]["chunks_per_s"] >= out["devllm_c50"]["chunks_per_s"]
            else "devllm"
        )
        out["faster_at_c50"] = faster
        out["note"] = (
            "Both called directly by the bench's load client, 200-token replies, no delays "
            "(best of two passes). The bench relays from the fake upstream either way: the "
            "peer kit's, so figures compare with the Open WebUI run, and it counts summary "
            "requests."
        )
        return out

    def pages(self):
        from bench import long_conversation

        if self.vendor != "postgresql":
            return {
                "skipped": "PostgreSQL only (set BENCH_DATABASE_URL): pages come from "
                "pg_stat_database"
            }
        users, tokens = make_tokens(1, "bench-long")
        child, base = self.start_server("server_pages", extra={"PARLOR_RECOVERY_INTERVAL": "0"})
        try:
            return long_conversation.run(
                database_url=self.database_url,
                server_base=base,
                token=tokens[0],
                upstream_url=self.upstream_url,
                user=users[0],
            )
        finally:
            self._server_log("server_pages", child)
            child.stop()

    def sse_and_ws(self):
        from bench import relay, streaming

        _, sse_tokens = make_tokens(1, "bench-sse")
        _, ws_tokens = make_tokens(self.args.ws_streams + 1, "bench-ws")
        child, base = self.start_server("server")
        floor = self.start_floor() if "sse" in self.args.parts else None
        try:
            if "sse" in self.args.parts:
                self.part(
                    "sse",
                    lambda: asyncio.run(
                        relay.sse_phase(
                            server_base=base,
                            token=sse_tokens[0],
                            upstream_url=self.upstream_url,
                            server_pid=child.pid,
                            upstream_pid=self.upstream.pid,
                            rounds=self.args.rounds,
                            n1=self.args.n1,
                            n50=self.args.n50,
                            warmup_n=self.args.warmup_n,
                            leg_seconds=self.args.sse_leg_seconds,
                            floor=(floor[1], floor[0].pid) if floor else None,
                            log=log,
                        )
                    ),
                )
            if "ws" in self.args.parts:
                self.part(
                    "ws",
                    lambda: asyncio.run(
                        streaming.ws_phase(
                            server_base=base,
                            tokens=ws_tokens,
                            upstream_url=self.upstream_url,
                            server_pid=child.pid,
                            rounds=self.args.rounds,
                            replies=self.args.ws_replies,
                            streams=self.args.ws_streams,
                            budgets=self.args.ws_budgets,
                            log=log,
                        )
                    ),
                )
            self.results["server_memory_mib_after_sse_ws"] = self.procs.status_mib(child.pid)
        finally:
            self._server_log("server", child)
            child.stop()
            if floor:
                floor[0].stop()

    def start_floor(self):
        """Start the peer kit's floor relay for the SSE part, if it is there and the
        database is PostgreSQL; return it and its base URL, or None (and say why)."""
        where = self.procs.FLOOR_RELAY
        if self.vendor != "postgresql" or not where.is_file():
            why = "needs PostgreSQL" if where.is_file() else f"{where} not found"
            self.results["setup"]["floor"] = f"not run: {why}"
            log(f"floor relay not run: {why}")
            return None
        try:
            child, base = self.procs.start_floor(
                self.workdir, database_url=self.database_url, llm_url=self.upstream_url
            )
        except Exception as exc:  # noqa: BLE001 - the SSE part runs without it
            self.results["setup"]["floor"] = f"did not start: {exc}"[:500]
            log(f"floor relay did not start: {exc}")
            return None
        self.results["setup"]["floor"] = f"{where} (uvicorn, uvloop, httptools, PostgreSQL)"
        log(f"floor relay up at {base} (pid {child.pid})")
        return child, base

    def workers(self):

        if self.vendor != "postgresql":
            return {"skipped": "needs PostgreSQL (BENCH_DATABASE_URL) and Redis"}
        import redis

        try:
            client = redis.Redis.from_url(self.args.redis_url, socket_timeout=5)
            client.ping()
            client.flushdb()
        except Exception as exc:  # noqa: BLE001
            return {"skipped": f"Redis at {self.args.redis_url} unavailable: {exc}"}
        # 50 users, one per client: one user's 50 sends at once would take turns on
        # their row lock whatever the number of workers.
        _, tokens = make_tokens(50, "bench-workers")
        one, one_base = self.start_server("server_1w_redis", redis_url=self.args.redis_url)
        two = None
        try:
            two, two_base = self.start_server(
                "server_2w_redis", workers=2, redis_url=self.args.redis_url
            )
            workers = self.procs.worker_pids(two)
            out = self.two_against_one((one_base, one.pid), (two_base, two.pid, workers), tokens)
            out["redis_url"] = self.args.redis_url
            out["worker_pids"] = workers
        finally:
            for name, child in (("server_1w_redis", one), ("server_2w_redis", two)):
                if child is not None:
                    self._server_log(name, child)
                    child.stop()
        try:
            out["behind_nginx"] = self.workers_behind_nginx(tokens)
        finally:
            with contextlib.suppress(Exception):
                client.flushdb()
        return out

    def two_against_one(self, one: tuple, two: tuple, tokens: list[str]) -> dict:
        """relay.workers_phase on a one-worker and a two-worker server, each client one of
        the users of ``tokens``."""
        from bench import relay

        return asyncio.run(
            relay.workers_phase(
                one=one,
                two=two,
                token=tokens[0],
                upstream_url=self.upstream_url,
                upstream_pid=self.upstream.pid,
                rounds=self.args.rounds,
                n50=self.args.n50,
                warmup_n=self.args.warmup_n,
                leg_seconds=self.args.workers_leg_seconds,
                users=tokens,
                log=log,
            )
        )

    def workers_behind_nginx(self, tokens: list[str]) -> dict:
        """The same legs through the production recipe: deploy/serve_prod.py, nginx in
        front of one worker and of two (SPEC 4.6, issue 12)."""
        nginx = os.environ.get("PARLOR_NGINX") or shutil.which("nginx")
        if not nginx:
            return {"skipped": "nginx not installed (scripts/ensure-nginx.sh installs it)"}
        env = self.procs.server_env(
            database_url=self.database_url,
            llm_url=self.upstream_url,
            redis_url=self.args.redis_url,
            settings=self.args.settings,
            extra={"PARLOR_NGINX": nginx},
        )
        started = []
        try:
            one, one_base, _ = self.procs.start_behind_nginx(
                "nginx_1w", self.workdir, env, workers=1
            )
            started.append(("nginx_1w", one))
            two, two_base, two_pids = self.procs.start_behind_nginx(
                "nginx_2w", self.workdir, env, workers=2
            )
            started.append(("nginx_2w", two))
            log(f"behind nginx: one worker at {one_base}, two at {two_base}")
            out = self.two_against_one((one_base, one.pid), (two_base, two.pid, two_pids), tokens)
            out["worker_pids"] = two_pids
            out["server_cpu_includes"] = "nginx, the workers and serve_prod.py"
            return out
        except RuntimeError as exc:
            return {"failed": True, "error": str(exc)[-500:]}
        finally:
            for name, child in started:
                self._server_log(name, child)
                child.stop()

    def _server_log(self, name, child):
        """Keep the server's warnings and errors (the first and last lines) in the report."""
        lines = [
            line
            for line in child.log_text().splitlines()
            if line.strip() and not line.startswith("INFO:")
        ]
        if lines:
            self.results.setdefault("server_logs", {})[name] = {
                "lines": len(lines),
                "head": lines[:15],
                "tail": lines[-15:] if len(lines) > 15 else [],
            }

    def run(self):
        self.part("reads", self.reads)
        self.part("tree", self.tree)
        self.part("writes", self.writes)
        self.part("upstream", self.upstream_check)
        self.part("pages", self.pages)
        if {"sse", "ws"} & set(self.args.parts):
            try:
                self.sse_and_ws()
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001
                log(f"server for sse/ws: FAILED {exc}")
                for name in ("sse", "ws"):
                    if name in self.args.parts and name not in self.results:
                        self.results[name] = {"failed": True, "error": str(exc)[:1000]}
        self.part("workers", self.workers)
        self.part("report", self.report_details)
        self.part("render", self.render)


def main(argv=None) -> int:
    args = parse_args(argv)
    from bench import procs, report

    procs.install_signal_handlers()
    out_dir = Path(__file__).resolve().parent / "results"
    out_dir.mkdir(exist_ok=True)
    database_url = args.database_url
    run = None
    text = ""
    try:
        with tempfile.TemporaryDirectory(prefix="parlor-bench-") as tmpdir:
            if database_url:
                from bench.long_conversation import recreate_database

                recreate_database(database_url)
            url = setup_django(tmpdir, database_url)
            log(f"database {url.split('@')[-1]}; parts: {', '.join(args.parts)}")
            run = Run(args, Path(tmpdir), url)
            try:
                run.run()
            finally:
                procs.stop_all()
                from django.db import connections

                connections.close_all()
                run.results.setdefault("seconds", {})["total"] = round(time.monotonic() - T0, 1)
                from bench import render

                text = report.table(run.results, args) + render.table(run.results)
                (out_dir / "latest.json").write_text(json.dumps(run.results, indent=2))
    except KeyboardInterrupt:
        log("interrupted: every process started was stopped")
        print(text)
        return 130
    finally:
        procs.stop_all()
        if database_url and not args.keep_db:
            try:
                from bench.long_conversation import drop_database

                drop_database(database_url)
            except Exception as exc:  # noqa: BLE001
                log(f"could not drop the bench database: {exc}")
    print(text)
    print(f"\nFull report: {out_dir / 'latest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
