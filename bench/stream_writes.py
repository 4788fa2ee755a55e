"""Database writes of one long reply, counted at the cursor (``python -m bench.stream_writes``).

Parlor's ASGI application (``config.asgi:application``, the public entry point) is served
by uvicorn from a thread of this process, so every INSERT/UPDATE/DELETE it runs can be
counted at Django's cursor; the reply itself goes through ``POST /api/chat/stream`` from
outside, so nothing here depends on how the engine is built. Upstream: the bench's fake
upstream (``[dev:…]`` hints: 1,000 tokens, at full speed and at 5 ms/token, i.e. ~200
tokens/s, faster than real providers).

Writes are split at the ``session`` event (``reply_start``: the user message, the reply's
placeholder, the conversation) and counted until the reply is final plus a short settle
(the final save and whatever follows it), into an existing conversation (no title job).
"""

import asyncio
import json
import re
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOKENS = 1000
SETTLE = 1.0
# Every write of a query, wherever it stands: PostgreSQL's reply path joins statements
# (a data-modifying WITH, two statements in one query: chat/sql.py). Not "FOR UPDATE" (a
# lock) nor "ON CONFLICT ... DO UPDATE" (the upsert's INSERT is counted).
WRITE = re.compile(
    r'(?<!FOR )(?<!DO )\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)"?', re.IGNORECASE
)


class _Writes:
    """Every INSERT/UPDATE/DELETE run through Django's cursors, with its table."""

    def __init__(self):
        from django.db.backends import utils

        self.lock = threading.Lock()
        self.rows: list[tuple[float, str]] = []
        self._utils = utils
        self._original = utils.CursorWrapper._execute_with_wrappers
        original = self._original
        writes = self

        def counting(cursor, sql, params, many, executor):
            tables = WRITE.findall(sql)
            if tables:
                at = time.perf_counter()
                with writes.lock:
                    writes.rows.extend((at, table) for table in tables)
            return original(cursor, sql, params, many, executor)

        utils.CursorWrapper._execute_with_wrappers = counting

    def between(self, start: float, end: float) -> list[str]:
        with self.lock:
            return [t for at, t in self.rows if start <= at < end]

    def restore(self) -> None:
        self._utils.CursorWrapper._execute_with_wrappers = self._original


class _ThreadServer:
    """uvicorn serving ``config.asgi:application`` from a thread of this process."""

    def __init__(self):
        import uvicorn

        from bench.procs import HOST, free_port

        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        config = uvicorn.Config(
            "config.asgi:application",
            host=HOST,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="on",  # as the servers run: its shutdown closes the LLM client
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="bench-server", daemon=True)

    def start(self) -> "_ThreadServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


async def _reply(base: str, token: str, session: str, content: str) -> dict:
    """One SSE reply; return when the session event and the final event came, and frames."""
    import aiohttp

    marks: dict = {"token_events": 0, "text": []}
    started = time.perf_counter()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base}/api/chat/stream",
            json={"message": content, "session": session},
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=120),
        ) as resp,
    ):
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {(await resp.text())[:200]}")
        buf = b""
        async for data in resp.content.iter_any():
            buf += data
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                if not line.startswith(b"data:"):
                    continue
                event = json.loads(line[5:])
                kind = event.get("type")
                if kind == "session":
                    marks["session"] = time.perf_counter()
                elif kind == "token" and event.get("content"):
                    marks["token_events"] += 1
                    marks["text"].append(event["content"])
                elif kind in ("done", "error"):
                    marks["end"] = time.perf_counter()
                    marks["status"] = kind
                    if kind == "error":
                        raise RuntimeError(f"error event: {event.get('error')}")
    marks["started"] = started
    marks["end"] = marks.get("end", time.perf_counter())
    marks["session"] = marks.get("session", started)
    return marks


def run(upstream_url: str | None = None) -> dict:
    """Return write counts of a 1,000-token reply at two speeds."""
    from django.conf import settings
    from django.db import connections

    from bench.loadclient import TOK_RE

    own_upstream = None
    if upstream_url is None:
        from bench import procs

        own_upstream, upstream_url = procs.start_upstream(Path(tempfile.mkdtemp()))
    # The LLM is read at the first request; the send limit and REDIS_URL (none: the
    # in-memory layer) were set before Django started (bench.__main__.setup_django).
    settings.LLM_BASE_URL = upstream_url
    settings.LLM_MODEL = "fake-model"
    from bench.__main__ import make_tokens

    _, tokens = make_tokens(1, "bench-writes")
    writes = _Writes()
    server = _ThreadServer().start()
    session = str(uuid.uuid4())
    out = []
    try:

        async def main():
            await _reply(server.base, tokens[0], session, "Warm up [dev:tokens=5]")
            await asyncio.sleep(SETTLE)  # its title job
            for token_ms in (0, 5):
                content = f"Bench [dev:tokens={TOKENS}] [dev:token_ms={token_ms}]"
                marks = await _reply(server.base, tokens[0], session, content)
                await asyncio.sleep(SETTLE)
                start = writes.between(marks["started"], marks["session"])
                during = writes.between(marks["session"], marks["end"] + SETTLE)
                streaming = marks["end"] - marks["session"]
                out.append(
                    {
                        "token_ms": token_ms,
                        "tokens": len(TOK_RE.findall("".join(marks["text"]))),
                        "seconds": round(marks["end"] - marks["started"], 3),
                        "frames": marks["token_events"],
                        "frames_per_second": round(marks["token_events"] / streaming, 1)
                        if streaming > 0
                        else None,
                        "writes_reply_start": len(start),
                        "writes_during_generation": len(during),
                        "writes_total": len(start) + len(during),
                        "writes_by_table": {t: during.count(t) for t in sorted(set(during))},
                        "status": marks.get("status"),
                    }
                )

        asyncio.run(main())
    finally:
        server.stop()
        writes.restore()
        connections.close_all()
        if own_upstream is not None:
            own_upstream.stop()
    return {"reply_1000_tokens": out}


if __name__ == "__main__":
    from bench.__main__ import setup_django

    with tempfile.TemporaryDirectory() as tmpdir:
        setup_django(tmpdir)
        print(json.dumps(run(), indent=2))
