"""``make serve-prod``: nginx in front of N Parlor workers, in the foreground (SPEC 4.6).

Production on this machine, for trying it and for the tests: the production settings
from the environment (PostgreSQL at DATABASE_URL and Redis at REDIS_URL are required;
SECURE_SSL_REDIRECT=false lets it be tried over plain HTTP), WORKERS uvicorn processes on
127.0.0.1, one port each, and nginx on PORT with the site's proxying
(deploy/nginx/parlor-locations.conf) balancing them by least connections.

Every process's output comes out on this one's stdout or stderr, line by line, named by
its process: ``worker-1 | …`` — with LOG_FORMAT=json a JSON line gets ``"process"`` as its
first key instead, so that it stays one JSON object. Token values (``token=…``) are masked
in every line, nginx's error log included.

SIGINT or SIGTERM stops it all: each worker gets SIGTERM (it drains: its replies finish
within SHUTDOWN_GRACE or are saved and marked), nginx serves their streams until the last
worker has exited and is stopped then; this process exits after the last. A second signal
tells the workers to stop waiting. A worker that crashes is started again; one stopped
with SIGTERM by someone else (a rolling restart by hand) drains and stays stopped.

    python deploy/serve_prod.py [--port 8080] [--workers 2] [--migrate]
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from accounts.log_redaction import REDACTED  # noqa: E402  (plain Python, no Django needed)

NGINX_DIR = BASE_DIR / "deploy" / "nginx"
# accounts.log_redaction's rule, but stopping at a backslash too: the value may sit inside
# a JSON string, where \" ends it.
TOKEN_PARAMETER = re.compile(r"(token=)[^&\s\"'#;\\]+", re.IGNORECASE)
START_TIMEOUT = 60.0
# Worker exits that are a stop, not a failure (uvicorn re-raises the signal it handled).
CLEAN_EXITS = {0, -signal.SIGTERM, -signal.SIGINT}
RESTARTS_PER_MINUTE = 5
LINE_LIMIT = 1 << 20


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="nginx's address")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8080))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS") or 2))
    parser.add_argument(
        "--worker-ports",
        default=os.environ.get("WORKER_PORTS", ""),
        help="comma-separated, one per worker (default: the ports after --port)",
    )
    parser.add_argument(
        "--nginx", default=os.environ.get("PARLOR_NGINX") or shutil.which("nginx") or ""
    )
    parser.add_argument("--migrate", action="store_true", help="migrate the database first")
    parser.add_argument("--no-collectstatic", dest="collectstatic", action="store_false")
    parser.add_argument("--state-file", help="write the processes' ids and ports here (JSON)")
    args = parser.parse_args(argv)
    if args.worker_ports:
        args.worker_ports = [int(p) for p in args.worker_ports.split(",") if p.strip()]
        args.workers = len(args.worker_ports)
    else:
        args.worker_ports = [args.port + n for n in range(1, args.workers + 1)]
    if args.workers < 1:
        parser.error("at least one worker")
    return args


def production_environment() -> dict:
    """Return the workers' environment: production settings, .env read as the settings do."""
    dotenv = os.environ.get("PARLOR_DOTENV", str(BASE_DIR / ".env"))
    if dotenv and os.path.isfile(dotenv):
        import environ

        # What the environment sets wins over the file, as in config/settings/base.py.
        environ.Env.read_env(dotenv, overwrite=False)
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.production"
    env.setdefault("LOG_FORMAT", "text")
    return env


def check_services(env: dict) -> list[str]:
    """Return what is missing for several workers to share their streams."""
    problems = []
    if not env.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://", "pgsql://")):
        problems.append("DATABASE_URL must name PostgreSQL (postgres://…)")
    if not env.get("REDIS_URL"):
        problems.append("REDIS_URL must name Redis (redis://…): the workers share streams there")
    return problems


def redact(text: str) -> str:
    """Return ``text`` with the value of every ``token=`` parameter masked."""
    return TOKEN_PARAMETER.sub(rf"\g<1>{REDACTED}", text)


