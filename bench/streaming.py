"""Streaming through one Parlor server process, against the development LLM called directly.

Starts two real processes on free 127.0.0.1 ports: the development LLM
(``manage.py llm_devserver``, fixed first-token and inter-token delays) and one Parlor
server (``uvicorn config.asgi:application``) on the bench's scratch database, with the
in-memory channel layer. Clients are WebSocket clients of ``/ws/chat/`` (``?token=``
auth) and, for the baseline, the openai SDK's AsyncOpenAI streaming from the dev LLM
directly with the same prompt, in the same run:

1. time to first token of one stream (sequential replies), added p50/p95;
2. time to first token with 200 concurrent streams, added p95;
3. tokens per second relayed by the server (dev LLM without delays, many tokens);
4. peak RSS of the server process under that load, and database writes per reply
   (``bench.stream_writes``, in this process, counted at the cursor).

TTFT through Parlor runs from sending the ``send`` frame to the first ``token`` event;
directly, from calling ``create`` to the first chunk with content.
"""

import asyncio
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

FIRST_TOKEN_MS = 20
TOKEN_MS = 2
TOKENS = 200
SEQUENTIAL_REPLIES = 50
SEQUENTIAL_TOKENS = 50
SEQUENTIAL_SESSIONS = 5
CONCURRENT_STREAMS = 200
CONCURRENT_ROUNDS = 2
# (ms between tokens, tokens): 100 and 25 tokens/s a stream, i.e. 20,000 tokens/s in
# all (the SPEC's relay target) and 5,000 tokens/s, which this machine can sustain.
CONCURRENT_RATES = ((10, 100), (40, 50))
THROUGHPUT_STREAMS = 100
THROUGHPUT_TOKENS = 500
PHASE_TIMEOUT = 90.0
CONCURRENT_TIMEOUT = 180.0
TARGETS = {
    "added_ttft_p50_ms": 5.0,
    "added_ttft_p95_ms": 15.0,
    "added_ttft_p95_ms_200_streams": 50.0,
    "relayed_tokens_per_second": 20_000,
}


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _summary(samples: list[float]) -> dict:
    return {
        "n": len(samples),
        "p50_ms": round(_percentile(samples, 0.5), 2),
        "p95_ms": round(_percentile(samples, 0.95), 2),
        "max_ms": round(max(samples), 2),
    }


def _free_port() -> int:
    from chat.devllm import free_port

    return free_port(HOST)


