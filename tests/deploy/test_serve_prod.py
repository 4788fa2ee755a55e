"""Two workers behind nginx, as ``make serve-prod`` runs them (SPEC 4.6 "Production").

deploy/serve_prod.py starts nginx and two uvicorn workers with the production settings on
the test database (PostgreSQL), Redis and the development LLM. Every client-facing request
goes through nginx; which worker served it is read from the ``X-Parlor-Worker`` header
each worker adds, and nginx's least-connections balancing sends a new request to the
worker holding fewer connections. Only the probes of one worker (``/readyz`` while it
drains) and the check that each worker's scrape sums both go to a worker's own port.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import aiohttp
import pytest
from django.conf import settings
from websockets.asyncio.client import connect

from tests.servers import ServeProd, prepare_database, server_env, shared_database

METRICS_TOKEN = "metrics-token-for-tests-0123456789"
# SHUTDOWN_GRACE of the workers, seconds: shorter than the reply cut by SIGTERM (12 s),
# longer than the probes of the draining worker take.
GRACE = 5
SECRET = "Zanzibar-marmalade"  # in every prompt: it must reach no log line


@pytest.fixture
def production(nginx, redis_url, dev_llm_server, tmp_path):
    """Start serve-prod (two workers, JSON logs); return (it, an API token)."""
    database_url, migrate = shared_database(tmp_path)
    env = server_env(
        database_url=database_url,
        llm_base_url=dev_llm_server.base_url,
        REDIS_URL=redis_url,
        METRICS_TOKEN=METRICS_TOKEN,
        LOG_FORMAT="json",
        SHUTDOWN_GRACE=GRACE,
        STATIC_ROOT=tmp_path / "static",
    )
    token = prepare_database(env, migrate=migrate)
    prod = ServeProd(env, log=tmp_path / "serve-prod.log", nginx=nginx).start()
    yield prod, token
    prod.stop()
    print(prod.output()[-20000:])  # shown when the test fails


async def next_event(ws, timeout: float = 15.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def events_until(ws, *, message: int | None = None, tokens: int | None = None) -> list:
    """Return a socket's events up to the end of reply ``message`` (or that many tokens)."""
    events = []
    while True:
        event = await next_event(ws)
        events.append(event)
        if tokens is not None and sum(e["type"] == "token" for e in events) >= tokens:
            return events
        ends = event["type"] in ("done", "error")
        if ends and (message is None or event.get("message") == message):
            return events