class Output:
    """Write the lines of every process to this one's stdout/stderr, named by process."""

    def __init__(self, json_lines: bool):
        self.json_lines = json_lines

    def line(self, process: str, raw: bytes, *, stream=None) -> None:
        text = redact(raw.decode("utf-8", "replace").rstrip("\r\n"))
        if self.json_lines and text.startswith("{") and text.endswith("}"):
            text = f'{{"process":{json.dumps(process)},' + text[1:]
            if text.endswith(",}"):  # the line was "{}"
                text = text[:-2] + "}"
        else:
            text = f"{process} | {text}"
        out = stream or sys.stdout
        out.buffer.write(text.encode() + b"\n")
        out.flush()

    def say(self, message: str, *, level: str = "INFO") -> None:
        """Log a line of this supervisor's own."""
        if self.json_lines:
            line = {
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "level": level,
                "logger": "serve-prod",
                "message": message,
                "request_id": None,
            }
            self.line(
                "serve-prod", json.dumps(line, separators=(",", ":")).encode(), stream=sys.stderr
            )
        else:
            self.line("serve-prod", message.encode(), stream=sys.stderr)


class Child:
    """One process of ours (a worker or nginx), its output relayed line by line."""

    def __init__(self, name: str, argv: list[str], env: dict, output: Output, port: int):
        self.name = name
        self.argv = argv
        self.env = env
        self.output = output
        self.port = port
        self.process: asyncio.subprocess.Process | None = None
        self.readers: list[asyncio.Task] = []
        self.started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        # A session of its own: a ^C in the terminal reaches this supervisor only, which
        # then stops the workers with SIGTERM, so that they drain.
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            cwd=BASE_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            limit=LINE_LIMIT,
        )
        self.started_at = time.monotonic()
        self.readers = [
            asyncio.create_task(self._relay(self.process.stdout, sys.stdout)),
            asyncio.create_task(self._relay(self.process.stderr, sys.stderr)),
        ]

    async def _relay(self, reader: asyncio.StreamReader, stream) -> None:
        while True:
            try:
                raw = await reader.readline()
            except ValueError:  # a line longer than LINE_LIMIT: pass it on in pieces
                raw = await reader.read(LINE_LIMIT)
            if not raw:
                return
            self.output.line(self.name, raw, stream=stream)

    def signal(self, signum: int) -> None:
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    async def wait(self) -> int:
        returncode = await self.process.wait()
        await asyncio.gather(*self.readers, return_exceptions=True)
        return returncode


def worker_argv(port: int, number: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "config.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        # nginx in front: the client's address and scheme from its X-Forwarded-* headers.
        "--proxy-headers",
        "--forwarded-allow-ips",
        "127.0.0.1",
        # nginx writes the access log (with the request id and no query strings).
        "--no-access-log",
        # Longer than nginx keeps an idle upstream connection (60 s): never closed under it.
        "--timeout-keep-alive",
        "75",
        # Token frames are small: compressing each cost ~8 % of a WebSocket reply's CPU
        # and ~65 KB of zlib state a socket (bench/README.md), for a few bytes saved.
        "--ws-per-message-deflate",
        "false",
        "--header",
        f"x-parlor-worker:{number}",
    ]


