"""Real Parlor server processes for tests: uvicorn or daphne on a free port.

They run the production settings (with plain HTTP allowed) against the test database
(PostgreSQL) or a migrated file of their own (SQLite: the test database cannot be shared
with another process), and the development LLM the test session serves.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.db import connection

from chat.devllm import free_port

START_TIMEOUT = 30.0
BOOTSTRAP = """
from accounts.models import User
from accounts.tokens import token_issue
user = User.objects.create_user({username!r}, password="pw-for-tests-123")
print(token_issue(user=user)[0])
"""


def shared_database(tmp_path: Path) -> tuple[str, bool]:
    """Return a database URL server processes can share, and whether it needs migrating."""
    if connection.vendor == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.sqlite3'}", True
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{s['USER']}{password}@{s['HOST']}:{s['PORT']}/{s['NAME']}", False


def server_env(*, database_url: str, llm_base_url: str, **extra) -> dict:
    """Return the environment of a server process: production settings over plain HTTP."""
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY="test-only-secret-key-" + "x" * 40,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=database_url,
        LLM_BASE_URL=llm_base_url,
        LLM_TIMEOUT="10",
        THROTTLE_MESSAGES="100000/min",
        LOG_LEVEL="INFO",
    )
    env.pop("REDIS_URL", None)
    env.update({key: str(value) for key, value in extra.items()})
    return env


def manage(env: dict, *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        env=env,
        cwd=settings.BASE_DIR,
        check=True,
        capture_output=True,
        timeout=timeout,
    )
    return result.stdout.decode()


def prepare_database(env: dict, *, migrate: bool, username: str = "served") -> str:
    """Migrate if needed and create a user; return a bearer token for it."""
    if migrate:
        manage(env, "migrate", "--noinput", "-v0")
    output = manage(env, "shell", "-c", BOOTSTRAP.format(username=username), timeout=60)
    return output.strip().splitlines()[-1]


class Server:
    """One server process serving ``config.asgi:application``."""

    def __init__(self, env: dict, *, kind: str = "uvicorn", log: Path):
        self.env = env
        self.kind = kind
        self.log = log
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chat/"

    def start(self) -> "Server":
        if self.kind == "daphne":
            argv = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port)]
        else:
            argv = ["-m", "uvicorn", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log, "ab") as handle:
            self.process = subprocess.Popen(
                [sys.executable, *argv, "config.asgi:application"],
                env=self.env,
                cwd=settings.BASE_DIR,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.kind} exited:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()  # never leave a process behind
        raise AssertionError(f"{self.kind} did not answer /healthz:\n{self.output()}")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""

    def get_json(self, path: str, token: str) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


class ServeProd:
    """``make serve-prod``'s machinery (deploy/serve_prod.py): nginx in front of workers.

    On free ports; ``state`` names nginx's and each worker's process id and port once it
    is ready. Its output (every process's lines, named) goes to ``log``.
    """

    def __init__(self, env: dict, *, workers: int = 2, log: Path, nginx: str):
        self.env = env
        self.workers = workers
        self.log = log
        self.nginx = nginx
        self.port = free_port()
        self.worker_ports = [free_port() for _ in range(workers)]
        self.state_file = log.with_suffix(".state.json")
        self.state: dict = {}
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chat/"

    def worker(self, number: int) -> dict:
        """Return worker ``number``'s state (1-based, as its X-Parlor-Worker header)."""
        return self.state["workers"][number - 1]

    def start(self, *args: str) -> "ServeProd":
        argv = [sys.executable, "deploy/serve_prod.py", "--port", str(self.port)]
        argv += ["--worker-ports", ",".join(map(str, self.worker_ports))]
        argv += ["--nginx", self.nginx, "--state-file", str(self.state_file), *args]
        with open(self.log, "ab") as handle:
            self.process = subprocess.Popen(
                argv, env=self.env, cwd=settings.BASE_DIR, stdout=handle, stderr=handle
            )
        deadline = time.monotonic() + 2 * START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve-prod exited:\n{self.output()}")
            if self.state_file.exists():
                self.state = json.loads(self.state_file.read_text())
                return self
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"serve-prod did not get ready:\n{self.output()}")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Stop it as ^C would, and make sure nothing it started is left running."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.state_file.exists():  # rewritten when a worker is started again
            self.state = json.loads(self.state_file.read_text())
        for pid in self.running_pids():
            os.kill(pid, signal.SIGKILL)

    def pids(self) -> list[int]:
        """Return the process ids of nginx and the workers, as last started."""
        if not self.state:
            return []
        return [self.state["nginx"]["pid"], *(w["pid"] for w in self.state["workers"])]

    def running_pids(self) -> list[int]:
        """Return those of ``pids()`` still running (their command line is still ours)."""
        if not self.state:
            return []
        runtime = str(Path(self.state["metrics_dir"]).parent).encode()
        expected = {self.state["nginx"]["pid"]: runtime}
        for worker in self.state["workers"]:
            expected[worker["pid"]] = f"--port\0{worker['port']}\0".encode()
        running = []
        for pid, mark in expected.items():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if mark in command:
                running.append(pid)
        return running

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