class Stream:
    """One SSE request through nginx, read in the background."""

    def __init__(self, http, url: str, token: str, body: dict):
        self.http, self.url, self.token, self.body = http, url, token, body
        self.events: list[dict] = []
        self.headers = None
        self.started = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def open(self) -> "Stream":
        """Send it; return once its first event is read."""
        self.task = asyncio.create_task(self._read())
        started = asyncio.create_task(self.started.wait())
        await asyncio.wait([self.task, started], timeout=15, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self.task.done():
            self.task.result()  # its failure, if it failed
        assert self.events, "no event in 15 s"
        return self

    async def _read(self) -> None:
        async with self.http.post(
            f"{self.url}/api/chat/stream",
            json=self.body,
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            assert response.status == 200, await response.text()
            self.headers = response.headers
            async for line in response.content:
                if line.startswith(b"data: "):
                    self.events.append(json.loads(line[6:]))
                    self.started.set()

    @property
    def worker(self) -> str:
        return self.headers["X-Parlor-Worker"]

    @property
    def first(self) -> dict:
        return self.events[0]

    async def ended(self, timeout: float = 20.0) -> list[dict]:
        await asyncio.wait_for(self.task, timeout)
        return self.events


def text_of(events, message: int) -> str:
    return "".join(
        e["content"] for e in events if e["type"] == "token" and e.get("message") == message
    )


async def scrape(http, url: str, token: str | None = METRICS_TOKEN) -> tuple[int, dict]:
    """Return /metrics' status and its samples ({'name{labels}': value})."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with http.get(f"{url}/metrics", headers=headers) as response:
        body = await response.text()
        if response.status != 200:
            return response.status, {}
    samples = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return 200, samples


def replies(samples: dict) -> dict:
    return {
        status: samples.get(f'parlor_replies_total{{status="{status}"}}', 0.0)
        for status in ("complete", "stopped", "error")
    }


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1].startswith("Z")  # exited, not yet reaped
    except OSError:
        return True


@pytest.mark.postgres_only
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_two_workers_behind_nginx_share_streams_drain_and_count(production):
    prod, token = production
    auth = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        connect(f"{prod.ws_url}?token={token}", proxy=None) as tab,
    ):
        tab_worker = tab.response.headers["X-Parlor-Worker"]

        # A reply started over SSE on the other worker reaches the tab live.
        sse = await Stream(
            http, prod.url, token, {"message": f"{SECRET} [dev:tokens=200] [dev:token_ms=10]"}
        ).open()
        writer = sse.worker
        assert writer != tab_worker, "nginx sent the SSE request to the tab's worker"
        session, first_reply = sse.first["session"], sse.first["message"]
        await tab.send(json.dumps({"type": "subscribe", "session": session}))
        seen = await events_until(tab, message=first_reply)
        streamed = await sse.ended()
        assert seen[-1]["type"] == "done" and seen[-1]["status"] == "complete"
        assert text_of(seen, first_reply) == text_of(streamed, first_reply)
        assert len(text_of(seen, first_reply).split()) == 200
        assert sum(e["type"] == "token" for e in seen) > 1  # caught up, then live frames
        offsets = [e["offset"] for e in seen if e["type"] == "token"]
        assert offsets == sorted(offsets)

        # Stop from the tab's worker a reply the other one writes...
        sse = await Stream(
            http,
            prod.url,
            token,
            {"message": f"{SECRET} [dev:tokens=5000] [dev:token_ms=2]", "session": session},
        ).open()
        assert sse.worker == writer
        reply = sse.first["message"]
        await events_until(tab, tokens=1)
        await tab.send(json.dumps({"type": "stop", "session": session}))
        ended = (await events_until(tab, message=reply))[-1]
        assert (ended["type"], ended["status"]) == ("done", "stopped")
        assert (await sse.ended())[-1]["status"] == "stopped"

        # ... and from the other worker one that the tab's worker writes.
        content = f"{SECRET} [dev:tokens=5000] [dev:token_ms=2]"
        await tab.send(json.dumps({"type": "send", "session": session, "content": content}))
        started = await events_until(tab, tokens=1)
        reply = next(e["message"] for e in started if e["type"] == "token")
        async with http.post(f"{prod.url}/api/sessions/{session}/stop/", headers=auth) as r:
            assert (r.status, await r.json()) == (200, {"stopped": True})
            assert r.headers["X-Parlor-Worker"] == writer != tab_worker
        ended = (await events_until(tab, message=reply))[-1]
        assert (ended["type"], ended["status"]) == ("done", "stopped")

        # One scrape through nginx counts the replies of both workers; so does each
        # worker's own; without the token, or with another, nothing.
        counted = {"complete": 1.0, "stopped": 2.0, "error": 0.0}
        status, through_nginx = await scrape(http, prod.url)
        assert status == 200 and replies(through_nginx) == counted
        for number in (1, 2):
            worker_url = f"http://127.0.0.1:{prod.worker(number)['port']}"
            assert replies((await scrape(http, worker_url))[1]) == counted
        assert (await scrape(http, prod.url, token=None))[0] == 403
        assert (await scrape(http, prod.url, token="not-" + METRICS_TOKEN))[0] == 403

        # SIGTERM to the worker writing a reply, mid-stream: it stops being ready, the
        # reply ends saved and marked (or complete), the tab is told, nothing is lost.
        sse = await Stream(
            http,
            prod.url,
            token,
            {"message": f"{SECRET} [dev:tokens=600] [dev:token_ms=20]", "session": session},
        ).open()
        assert sse.worker == writer
        reply, question = sse.first["message"], sse.first["user_message"]
        head = await events_until(tab, tokens=5)
        doomed = prod.worker(int(writer))
        os.kill(doomed["pid"], signal.SIGTERM)
        await asyncio.sleep(0.3)
        async with http.get(f"http://127.0.0.1:{doomed['port']}/readyz") as r:
            drain = (r.status, (await r.json())["status"])
        async with http.get(f"http://127.0.0.1:{doomed['port']}/healthz") as r:
            alive = r.status
        served_while_draining = []
        for _ in range(3):  # the draining worker answers 503; nginx asks the other one
            async with http.get(f"{prod.url}/api/sessions/", headers=auth) as r:
                served_while_draining.append((r.status, r.headers["X-Parlor-Worker"]))
        tail = await events_until(tab, message=reply)
        assert drain == (503, "draining")
        assert alive == 200
        assert served_while_draining == [(200, tab_worker)] * 3
        told = tail[-1]
        assert (told["type"], told.get("code"), told.get("status")) in (
            ("error", "interrupted", None),
            ("done", None, "complete"),
        )
        assert (await sse.ended())[-1]["type"] == told["type"]
        deadline = time.monotonic() + GRACE + 15
        while not process_gone(doomed["pid"]) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert process_gone(doomed["pid"]), "the worker did not exit after its drain"

        async with http.get(f"{prod.url}/api/sessions/{session}/messages/", headers=auth) as r:
            assert r.headers["X-Parlor-Worker"] == tab_worker
            rows = {row["id"]: row for row in (await r.json())["results"]}
        assert rows[question]["content"].startswith(SECRET)
        saved = rows[reply]
        assert saved["content"] == text_of(head + tail, reply)
        if told["type"] == "error":
            assert (saved["status"], saved["error"]) == ("error", "interrupted")
        else:
            assert saved["status"] == "complete"

        # The next message is served by the worker that is left, and the tab sees it.
        sse = await Stream(
            http, prod.url, token, {"message": f"{SECRET} again", "session": session}
        ).open()
        assert sse.worker == tab_worker
        last = sse.first["message"]
        assert (await sse.ended())[-1]["type"] == "done"
        assert (await events_until(tab, message=last))[-1]["status"] == "complete"

        # The stopped worker's counts stay; its live gauges (streams, sockets) are gone.
        status, samples = await scrape(http, prod.url)
        ended_as = "error" if told["type"] == "error" else "complete"
        counted = {"complete": 2.0, "stopped": 2.0, "error": 0.0}
        counted[ended_as] += 1
        assert replies(samples) == counted
        assert samples["parlor_ttft_seconds_count"] == 5
        assert samples["parlor_tokens_relayed_total"] >= 200 + 5
        assert samples["parlor_streams_active"] == 0
        assert samples["parlor_websockets_open"] == 1  # the tab

        # nginx's request id is the one the app logs under.
        async with http.get(f"{prod.url}/no-such-page") as r:
            missing_id = r.headers["X-Request-ID"]
        next_id = sse.headers["X-Request-ID"]

    # Stopped as by ^C's SIGTERM: every process ends, serve-prod last, cleanly.
    prod.signal(signal.SIGTERM)
    assert prod.wait(GRACE + 30) == 0
    assert prod.running_pids() == []

    output = prod.output()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert all(
        {"process", "timestamp", "level", "logger", "message", "request_id"} <= set(line)
        for line in lines
    )
    access = {line["request_id"]: line for line in lines if line["logger"] == "nginx.access"}
    assert access[next_id]["path"] == "/api/chat/stream"
    assert access[next_id]["upstream"] == f"127.0.0.1:{prod.worker(int(tab_worker))['port']}"
    assert any(
        line["logger"] == "django.request" and line["request_id"] == missing_id for line in lines
    )
    stopped = f"worker-{writer} (pid {doomed['pid']}) stopped"
    assert stopped in output and f"worker-{writer} started again" not in output
    # Message text, the token and the metrics token reach no log line.
    assert SECRET not in output
    assert token not in output and METRICS_TOKEN not in output
    assert "token=" not in output.replace("token=[redacted]", "")


def test_serve_prod_refuses_to_start_without_postgresql_and_redis(tmp_path):
    env = server_env(database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", llm_base_url="")
    result = subprocess.run(
        [sys.executable, "deploy/serve_prod.py", "--port", "1"],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "DATABASE_URL must name PostgreSQL" in result.stderr
    assert "REDIS_URL must name Redis" in result.stderr