def nginx_conf(*, args, runtime: Path, static_root: Path, json_lines: bool) -> str:
    """Return a whole nginx.conf for this run: the site's proxying, our ports and paths."""
    mime_types = Path("/etc/nginx/mime.types")
    types = (
        f"include {mime_types};"
        if mime_types.exists()
        else "types { text/html html; text/css css; application/javascript js; "
        "image/svg+xml svg; image/png png; application/json json; }"
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = min(8192, hard if hard != resource.RLIM_INFINITY else 8192)
    servers = "\n".join(
        f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=5s;"
        for port in args.worker_ports
    )
    temp = runtime / "nginx"
    # Run as root (a container, CI), nginx's workers would become "nobody" and could not
    # read the files here; `make serve-prod` is for 127.0.0.1, the site runs as www-data.
    user = "user root root;" if os.geteuid() == 0 else ""
    return f"""# Written by deploy/serve_prod.py for one run of make serve-prod.
{user}
daemon off;
worker_processes auto;
pid {runtime}/nginx.pid;
error_log stderr warn;
worker_rlimit_nofile {files};
events {{
    worker_connections {files // 2};
}}
http {{
    {types}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;

    include {NGINX_DIR}/parlor-http.conf;
    access_log /dev/stdout {"parlor_json" if json_lines else "parlor_text"};

    upstream parlor {{
        least_conn;
        zone parlor 64k;
{servers}
        keepalive 16;
    }}

    server {{
        listen {args.host}:{args.port};
        server_name _;
        location /static/ {{
            alias {static_root}/;
            gzip_static on;
            expires 1h;
            access_log off;
        }}
        include {NGINX_DIR}/parlor-locations.conf;
    }}
}}
"""


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def serves_parlor(url: str, worker: str | None = None) -> bool:
    """Return whether a Parlor worker answers ``url`` with 200 (``worker``: that one)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            served_by = response.headers.get("X-Parlor-Worker")
            return response.status == 200 and served_by is not None and worker in (None, served_by)
    except OSError:
        return False


class ServeProd:
    """The run: start everything, relay its output, stop it all on a signal."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.env = production_environment()
        self.output = Output(json_lines=self.env.get("LOG_FORMAT") == "json")
        self.workers: list[Child] = []
        self.nginx: Child | None = None
        self.stopping = asyncio.Event()
        self.signals = 0
        self.restarts: dict[str, list[float]] = {}
        self.runtime = Path(tempfile.mkdtemp(prefix="parlor-serve-prod-"))
        self.failed = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.on_signal, signum)
        try:
            if await self.start():
                await self.supervise()
        finally:
            await self.stop_all()
            shutil.rmtree(self.runtime, ignore_errors=True)
        return 1 if self.failed else 0

    def on_signal(self, signum: int) -> None:
        self.signals += 1
        if self.signals == 1:
            self.output.say(f"{signal.Signals(signum).name}: stopping the workers (they drain)")
            self.stopping.set()
        else:
            # A second signal: the workers stop waiting for their replies (SIGINT: no grace).
            self.output.say("stopping now")
            for worker in self.workers:
                worker.signal(signal.SIGINT)

    # Start ----------------------------------------------------------------------------

    async def start(self) -> bool:
        args, env = self.args, self.env
        if problems := check_services(env):
            return self.fail("cannot start: " + "; ".join(problems))
        if not args.nginx or not os.access(args.nginx, os.X_OK):
            return self.fail(
                "cannot start: nginx is not installed (apt-get install nginx, or "
                "scripts/ensure-nginx.sh as root; PARLOR_NGINX names another)"
            )
        ports = [(args.host, args.port), *(("127.0.0.1", p) for p in args.worker_ports)]
        if busy := [f"{host}:{port}" for host, port in ports if port_in_use(host, port)]:
            return self.fail(f"cannot start: in use already: {', '.join(busy)}")
        metrics = self.runtime / "metrics"
        metrics.mkdir()
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.runtime / "nginx" / name).mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        static_root = Path(env.get("STATIC_ROOT") or BASE_DIR / "staticfiles")
        env["STATIC_ROOT"] = str(static_root)

        steps = [("migrate", "--noinput")] if args.migrate else []
        if args.collectstatic:
            steps.append(("collectstatic", "--noinput", "-v0"))
        for step in steps:
            if not await self.manage(*step):
                return False

        for number, port in enumerate(args.worker_ports, start=1):
            worker = Child(f"worker-{number}", worker_argv(port, number), env, self.output, port)
            self.workers.append(worker)
            await worker.start()
            self.output.say(f"{worker.name} (pid {worker.pid}) on 127.0.0.1:{port}")
        for worker in self.workers:
            url = f"http://127.0.0.1:{worker.port}/healthz"
            if not await self.until_answers(worker, url, worker.name.removeprefix("worker-")):
                return False

        conf = self.runtime / "nginx.conf"
        conf.write_text(
            nginx_conf(
                args=args,
                runtime=self.runtime,
                static_root=static_root,
                json_lines=self.output.json_lines,
            )
        )
        argv = [args.nginx, "-p", str(self.runtime), "-c", str(conf), "-e", "stderr"]
        self.nginx = Child("nginx", argv, env, self.output, args.port)
        await self.nginx.start()
        if not await self.until_answers(self.nginx, f"http://{args.host}:{args.port}/healthz"):
            return False
        self.write_state()
        self.output.say(
            f"ready: http://{args.host}:{args.port} (nginx pid {self.nginx.pid}) in front of "
            f"{len(self.workers)} workers; ^C stops them all"
        )
        return True

    async def manage(self, *command: str) -> bool:
        child = Child(
            f"manage.py {command[0]}",
            [sys.executable, "manage.py", *command],
            self.env,
            self.output,
            0,
        )
        await child.start()
        waiter = asyncio.create_task(child.wait())
        stop = asyncio.create_task(self.stopping.wait())
        await asyncio.wait([waiter, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not waiter.done():
            child.signal(signal.SIGTERM)
        returncode = await waiter
        if self.stopping.is_set():
            return False
        if returncode != 0:
            return self.fail(f"manage.py {' '.join(command)} failed ({returncode})")
        return True

    async def until_answers(self, child: Child, url: str, worker: str | None = None) -> bool:
        """Wait until ``url`` is served by Parlor (through nginx, or by worker ``worker``)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and not self.stopping.is_set():
            if not child.running:
                return self.fail(f"{child.name} exited ({child.process.returncode}) starting")
            if await asyncio.to_thread(serves_parlor, url, worker):
                return True
            await asyncio.sleep(0.2)
        if self.stopping.is_set():
            return False
        return self.fail(f"{child.name} did not answer {url} in {START_TIMEOUT:.0f} s")

    def write_state(self) -> None:
        if not self.args.state_file:
            return
        state = {
            "url": f"http://{self.args.host}:{self.args.port}",
            "nginx": {"pid": self.nginx.pid, "port": self.args.port},
            "workers": [
                {"name": w.name, "pid": w.pid, "port": w.port, "running": w.running}
                for w in self.workers
            ],
            "metrics_dir": self.env["PROMETHEUS_MULTIPROC_DIR"],
        }
        path = Path(self.args.state_file)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(state))
        partial.replace(path)

    def fail(self, message: str) -> bool:
        self.output.say(message, level="ERROR")
        self.failed = True
        return False

    # Run ------------------------------------------------------------------------------

    async def supervise(self) -> None:
        """Until a signal: start again a worker that crashed; end if nginx or all stop."""
        watched = {asyncio.create_task(w.wait()): w for w in self.workers}
        watched[asyncio.create_task(self.nginx.wait())] = self.nginx
        stop = asyncio.create_task(self.stopping.wait())
        while not self.stopping.is_set():
            done, _ = await asyncio.wait([stop, *watched], return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stop}:
                child = watched.pop(task)
                returncode = task.result()
                if child is self.nginx:
                    self.fail(f"nginx exited ({returncode})")
                    self.stopping.set()
                    break
                self.worker_exited(child, returncode)
                if not self.stopping.is_set() and self.may_restart(child, returncode):
                    await asyncio.sleep(1)
                    if self.stopping.is_set():
                        break
                    await child.start()
                    self.output.say(f"{child.name} started again (pid {child.pid})")
                    watched[asyncio.create_task(child.wait())] = child
                self.write_state()
            if not any(w.running for w in self.workers) and not self.stopping.is_set():
                self.fail("no worker is left")
                self.stopping.set()
        stop.cancel()
        for task in watched:
            task.cancel()

    def worker_exited(self, worker: Child, returncode: int) -> None:
        # Its gauges of things live now (streams, sockets) must not count any more; its
        # counters stay, so the totals of the host never go back.
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(worker.pid, self.env["PROMETHEUS_MULTIPROC_DIR"])
        how = "stopped" if returncode in CLEAN_EXITS else "failed"
        self.output.say(f"{worker.name} (pid {worker.pid}) {how} ({returncode})")

    def may_restart(self, worker: Child, returncode: int) -> bool:
        if returncode in CLEAN_EXITS:
            return False  # a stop asked for: it drained, and stays stopped
        now = time.monotonic()
        recent = [t for t in self.restarts.get(worker.name, []) if now - t < 60]
        if len(recent) >= RESTARTS_PER_MINUTE:
            self.output.say(f"{worker.name} keeps failing; not started again", level="ERROR")
            return False
        self.restarts[worker.name] = [*recent, now]
        return True

    # Stop -----------------------------------------------------------------------------

    async def stop_all(self) -> None:
        """SIGTERM the workers and wait for the last; then stop nginx and wait for it."""
        grace = float(self.env.get("SHUTDOWN_GRACE") or 25)
        running = [w for w in self.workers if w.running]
        for worker in running:
            worker.signal(signal.SIGTERM)
        await self.wait_for(running, timeout=grace + 30)
        for worker in running:
            self.worker_exited(worker, worker.process.returncode)
        if self.nginx is not None and self.nginx.running:
            self.nginx.signal(signal.SIGQUIT)  # graceful: finishes what it is sending
            await self.wait_for([self.nginx], timeout=10)
        for child in [*self.workers, self.nginx]:
            if child is not None and child.readers:
                await asyncio.gather(*child.readers, return_exceptions=True)
        self.output.say("stopped")

    async def wait_for(self, children: list[Child], *, timeout: float) -> None:
        waits = [asyncio.create_task(c.process.wait()) for c in children if c.running]
        if not waits:
            return
        _, pending = await asyncio.wait(waits, timeout=timeout)
        if pending:
            for child in children:
                if child.running:
                    self.output.say(f"{child.name} did not stop in time: killed", level="ERROR")
                    child.signal(signal.SIGKILL)
            await asyncio.wait(pending, timeout=10)


def main(argv=None) -> int:
    return asyncio.run(ServeProd(parse_args(argv)).run())


if __name__ == "__main__":
    sys.exit(main())
