"""Token values never reach a server's log: a real uvicorn, a socket opened with ?token=."""

import logging
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from django.conf import settings
from django.db import connection
from uvicorn.logging import AccessFormatter
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from accounts.log_redaction import REDACTED, RedactTokensFilter, redact
from accounts.tokens import token_issue
from chat.devllm import free_port
from tests.factories import UserFactory


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/ws/chat/?token=abc-DEF_1", f"/ws/chat/?token={REDACTED}"),
        ("/x?a=1&TOKEN=abc&b=2", f"/x?a=1&TOKEN={REDACTED}&b=2"),
        ("/x?access_token=abc#f", f"/x?access_token={REDACTED}#f"),
        ('"GET /x?token=a%2Fb HTTP/1.1"', f'"GET /x?token={REDACTED} HTTP/1.1"'),
        ("/x?tokens=1", "/x?tokens=1"),
        ("/x?token=", "/x?token="),
    ],
)
def test_redact_masks_every_token_parameter(text, expected):
    assert redact(text) == expected


def test_the_filter_keeps_the_shape_uvicorns_access_formatter_unpacks():
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/healthz?token=secret-value", "1.1", 200),
        None,
    )
    assert RedactTokensFilter().filter(record) is True
    line = AccessFormatter("%(message)s", use_colors=False).format(record)
    assert line == f'127.0.0.1:5000 - "GET /healthz?token={REDACTED} HTTP/1.1" 200'


def test_the_app_installs_it_on_the_server_loggers():
    for name in ("uvicorn.error", "uvicorn.access", "django.channels.server", "django.server"):
        assert any(isinstance(f, RedactTokensFilter) for f in logging.getLogger(name).filters)


def _database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_a_real_uvicorn_logs_no_token_value(tmp_path):
    raw, _ = token_issue(user=UserFactory())
    port = free_port()
    log_path = tmp_path / "uvicorn.log"
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=_database_url(),
        PYTHONUNBUFFERED="1",
    )
    command = [sys.executable, "-m", "uvicorn", "config.asgi:application"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "info"]
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            try:
                with urllib.request.urlopen(f"{base}/healthz?token={raw}", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        with connect(f"ws://127.0.0.1:{port}/ws/chat/?token={raw}", open_timeout=10) as socket:
            socket.close()
        # The way that puts no token in any URL: the subprotocol, answered with "parlor".
        with connect(
            f"ws://127.0.0.1:{port}/ws/chat/",
            subprotocols=["parlor", f"bearer.{raw}"],
            open_timeout=10,
        ) as socket:
            assert socket.subprotocol == "parlor"
        with pytest.raises(InvalidStatus):
            connect(f"ws://127.0.0.1:{port}/ws/chat/?token={raw}x", open_timeout=10)
    finally:
        server.terminate()
        server.wait(timeout=30)

    output = log_path.read_text()
    # The lines were written (so the test can fail), with the value masked.
    assert f'"WebSocket /ws/chat/?token={REDACTED}" [accepted]' in output, output
    assert '"WebSocket /ws/chat/" [accepted]' in output, output
    assert f'"WebSocket /ws/chat/?token={REDACTED}" 403' in output, output
    assert f'"GET /healthz?token={REDACTED} HTTP/1.1" 200' in output, output
    assert raw not in output
