"""The processes a bench run starts (upstream, Parlor servers), always stopped at the end.

Every child runs in its own process group (``start_new_session``), so stopping it stops
whatever it started too (``uvicorn --workers`` children); ``stop_all`` runs on normal exit,
on error, on Ctrl-C and on SIGTERM (``install_signal_handlers``) and, as a last resort, at
interpreter exit.
"""

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.loadclient import tree_pids

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

_live: list["Child"] = []


def free_port(host: str = HOST) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class Child:
    """One child process with its log file."""

    def __init__(self, name: str, argv: list[str], env: dict, log: Path):
        self.name = name
        self.log = log
        with open(log, "wb") as handle:
            self.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _live.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        """Return once ``url`` answers (any HTTP status); raise if the child died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                urllib.request.urlopen(url, timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # it answered
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout:g} s")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_text()[-chars:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it lingers."""
        if self in _live:
            _live.remove(self)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)
        # The group may outlive its leader (uvicorn workers): kill what is left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)


def stop_all() -> None:
    for child in reversed(list(_live)):
        child.stop()


def install_signal_handlers() -> None:
    """Turn SIGINT, SIGTERM and SIGHUP into KeyboardInterrupt so ``finally`` blocks stop
    the children."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # Ctrl-C as usual, even when started from a shell that ignores it for background jobs.
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, handler)


atexit.register(stop_all)


def start_upstream(workdir: Path, *, tokens: int = 200) -> tuple[Child, str]:
    """Start the bench's fake OpenAI-compatible upstream; return it and its /v1 URL."""
    port = free_port()
    child = Child(
        "upstream",
        [
            sys.executable,
            str(ROOT / "bench" / "fake_upstream.py"),
            f"--port={port}",
            f"--tokens={tokens}",
            "--first-delay-ms=0",
            "--token-delay-ms=0",
        ],
        dict(os.environ, PYTHONUNBUFFERED="1"),
        workdir / "upstream.log",
    )
    url = f"http://{HOST}:{port}/v1"
    child.wait_http(f"{url}/models")
    return child, url


# The peer kit's calibration floor (../shared/peers/floor_relay.py beside the checkout):
# the leanest Django relay of the same stream, run in the SSE part beside Parlor when it
# is there and the bench's database is PostgreSQL (it stores each reply there).
FLOOR_RELAY = Path(
    os.environ.get("BENCH_FLOOR_RELAY") or ROOT.parent / "shared" / "peers" / "floor_relay.py"
)


def floor_database(database_url: str) -> str:
    """(Re)create the floor's database beside the bench's, with its one table; return
    its URL."""
    import psycopg

    base, _, name = database_url.rpartition("/")
    floor = f"{name.split('?')[0]}_floor"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{floor}"')
        conn.execute(f'CREATE DATABASE "{floor}"')
    url = f"{base}/{floor}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE msg(id bigserial primary key, session text, role text,"
            " content text, status text)"
        )
    return url


def start_floor(workdir: Path, *, database_url: str, llm_url: str) -> tuple[Child, str]:
    """Start ``FLOOR_RELAY`` under uvicorn (uvloop, httptools, as its docstring runs it)
    on ``llm_url``, storing into a database of its own; return it and its base URL."""
    port = free_port()
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        FLOOR_DB=floor_database(database_url),
        UP=llm_url,
        FRAME_MS="16",
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    child = Child(
        "floor",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "floor_relay:application",
            f"--app-dir={FLOOR_RELAY.parent}",
            f"--host={HOST}",
            f"--port={port}",
            "--loop=uvloop",
            "--http=httptools",
            "--no-access-log",
        ],
        env,
        workdir / "floor.log",
    )
    base = f"http://{HOST}:{port}"
    child.wait_http(f"{base}/api/chat/stream")  # a GET: it answers, with an error
    return child, base


def start_devllm(workdir: Path, *, tokens: int = 200) -> tuple[Child, str]:
    """Start the development LLM (``manage.py llm_devserver``) with no delays."""
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE="config.settings.local")
    child = Child(
        "devllm",
        [
            sys.executable,
            "manage.py",
            "llm_devserver",
            f"--host={HOST}",
            f"--port={port}",
            f"--tokens={tokens}",
            "--first-token-ms=0",
            "--token-ms=0",
        ],
        env,
        workdir / "devllm.log",
    )
    url = f"http://{HOST}:{port}/v1"
    child.wait_http(f"{url}/models")
    return child, url


