"""End-to-end fixtures: a live daphne server, the development LLM over HTTP, Chromium.

The server is a subprocess serving ``config.asgi:application`` on a socket bound to a
free port. It uses the test database on PostgreSQL and a fresh migrated file on SQLite
(an in-memory test database cannot be shared with another process). Tests only act
through the browser, so they never depend on which of the two it is.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.db import connection

from chat.devllm import DevConfig, DevLLMThread

# Debian's chromium package; PARLOR_CHROMIUM names another (scripts/ensure-chromium.sh too).
CHROMIUM = os.environ.get("PARLOR_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SERVER_START_TIMEOUT = 30


CHROMIUM_MISSING = (
    f"Chromium ({CHROMIUM}) is not installed; run as root or apt-get install chromium; "
    ".ci/run runs these"
)


_IMPORT_MANY = """async ([token, count]) => {
  for (let i = 0; i < count; i++) {
    const response = await fetch("/api/sessions/import/", {
      method: "POST",
      headers: {"Content-Type": "application/json", "X-CSRFToken": token},
      body: JSON.stringify({format: "parlor.conversation", version: 1,
                            conversation: {title: `Imported ${i}`},
                            messages: [{role: "user", content: "hi"}]}),
    });
    if (response.status !== 201) throw new Error(await response.text());
  }
}"""


def _chromium_missing() -> bool:
    return not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK))


def pytest_collection_modifyitems(config, items):
    """Mark every test here as e2e; skip them when Chromium is missing, except in CI
    (REQUIRE_SERVICES=1), where the ``chromium`` fixture fails them instead."""
    here = Path(__file__).parent
    skip = _chromium_missing() and not os.environ.get("REQUIRE_SERVICES")
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.e2e)
            if skip:
                item.add_marker(pytest.mark.skip(reason=CHROMIUM_MISSING))


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable; in CI (REQUIRE_SERVICES=1) its absence fails."""
    if _chromium_missing():
        if os.environ.get("REQUIRE_SERVICES"):
            pytest.fail(f"Chromium is required (REQUIRE_SERVICES=1): {CHROMIUM_MISSING}")
        pytest.skip(CHROMIUM_MISSING)
    return CHROMIUM


def _database_url(workdir: Path) -> str:
    """Return the URL of a database the server process can share with this one."""
    settings = connection.settings_dict
    if connection.vendor == "postgresql":
        # Never point a server that the tests flush at a database that is not a test one.
        assert settings["NAME"].startswith("test"), settings["NAME"]
        auth = settings["USER"] or ""
        if settings.get("PASSWORD"):
            auth += f":{settings['PASSWORD']}"
        host = settings["HOST"] or "127.0.0.1"
        port = settings["PORT"] or 5432
        return f"postgres://{auth}@{host}:{port}/{settings['NAME']}"
    return f"sqlite:///{workdir / 'e2e.sqlite3'}"


def _wait_for_http(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the live server exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the live server did not answer in time:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def e2e_llm():
    """The development LLM, quick by default; a message can slow it with [dev:…] hints."""
    server = DevLLMThread(DevConfig(tokens=40, first_token_ms=30, token_ms=8)).start()
    yield server
    server.stop()


class LiveServer:
    """A server process on a port of its own, which a test may stop (SIGTERM, SIGKILL)
    and start again on the same port and database, as a deploy or a crash does."""

    def __init__(self, env: dict, log: Path, kind: str = "daphne"):
        self.env = env
        self.log = log
        self.kind = kind
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LiveServer":
        # The socket is bound here and handed over (--fd), so the port is known before
        # the server runs; bound again with SO_REUSEADDR after a restart.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        if self.kind == "uvicorn":
            argv = ["-m", "uvicorn", "--fd", str(listener.fileno())]
        else:
            argv = ["-m", "daphne", "--fd", str(listener.fileno())]
        with open(self.log, "a") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, *argv, "config.asgi:application"],
                cwd=ROOT,
                env=self.env,
                pass_fds=[listener.fileno()],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        listener.close()
        _wait_for_http(f"{self.url}/accounts/login/", self.process, self.log)
        return self

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def _server_env(workdir: Path, llm_base_url: str, **extra) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.e2e.server_settings",
        "DATABASE_URL": _database_url(workdir),
        "LLM_BASE_URL": llm_base_url,
        "LLM_TIMEOUT": "10",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    env.update({key: str(value) for key, value in extra.items()})
    return env


@pytest.fixture(scope="session")
def e2e_workdir(django_db_setup, django_db_blocker, e2e_llm):
    """A folder for the servers' files and, on SQLite, their migrated database."""
    ARTIFACTS.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="parlor-e2e-"))
    if connection.vendor != "postgresql":
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=_server_env(workdir, e2e_llm.base_url),
            check=True,
            timeout=120,
        )
    yield workdir
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def live_url(e2e_workdir, e2e_llm):
    """Start daphne on a free port against the shared database; return its base URL."""
    log = ARTIFACTS / "e2e-server.log"
    log.write_text("")
    server = LiveServer(_server_env(e2e_workdir, e2e_llm.base_url), log)
    try:
        yield server.start().url
    finally:
        server.stop()


