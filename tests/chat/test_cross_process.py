"""Two real server processes sharing Redis and one database.

A reply started through process A is received live by a socket subscribed on process B,
and B can stop it: the channel layer carries the tokens, the snapshot and the stop.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request

import aiohttp
import pytest
from django.conf import settings
from django.db import connection

from chat.devllm import free_port

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

BOOTSTRAP = """
from accounts.models import User
from accounts.tokens import token_issue
user = User.objects.create_user("crossproc", password="pw-for-tests-123")
print(token_issue(user=user)[0])
"""


def _database_url(tmp_path) -> tuple[str, bool]:
    """Return a database URL the server processes share; SQLite needs its own file."""
    if connection.vendor == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.sqlite3'}", True
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST']}:{s['PORT']}/{s['NAME']}", False


def _wait_healthy(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server on {port} exited: {process.stdout.read().decode()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"server on {port} did not become healthy")


@pytest.fixture
def two_servers(redis_url, dev_llm_server, tmp_path):
    database_url, migrate = _database_url(tmp_path)
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        LLM_BASE_URL=dev_llm_server.base_url,
        LLM_TIMEOUT="10",
    )
    manage = [sys.executable, "manage.py"]
    if migrate:
        subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True, timeout=120)
    token = (
        subprocess.run(
            [*manage, "shell", "-c", BOOTSTRAP],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
            cwd=settings.BASE_DIR,
        )
        .stdout.decode()
        .strip()
        .splitlines()[-1]
    )
    ports = [free_port(), free_port()]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
            + ["config.asgi:application"],
            env=env,
            cwd=settings.BASE_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for port in ports
    ]
    try:
        for port, process in zip(ports, processes, strict=True):
            _wait_healthy(port, process)
        yield ports, token
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
            # Shown by pytest when the test fails.
            print(process.stdout.read().decode(errors="replace")[-5000:])


async def _events(ws, *, until=("done", "error"), timeout=15.0) -> list[dict]:
    events = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                event = json.loads(await ws.receive_str())
                events.append(event)
                if event["type"] in until:
                    return events
    except TimeoutError:
        kinds = [(e["type"], e.get("message"), e.get("offset")) for e in events]
        raise AssertionError(f"no {until} event within {timeout} s; got {kinds}") from None


async def test_reply_on_process_a_streams_live_to_process_b_and_b_can_stop(two_servers):
    (port_a, port_b), token = two_servers
    async with aiohttp.ClientSession() as http:
        a = await http.ws_connect(f"ws://127.0.0.1:{port_a}/ws/chat/?token={token}")
        b = await http.ws_connect(f"ws://127.0.0.1:{port_b}/ws/chat/?token={token}")
        await a.send_json(
            {"type": "send", "content": "Across processes [dev:tokens=200] [dev:token_ms=4]"}
        )
        head = await _events(a, until=("token",))
        session_id = head[0]["session"]
        await b.send_json({"type": "subscribe", "session": session_id})
        seen_by_b = await _events(b)
        seen_by_a = head + await _events(a)

        tokens_b = [e for e in seen_by_b if e["type"] == "token"]
        text_a = "".join(e["content"] for e in seen_by_a if e["type"] == "token")
        offset = 0
        for event in tokens_b:
            assert event["offset"] == offset
            offset += len(event["content"])
        assert "".join(e["content"] for e in tokens_b) == text_a
        assert len(text_a.split()) >= 190
        # B joined mid-reply: it got the snapshot, then live frames from process A.
        assert len(tokens_b) > 1
        assert seen_by_b[-1]["type"] == "done"
        assert seen_by_b[-1]["html"] == seen_by_a[-1]["html"]

        # Stop from process B a reply that process A is writing.
        await a.send_json(
            {
                "type": "send",
                "session": session_id,
                "content": "Again [dev:tokens=5000] [dev:token_ms=2]",
            }
        )
        await _events(a, until=("token",))
        await b.send_json({"type": "stop", "session": session_id})
        stopped = await _events(a)
        assert stopped[-1]["type"] == "done" and stopped[-1]["status"] == "stopped"

        # SSE through a real ASGI server: the client leaves after the first event, the
        # reply is still written to the end and saved.
        async with http.post(
            f"http://127.0.0.1:{port_a}/api/chat/stream",
            json={"message": "Over SSE [dev:tokens=200] [dev:token_ms=3]", "session": session_id},
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.headers["Content-Type"] == "text/event-stream"
            first = json.loads((await response.content.readline()).decode()[6:])
        assert first["type"] == "session"
        live = await _events(a)  # socket A is in the session's group and sees it all
        assert live[-1]["type"] == "done" and live[-1]["status"] == "complete"
        c = await http.ws_connect(f"ws://127.0.0.1:{port_b}/ws/chat/?token={token}")
        await c.send_json({"type": "subscribe", "session": session_id})
        stored = await _events(c)
        await c.close()
        assert stored[-1]["message"] == first["message"]
        text = "".join(e["content"] for e in stored if e["type"] == "token")
        assert len(text.split()) == 200
        await a.close()
        await b.close()