def _proc_status(pid: int) -> dict:
    """Return VmHWM / VmRSS (MiB) and CPU seconds of a process, from /proc."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out["cpu_s"] = round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError):
        pass
    return out


class _Processes:
    """The dev LLM and the Parlor server as child processes, always stopped at the end."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.children: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        log = Path(self.workdir) / f"{name}.log"
        with open(log, "wb") as handle:
            proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT
            )
        self.children.append((name, proc, log))
        return proc

    def wait_http(self, name: str, url: str, timeout: float = 30.0) -> None:
        proc, log = next((p, lg) for n, p, lg in self.children if n == name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # it answered
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{name} did not answer {url} within {timeout:g} s")

    def log_tail(self, name: str) -> str:
        for n, _, log in self.children:
            if n == name and log.exists():
                return log.read_text(errors="replace")[-2000:]
        return ""

    def stop(self) -> None:
        for _, proc, _ in reversed(self.children):
            if proc.poll() is None:
                proc.terminate()
        for _, proc, _ in reversed(self.children):
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _make_users(count: int) -> list[str]:
    """Create ``count`` users (no password hashing) and return a token for each."""
    from django.contrib.auth.hashers import make_password
    from django.db import connection

    from accounts.models import User
    from accounts.tokens import token_issue

    prefix = f"bench-ws-{uuid.uuid4().hex[:6]}"
    unusable = make_password(None)
    User.objects.bulk_create(
        [User(username=f"{prefix}-{i}", password=unusable) for i in range(count)]
    )
    users = User.objects.filter(username__startswith=prefix).order_by("pk")
    tokens = [token_issue(user=user)[0] for user in users]
    connection.close()  # SQLite: hold no lock while the server writes
    return tokens


def _direct_messages(session_id: str, message_id: int, content: str) -> list[dict]:
    """Return what Parlor sent the LLM for a reply, with ``content`` as the question."""
    from django.db import connection

    from chat import prompting

    try:
        messages = list(
            prompting.reply_context(session_id=session_id, message_id=message_id).messages
        )
    finally:
        connection.close()
    if messages and messages[-1].get("role") == "user":
        messages[-1] = {"role": "user", "content": content}
    else:
        messages.append({"role": "user", "content": content})
    return messages


# Clients -------------------------------------------------------------------------------


class _Socket:
    """One WebSocket client of /ws/chat/."""

    def __init__(self, url: str, origin: str):
        self.url = url
        self.origin = origin
        self.ws = None

    async def open(self) -> "_Socket":
        from websockets.asyncio.client import connect

        self.ws = await connect(
            self.url, origin=self.origin, max_size=None, ping_interval=None, open_timeout=60
        )
        return self

    async def reply(self, session: str, content: str) -> dict:
        """Send one message; return TTFT, the usage and the relayed text length."""
        started = time.perf_counter()
        await self.ws.send(json.dumps({"type": "send", "session": session, "content": content}))
        first = None
        relayed = 0
        message = None
        stored = None
        while True:
            event = json.loads(await self.ws.recv())
            kind = event.get("type")
            if kind == "session":
                message = event.get("message")
                stored = time.perf_counter()
            elif kind == "token" and event.get("session") == session:
                if first is None and event.get("content"):
                    first = time.perf_counter()
                relayed += len(event.get("content", ""))
            elif kind == "done" and event.get("session") == session:
                usage = event.get("usage") or {}
                return {
                    "ttft_ms": ((first or time.perf_counter()) - started) * 1000,
                    "session_ms": ((stored or started) - started) * 1000,
                    "tokens": usage.get("completion_tokens") or 0,
                    "relayed_chars": relayed,
                    "length": event.get("length"),
                    "message": message,
                    "end": time.perf_counter(),
                }
            elif kind == "error":
                raise RuntimeError(f"Parlor answered an error: {event}")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def _direct_reply(client, messages: list[dict]) -> dict:
    started = time.perf_counter()
    stream = await client.chat.completions.create(
        model="parlor-dev",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
    )
    first = None
    tokens = 0
    async for chunk in stream:
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens or 0
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
    return {
        "ttft_ms": ((first or time.perf_counter()) - started) * 1000,
        "tokens": tokens,
        "end": time.perf_counter(),
    }


def _added(parlor: dict, direct: dict) -> dict:
    return {
        "p50_ms": round(parlor["p50_ms"] - direct["p50_ms"], 2),
        "p95_ms": round(parlor["p95_ms"] - direct["p95_ms"], 2),
        "ratio_p50": round(parlor["p50_ms"] / direct["p50_ms"], 3) if direct["p50_ms"] else None,
        "ratio_p95": round(parlor["p95_ms"] / direct["p95_ms"], 3) if direct["p95_ms"] else None,
    }


# Phases --------------------------------------------------------------------------------


async def _single_stream(ws_url, origin, token, client) -> tuple[dict, tuple[str, int, str]]:
    """Alternate Parlor and direct replies one at a time; return TTFT figures."""
    content = f"How do streams work? [dev:tokens={SEQUENTIAL_TOKENS}]"
    sock = await _Socket(f"{ws_url}?token={token}", origin).open()
    try:
        sessions = [str(uuid.uuid4()) for _ in range(SEQUENTIAL_SESSIONS)]
        last = None
        for session in sessions:  # warm-up: creates the sessions (and their title jobs)
            last = await sock.reply(session, content)
        await asyncio.sleep(0.3)  # let the title jobs finish
        return {"sessions": sessions, "content": content}, (sessions[-1], last["message"], content)
    finally:
        await sock.close()


async def _single_measure(ws_url, origin, token, client, sessions, content, messages) -> dict:
    sock = await _Socket(f"{ws_url}?token={token}", origin).open()
    parlor, stored, direct = [], [], []
    try:
        await _direct_reply(client, messages)  # warm the SDK's connection pool
        for i in range(SEQUENTIAL_REPLIES):
            # Interleaved, so drift on a shared machine hits both sides alike.
            result = await sock.reply(sessions[i % len(sessions)], content)
            parlor.append(result["ttft_ms"])
            stored.append(result["session_ms"])
            direct.append((await _direct_reply(client, messages))["ttft_ms"])
    finally:
        await sock.close()
    p, d = _summary(parlor), _summary(direct)
    added = _added(p, d)
    return {
        "replies": SEQUENTIAL_REPLIES,
        "tokens_per_reply": SEQUENTIAL_TOKENS,
        "parlor": p,
        "parlor_session_event": _summary(stored),
        "direct": d,
        "added": added,
        "target_added_p50_ms": TARGETS["added_ttft_p50_ms"],
        "target_added_p95_ms": TARGETS["added_ttft_p95_ms"],
        "met": added["p50_ms"] <= TARGETS["added_ttft_p50_ms"]
        and added["p95_ms"] <= TARGETS["added_ttft_p95_ms"],
    }


async def _concurrent(ws_url, origin, tokens, client, messages, server_pid) -> dict:
    """200 sockets, each with its own user and session, streaming at the same time.

    First a burst (every socket sends its first message at once: 200 new conversations
    and title jobs), then, at each per-stream rate of CONCURRENT_RATES, every socket
    sends CONCURRENT_ROUNDS messages spread over the length of a reply, so about 200
    streams are in flight; the dev LLM direct gets the same pattern.
    """
    sockets = await asyncio.gather(*(_Socket(f"{ws_url}?token={t}", origin).open() for t in tokens))
    sessions = [str(uuid.uuid4()) for _ in sockets]
    out: dict = {"streams": len(sockets), "rates": []}
    try:
        burst = await asyncio.gather(
            *(
                s.reply(x, "Tell me about concurrency.")
                for s, x in zip(sockets, sessions, strict=True)
            )
        )
        out["burst_first_message"] = {
            "tokens_per_reply": TOKENS,
            "token_ms": TOKEN_MS,
            "parlor": _summary([r["ttft_ms"] for r in burst]),
            "parlor_session_event": _summary([r["session_ms"] for r in burst]),
        }
        await asyncio.sleep(1.0)  # let the title jobs finish
        for token_ms, count in CONCURRENT_RATES:
            content = f"Tell me about concurrency. [dev:token_ms={token_ms}] [dev:tokens={count}]"
            spread = (FIRST_TOKEN_MS + token_ms * count) / 1000

            async def rounds(reply, spread=spread):
                results = []
                for _ in range(CONCURRENT_ROUNDS):
                    # Independent users: sends spread over one reply's length.
                    await asyncio.sleep(random.uniform(0, spread))
                    results.append(await reply())
                return results

            cpu0 = _proc_status(server_pid).get("cpu_s", 0.0)
            started = time.perf_counter()
            per_socket = await asyncio.gather(
                *(
                    rounds(lambda s=s, x=x, c=content: s.reply(x, c))
                    for s, x in zip(sockets, sessions, strict=True)
                )
            )
            elapsed = time.perf_counter() - started
            status = _proc_status(server_pid)
            parlor_results = [r for per in per_socket for r in per]
            direct_messages = messages[:-1] + [{"role": "user", "content": content}]
            per_direct = await asyncio.gather(
                *(rounds(lambda m=direct_messages: _direct_reply(client, m)) for _ in sockets)
            )
            parlor = _summary([r["ttft_ms"] for r in parlor_results])
            direct = _summary([r["ttft_ms"] for per in per_direct for r in per])
            added = _added(parlor, direct)
            out["rates"].append(
                {
                    "token_ms": token_ms,
                    "tokens_per_reply": count,
                    "offered_tokens_per_second": round(len(sockets) * 1000 / token_ms),
                    "replies": len(parlor_results),
                    "parlor": parlor,
                    "parlor_session_event": _summary([r["session_ms"] for r in parlor_results]),
                    "direct": direct,
                    "added": added,
                    "tokens_relayed_per_second": round(
                        sum(r["tokens"] for r in parlor_results) / elapsed, 1
                    ),
                    "server_cpu_share": round((status.get("cpu_s", 0.0) - cpu0) / elapsed, 2),
                    "met": added["p95_ms"] <= TARGETS["added_ttft_p95_ms_200_streams"],
                }
            )
        out["server_peak_rss_mib"] = _proc_status(server_pid).get("VmHWM")
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    out["target_added_p95_ms"] = TARGETS["added_ttft_p95_ms_200_streams"]
    out["met"] = all(rate["met"] for rate in out["rates"])
    return out


async def _throughput(ws_url, origin, tokens, client, messages, server_pid) -> dict:
    """Relay as fast as the dev LLM streams (no delays, long replies) on many sockets."""
    hint = f"[dev:tokens={THROUGHPUT_TOKENS}] [dev:token_ms=0] [dev:first_token_ms=0]"
    content = f"Stream as fast as you can. {hint}"
    streams = tokens[:THROUGHPUT_STREAMS]
    sockets = await asyncio.gather(
        *(_Socket(f"{ws_url}?token={t}", origin).open() for t in streams)
    )
    sessions = [str(uuid.uuid4()) for _ in sockets]
    try:
        # Warm-up on a short reply: sessions exist and their title jobs are done.
        short = "Warm up [dev:tokens=5] [dev:token_ms=0] [dev:first_token_ms=0]"
        await asyncio.gather(*(s.reply(x, short) for s, x in zip(sockets, sessions, strict=True)))
        await asyncio.sleep(0.5)
        cpu0 = _proc_status(server_pid).get("cpu_s", 0.0)
        started = time.perf_counter()
        results = await asyncio.gather(
            *(s.reply(x, content) for s, x in zip(sockets, sessions, strict=True))
        )
        elapsed = time.perf_counter() - started
        status = _proc_status(server_pid)
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    relayed = sum(r["tokens"] for r in results)
    complete = all(r["relayed_chars"] == r["length"] for r in results)
    direct_messages = messages[:-1] + [{"role": "user", "content": content}]
    started = time.perf_counter()
    direct_results = await asyncio.gather(
        *(_direct_reply(client, direct_messages) for _ in sockets)
    )
    direct_elapsed = time.perf_counter() - started
    direct_tokens = sum(r["tokens"] for r in direct_results)
    parlor_rate = relayed / elapsed
    direct_rate = direct_tokens / direct_elapsed
    return {
        "streams": len(sockets),
        "tokens_per_reply": THROUGHPUT_TOKENS,
        "parlor_tokens": relayed,
        "parlor_seconds": round(elapsed, 3),
        "parlor_tokens_per_second": round(parlor_rate, 1),
        "every_character_relayed": complete,
        "direct_tokens": direct_tokens,
        "direct_seconds": round(direct_elapsed, 3),
        "direct_tokens_per_second": round(direct_rate, 1),
        "ratio_to_direct": round(parlor_rate / direct_rate, 3) if direct_rate else None,
        "server_cpu_seconds": round(status.get("cpu_s", 0.0) - cpu0, 2),
        "server_peak_rss_mib": status.get("VmHWM"),
        "target_tokens_per_second": TARGETS["relayed_tokens_per_second"],
        "met": parlor_rate >= TARGETS["relayed_tokens_per_second"],
    }


def _database_writes() -> dict:
    from bench import stream_writes

    replies = stream_writes.run()["reply_1000_tokens"]
    return {
        "tokens_per_reply": stream_writes.TOKENS,
        "replies": [
            {
                k: r[k]
                for k in (
                    "token_ms",
                    "seconds",
                    "frames",
                    "writes_reply_start",
                    "writes_during_generation",
                    "writes_by_table",
                    "status",
                )
            }
            for r in replies
        ],
        "bounded": all(r["writes_during_generation"] < r["tokens"] / 10 for r in replies),
    }


def run() -> dict:
    """Start the dev LLM and one server, run every streaming phase, return the figures."""
    import openai
    from django.conf import settings

    # One INFO line per request from the SDK's HTTP client would bury the report.
    for name in ("httpx", "httpx2", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)

    database_url = os.environ["DATABASE_URL"]
    vendor = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    results: dict = {
        "setup": {
            "server": "uvicorn config.asgi:application (one process, in-memory channel layer)",
            "database": vendor,
            "cpus": os.cpu_count(),
            "dev_llm": {
                "first_token_ms": FIRST_TOKEN_MS,
                "token_ms": TOKEN_MS,
                "tokens": TOKENS,
            },
        }
    }
    tokens = _make_users(max(CONCURRENT_STREAMS, THROUGHPUT_STREAMS) + 1)
    with tempfile.TemporaryDirectory() as workdir:
        procs = _Processes(workdir)
        try:
            llm_port, port = _free_port(), _free_port()
            base_env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
            base_env.update(
                DJANGO_SETTINGS_MODULE="config.settings.local",
                DATABASE_URL=database_url,
                DEBUG="false",
                LOG_LEVEL="WARNING",
                ALLOWED_HOSTS=f"{HOST},localhost",
                PYTHONUNBUFFERED="1",
                # The bench measures streaming; the per-user send limit is not under test.
                THROTTLE_MESSAGES="1000000/min",
            )
            python = sys.executable
            procs.start(
                "devllm",
                [
                    python,
                    "manage.py",
                    "llm_devserver",
                    f"--host={HOST}",
                    f"--port={llm_port}",
                    f"--tokens={TOKENS}",
                    f"--first-token-ms={FIRST_TOKEN_MS}",
                    f"--token-ms={TOKEN_MS}",
                ],
                base_env,
            )
            llm_url = f"http://{HOST}:{llm_port}/v1"
            server = procs.start(
                "server",
                [
                    python,
                    "-m",
                    "uvicorn",
                    "config.asgi:application",
                    f"--host={HOST}",
                    f"--port={port}",
                    "--log-level=warning",
                    "--no-access-log",
                    "--ws=websockets",
                    "--lifespan=off",
                    "--backlog=2048",
                ],
                dict(base_env, LLM_BASE_URL=llm_url),
            )
            procs.wait_http("devllm", f"{llm_url}/models")
            procs.wait_http("server", f"http://{HOST}:{port}/healthz")
            results["setup"]["server_rss_at_start_mib"] = _proc_status(server.pid).get("VmRSS")
            ws_url = f"ws://{HOST}:{port}/ws/chat/"
            origin = f"http://{HOST}:{port}"

            async def phases() -> None:
                client = openai.AsyncOpenAI(base_url=llm_url, api_key="bench", max_retries=0)
                try:
                    info, (session, message, content) = await asyncio.wait_for(
                        _single_stream(ws_url, origin, tokens[-1], client), PHASE_TIMEOUT
                    )
                    messages = await asyncio.to_thread(_direct_messages, session, message, content)
                    results["prompt_messages"] = len(messages)
                    results["ttft_one_stream"] = await asyncio.wait_for(
                        _single_measure(
                            ws_url, origin, tokens[-1], client, info["sessions"], content, messages
                        ),
                        PHASE_TIMEOUT,
                    )
                    plain = messages[:-1] + [{"role": "user", "content": "Benchmark."}]
                    results["ttft_200_streams"] = await asyncio.wait_for(
                        _concurrent(
                            ws_url, origin, tokens[:CONCURRENT_STREAMS], client, plain, server.pid
                        ),
                        CONCURRENT_TIMEOUT,
                    )
                    results["throughput"] = await asyncio.wait_for(
                        _throughput(ws_url, origin, tokens, client, plain, server.pid),
                        PHASE_TIMEOUT,
                    )
                finally:
                    await client.close()

            try:
                asyncio.run(phases())
            except Exception as exc:
                results["error"] = f"{type(exc).__name__}: {exc}"
                results["server_log"] = procs.log_tail("server")
            results["server_memory"] = _proc_status(server.pid)
        finally:
            procs.stop()
    results["database_writes"] = _database_writes()
    return results


def summary(results: dict) -> str:
    """Return the human-readable lines of the streaming figures."""
    lines = []
    one = results.get("ttft_one_stream")
    if one:
        lines.append(
            f"TTFT one stream: Parlor p50 {one['parlor']['p50_ms']} / p95 "
            f"{one['parlor']['p95_ms']} ms, direct p50 {one['direct']['p50_ms']} / p95 "
            f"{one['direct']['p95_ms']} ms -> added p50 {one['added']['p50_ms']} ms "
            f"(target <= 5), p95 {one['added']['p95_ms']} ms (target <= 15): "
            f"{'met' if one['met'] else 'NOT met'}; send -> session event (reply_start) p50 "
            f"{one['parlor_session_event']['p50_ms']} ms"
        )
    many = results.get("ttft_200_streams")
    if many:
        burst = many["burst_first_message"]["parlor"]
        lines.append(
            f"200 sockets sending their first message at once: Parlor TTFT p50 "
            f"{burst['p50_ms']} / p95 {burst['p95_ms']} ms"
        )
        for rate in many["rates"]:
            lines.append(
                f"TTFT 200 streams at {rate['token_ms']} ms/token "
                f"({rate['offered_tokens_per_second']:,} tokens/s offered): Parlor p50 "
                f"{rate['parlor']['p50_ms']} / p95 {rate['parlor']['p95_ms']} ms, direct p50 "
                f"{rate['direct']['p50_ms']} / p95 {rate['direct']['p95_ms']} ms -> added p95 "
                f"{rate['added']['p95_ms']} ms (target <= 50): "
                f"{'met' if rate['met'] else 'NOT met'}"
            )
    tput = results.get("throughput")
    if tput:
        lines.append(
            f"Relayed tokens/s: Parlor {tput['parlor_tokens_per_second']:,.0f}, direct "
            f"{tput['direct_tokens_per_second']:,.0f} (ratio {tput['ratio_to_direct']}), "
            f"target >= 20,000: {'met' if tput['met'] else 'NOT met'}"
        )
    memory = results.get("server_memory")
    if memory:
        lines.append(f"Server peak RSS (VmHWM): {memory.get('VmHWM')} MiB")
    writes = results.get("database_writes")
    if writes:
        per = ", ".join(
            f"{r['writes_reply_start']}+{r['writes_during_generation']} at {r['token_ms']} ms/token"
            for r in writes["replies"]
        )
        lines.append(f"DB writes per 1,000-token reply (start+generation): {per}")
    if results.get("error"):
        lines.append(f"ERROR: {results['error']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from bench.__main__ import setup_django

    with tempfile.TemporaryDirectory() as tmpdir:
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        setup_django(tmpdir)
        figures = run()
        print(json.dumps(figures, indent=2))
        print(summary(figures))
