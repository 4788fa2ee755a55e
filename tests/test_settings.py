"""Production settings: refuse to start without secrets; pass Django's deploy checks."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "SECRET_KEY": "a-production-secret-that-is-long-and-random-" + "x" * 40,
    "DATABASE_URL": "postgres://parlor@127.0.0.1:5432/parlor",
    "ALLOWED_HOSTS": "parlor.example.com",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_passes_the_deploy_checks_at_warning_level():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_each_secret():
    for missing in ("SECRET_KEY", "DATABASE_URL", "ALLOWED_HOSTS"):
        env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
        result = manage("check", env=env)
        assert result.returncode != 0
        assert f"{missing} must be set in production" in result.stderr


def test_production_without_redis_warns_that_streams_are_not_shared():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "REDIS_URL"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    assert "parlor.W001" in result.stderr + result.stdout


def test_health_probe_over_plain_http_is_not_redirected_in_production():
    code = (
        "from django.test import Client; "
        "r = Client().get('/healthz', HTTP_HOST='parlor.example.com'); "
        "print('STATUS', r.status_code)"
    )
    env = {**PRODUCTION_ENV, "DATABASE_URL": "sqlite:////tmp/parlor-health-probe.sqlite3"}
    env.pop("REDIS_URL")
    result = manage("shell", "-c", code, env=env)
    assert "STATUS 200" in result.stdout, result.stderr + result.stdout