def server_env(
    *, database_url: str, llm_url: str, redis_url: str = "", settings: str, extra=None
) -> dict:
    """The environment of a Parlor server run as production would (SPEC 6 bench setup)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE", "DATABASE_URL")
    }
    env.update(
        DJANGO_SETTINGS_MODULE=settings,
        DATABASE_URL=database_url,
        SECRET_KEY="bench-" + os.urandom(16).hex(),
        SECURE_SSL_REDIRECT="false",  # plain HTTP on loopback (production settings)
        DEBUG="false",
        LOG_LEVEL="WARNING",
        ALLOWED_HOSTS=f"{HOST},localhost",
        PYTHONUNBUFFERED="1",
        LLM_BASE_URL=llm_url,
        OPENAI_API_KEY="bench",
        LLM_MODEL="fake-model",
        # The bench measures streaming; the per-user send limit is not under test.
        THROTTLE_MESSAGES="1000000/min",
    )
    # Explicitly empty, so that a .env file's REDIS_URL cannot slip in.
    env["REDIS_URL"] = redis_url
    env.update(extra or {})
    return env


def start_server(
    name: str, workdir: Path, env: dict, *, workers: int = 1, timeout: float = 60.0
) -> tuple[Child, str]:
    """Start ``uvicorn config.asgi:application`` (its defaults: uvloop, httptools when
    installed); return it and its base URL once ``/healthz`` answers."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "config.asgi:application",
        f"--host={HOST}",
        f"--port={port}",
        "--no-access-log",
        # As the production recipes (deploy/) run it: no per-message compression.
        "--ws-per-message-deflate=false",
    ]
    if workers > 1:
        argv.append(f"--workers={workers}")
    child = Child(name, argv, env, workdir / f"{name}.log")
    base = f"http://{HOST}:{port}"
    try:
        child.wait_http(f"{base}/healthz", timeout)
    except Exception:
        child.stop()
        raise
    if workers > 1:
        # The workers answer one by one; wait until all of them are up.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(worker_pids(child)) < workers:
            time.sleep(0.2)
    return child, base


def start_behind_nginx(
    name: str, workdir: Path, env: dict, *, workers: int, timeout: float = 90.0
) -> tuple[Child, str, list[int]]:
    """Start ``deploy/serve_prod.py`` (nginx in front of ``workers`` uvicorn workers, the
    production recipe); return it, nginx's base URL and the workers' pids once every
    worker is up and ``/healthz`` answers through nginx. Needs nginx (PARLOR_NGINX or on
    the PATH; scripts/ensure-nginx.sh installs it), PostgreSQL and Redis."""
    port = free_port()
    ports = [free_port() for _ in range(workers)]
    state = workdir / f"{name}.state.json"
    argv = [
        sys.executable,
        str(ROOT / "deploy" / "serve_prod.py"),
        f"--port={port}",
        f"--workers={workers}",
        "--worker-ports=" + ",".join(map(str, ports)),
        "--no-collectstatic",
        f"--state-file={state}",
    ]
    child = Child(name, argv, env, workdir / f"{name}.log")
    base = f"http://{HOST}:{port}"
    deadline = time.monotonic() + timeout
    try:
        pids: list[int] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                up = json.loads(state.read_text())["workers"]
                if len(up) == workers and all(w["running"] for w in up):
                    pids = [w["pid"] for w in up]
                    break
            if not child.alive():
                raise RuntimeError(
                    f"{name} exited with {child.proc.returncode}:\n{child.log_tail()}"
                )
            time.sleep(0.2)
        if not pids:
            raise RuntimeError(f"{name}: its workers were not up within {timeout:g} s")
        child.wait_http(f"{base}/healthz", max(deadline - time.monotonic(), 5.0))
    except Exception:
        child.stop()
        raise
    return child, base, pids


def worker_pids(child: Child) -> list[int]:
    """The pids that serve requests: the server itself, or ``uvicorn --workers``' children
    (spawned with ``multiprocessing``; its resource tracker excluded)."""
    pids = []
    for pid in tree_pids(child.pid):
        if pid == child.pid:
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            pids.append(pid)
    return pids or [child.pid]


def runtime(child: Child) -> dict:
    """Which event loop and HTTP parser the server's workers have loaded (``/proc/*/maps``)
    and uvicorn's start-up lines; uvicorn does not log its loop or parser."""
    workers = []
    for pid in worker_pids(child):
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        workers.append(
            {
                "pid": pid,
                "uvloop": "/uvloop/" in maps,
                "httptools": "/httptools/" in maps,
            }
        )
    lines = [
        line.strip()
        for line in child.log_text().splitlines()
        if "Started" in line or "Uvicorn running" in line or "Waiting for" in line
    ]
    return {
        "workers": workers,
        "uvloop": bool(workers) and all(w["uvloop"] for w in workers),
        "httptools": bool(workers) and all(w["httptools"] for w in workers),
        "log": lines[:6],
    }


def status_mib(pid: int) -> dict:
    """VmHWM / VmRSS (MiB) of a process."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return out
