"""deploy/: the nginx site nginx accepts, the systemd unit's promises, serve-prod's output,
and scripts/ensure-nginx.sh (installs Debian's nginx as root, or says why not)."""

import configparser
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOY = ROOT / "deploy"


def load_serve_prod():
    spec = importlib.util.spec_from_file_location("serve_prod", DEPLOY / "serve_prod.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_debian_site_passes_nginx_t(nginx, tmp_path):
    """The shipped site, with this checkout's paths and a throw-away certificate."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed (to make the test certificate)")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=chat.example.com", "-keyout", str(tmp_path / "key.pem")]
        + ["-out", str(tmp_path / "cert.pem")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    site = (DEPLOY / "nginx" / "parlor.conf").read_text()
    for shipped, here in {
        "/srv/parlor/app": str(ROOT),
        "/srv/parlor/static/": f"{tmp_path}/static/",
        "/var/log/nginx/": f"{tmp_path}/",
        "/etc/letsencrypt/live/chat.example.com/fullchain.pem": str(tmp_path / "cert.pem"),
        "/etc/letsencrypt/live/chat.example.com/privkey.pem": str(tmp_path / "key.pem"),
    }.items():
        assert shipped in site
        site = site.replace(shipped, here)
    (tmp_path / "parlor.conf").write_text(site)
    main = f"""
pid {tmp_path}/nginx.pid;
error_log stderr;
events {{}}
http {{
    include /etc/nginx/mime.types;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    include {tmp_path}/parlor.conf;
}}
"""
    (tmp_path / "nginx.conf").write_text(main)
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_the_sites_proxying_keeps_streams_unbuffered_and_passes_who_asked():
    proxying = (DEPLOY / "nginx" / "parlor-locations.conf").read_text()
    stream = proxying.split("location = /api/chat/stream {", 1)[1].split("}", 1)[0]
    assert "proxy_buffering off;" in stream and "proxy_read_timeout 1h;" in stream
    sockets = proxying.split("location /ws/ {", 1)[1].split("}", 1)[0]
    assert "proxy_read_timeout 1h;" in sockets
    for header in ("Host $http_host", "X-Forwarded-For", "X-Forwarded-Proto $scheme"):
        assert f"proxy_set_header {header}" in proxying
    assert "proxy_set_header X-Request-ID $request_id;" in proxying
    assert "client_max_body_size 1m;" in proxying
    http = (DEPLOY / "nginx" / "parlor-http.conf").read_text()
    assert "$request_uri" not in http + proxying  # the query string (?token=) is never logged


def test_the_systemd_unit_lets_a_worker_drain_and_shares_its_metrics():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read_string((DEPLOY / "systemd" / "parlor@.service").read_text())
    service = unit["Service"]
    command = service["ExecStart"]
    assert "uvicorn config.asgi:application" in command
    assert "--proxy-headers --forwarded-allow-ips 127.0.0.1" in command
    assert "--port %i" in command
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > 25 + 10  # SHUTDOWN_GRACE, then uvicorn's close
    assert service["Restart"] == "on-failure"
    environment = (DEPLOY / "systemd" / "parlor@.service").read_text()
    assert "Environment=PROMETHEUS_MULTIPROC_DIR=/run/parlor/metrics" in environment
    assert "DJANGO_SETTINGS_MODULE=config.settings.production" in environment
    assert "/run/parlor/metrics" in (DEPLOY / "systemd" / "parlor-tmpfiles.conf").read_text()


def test_serve_prod_names_each_line_by_its_process_and_masks_tokens(monkeypatch):
    serve_prod = load_serve_prod()
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", stdout)
    json_lines = serve_prod.Output(json_lines=True)
    json_lines.line("worker-1", b'{"message":"GET /ws/chat/?token=abc\\" [accepted]"}\n')
    json_lines.line("nginx", b'2026/01/01 [error] request: "GET /ws/chat/?token=abc HTTP/1.1"\n')
    serve_prod.Output(json_lines=False).line("worker-2", b"INFO started\n")
    stdout.flush()
    first, second, third = stdout.buffer.getvalue().decode().splitlines()
    assert json.loads(first) == {
        "process": "worker-1",
        "message": 'GET /ws/chat/?token=[redacted]" [accepted]',
    }
    assert second == 'nginx | 2026/01/01 [error] request: "GET /ws/chat/?token=[redacted] HTTP/1.1"'
    assert third == "worker-2 | INFO started"


def test_serve_prod_puts_the_workers_on_the_ports_after_nginxs():
    serve_prod = load_serve_prod()
    args = serve_prod.parse_args(["--port", "9000", "--workers", "3"])
    assert args.worker_ports == [9001, 9002, 9003]
    args = serve_prod.parse_args(["--worker-ports", "7001,7002"])
    assert (args.workers, args.worker_ports) == (2, [7001, 7002])


def stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def ensure_nginx(tmp_path, *, uid: int, nginx: Path, **env: str):
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    stub(stubs, "id", f"echo {uid}")
    stub(stubs, "apt-get", f"echo apt-get >> {tmp_path}/apt-get.calls; exit 1")
    clean = {k: v for k, v in os.environ.items() if k not in ("REQUIRE_SERVICES", "PARLOR_NGINX")}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure-nginx.sh")],
        env={**clean, "PATH": f"{stubs}:{os.environ['PATH']}", "PARLOR_NGINX": str(nginx), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ensure_nginx_carries_on_without_nginx_when_not_root(tmp_path):
    missing = tmp_path / "no-nginx"
    result = ensure_nginx(tmp_path, uid=1000, nginx=missing)
    assert result.returncode == 0, result.stderr
    assert f"nginx ({missing}) is not installed" in result.stderr
    assert "the production test (tests/deploy) will be skipped" in result.stderr
    assert not (tmp_path / "apt-get.calls").exists()


def test_ensure_nginx_fails_without_nginx_in_ci(tmp_path):
    missing = tmp_path / "no-nginx"
    for uid in (1000, 0):
        result = ensure_nginx(tmp_path, uid=uid, nginx=missing, REQUIRE_SERVICES="1")
        assert result.returncode == 1, (uid, result.stderr)
        assert "is required (REQUIRE_SERVICES=1)" in result.stderr


def test_ensure_nginx_is_quiet_when_nginx_is_there(tmp_path):
    result = ensure_nginx(tmp_path, uid=1000, nginx=Path(sys.executable))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