@pytest.fixture
def restartable_server(e2e_workdir, e2e_llm):
    """Return a factory of servers of the test's own (same database), to stop and restart.

    Production's sweep of replies whose writer died runs in them (every second), and
    ``SHUTDOWN_GRACE`` and the kind of server are the test's to choose.
    """
    started: list[LiveServer] = []

    def start(kind: str = "daphne", **extra) -> LiveServer:
        env = _server_env(e2e_workdir, e2e_llm.base_url, PARLOR_RECOVERY_INTERVAL=1, **extra)
        log = ARTIFACTS / f"e2e-restartable-{kind}-{len(started)}.log"
        log.write_text("")
        server = LiveServer(env, log, kind=kind)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def browser(chromium):
    """Chromium for one module: Playwright's sync API keeps an event loop running in this
    thread while it is open, which the async tests of other modules must not inherit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(autouse=True)
def _e2e_database(monkeypatch, transactional_db):
    """Commit for real (the server is another process) and empty the database afterwards,
    once the server has finished what it was writing.

    Playwright's sync API keeps an event loop current in this thread, which Django takes
    for async code; the test itself never touches the ORM while a page is open. The
    variable is set before ``transactional_db`` and so still set when it flushes.
    """
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    yield
    _wait_until_the_server_is_done_with_the_database()


# The server may still be writing when a test ends (a title job, a request the closed page
# had sent): a flush (TRUNCATE of every table) that started meanwhile could deadlock with
# that transaction on PostgreSQL. Its work takes milliseconds; the wait is bounded.
QUIET_TIMEOUT = 5.0


def _wait_until_the_server_is_done_with_the_database() -> None:
    if connection.vendor != "postgresql":
        return  # SQLite: the server has a database file of its own
    deadline = time.monotonic() + QUIET_TIMEOUT
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
                " AND state IN ('active', 'idle in transaction')"
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.05)


class Page:
    """A browser tab on the live server with the few helpers every scenario uses."""

    def __init__(self, page, base: str, problems: list[str]):
        self.page = page
        self.base = base
        self.problems = problems

    def __getattr__(self, name):
        return getattr(self.page, name)

    def open(self, path: str):
        return self.page.goto(self.base + path)

    def sign_up(self, username: str | None = None) -> str:
        username = username or f"u{uuid.uuid4().hex[:10]}"
        self.open("/accounts/signup/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password1", "a-Strong-pass-4-tests")
        self.page.fill("#id_password2", "a-Strong-pass-4-tests")
        self.page.click("button[type=submit]")
        self.page.wait_for_url(self.base + "/new")
        return username

    def send(self, text: str) -> None:
        composer = self.page.locator("#composer-input")
        composer.fill(text)
        composer.press("Enter")

    def wait_idle(self, timeout: float = 15_000) -> None:
        """Wait until no reply is streaming in the page."""
        self.page.wait_for_selector("#send-btn:not([hidden])", timeout=timeout)
        self.page.wait_for_function(
            "() => !document.querySelector('.msg-assistant.streaming')", timeout=timeout
        )

    def csrf_token(self) -> str:
        """The page's CSRF token (htmx sends it from the body's hx-headers)."""
        return self.page.evaluate(
            "JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken']"
        )

    def import_conversations(self, count: int) -> None:
        """Import ``count`` one-message conversations through the API, as this tab."""
        self.page.evaluate(_IMPORT_MANY, [self.csrf_token(), count])

    def settled(self, timeout: float = 5_000) -> None:
        """Wait until htmx has no request in flight and has wired what it swapped in: it
        wires new content when it settles (20 ms after the swap), and a click before that
        does nothing."""
        self.page.wait_for_function(
            "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')",
            timeout=timeout,
        )

    def screenshot_to(self, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        return path


@pytest.fixture
def open_page(browser, live_url):
    """Return a factory of fresh browser tabs (each its own cookie jar unless shared)."""
    contexts = []
    problems: list[str] = []

    def make(*, width=1280, height=800, context=None, base=None, color_scheme=None) -> Page:
        if context is None:
            context = browser.new_context(
                viewport={"width": width, "height": height},
                color_scheme=color_scheme or "light",
            )
            contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        # A CSP violation or a script error is a bug in the page.
        page.on(
            "console",
            lambda msg: problems.append(msg.text) if msg.type == "error" else None,
        )
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        return Page(page, base or live_url, problems)

    yield make
    for context in contexts:
        context.close()
