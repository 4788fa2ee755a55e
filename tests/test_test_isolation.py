"""The tests use their own services, never the ones a .env names (config/settings/test.py).

Each case loads a settings module in a fresh interpreter with a hostile .env (a real-looking
Redis, provider and PostgreSQL) where base.py reads it (PARLOR_DOTENV) and reports what the
settings came out as. Nothing is connected to.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOSTILE_DOTENV = """\
REDIS_URL=redis://prod-redis.invalid:6379/0
LLM_BASE_URL=https://prod-llm.invalid/v1
OPENAI_API_KEY=sk-hostile
DATABASE_URL=postgres://parlor:secret@prod-db.invalid:5432/parlor
"""
REPORT = """
import json, os
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({
    "cache": settings.CACHES["default"]["BACKEND"],
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "layer_config": settings.CHANNEL_LAYERS["default"].get("CONFIG"),
    "llm": settings.LLM_BASE_URL,
    "key": settings.OPENAI_API_KEY,
    "engine": db["ENGINE"],
    "name": str(db["NAME"]),
    "host": db.get("HOST", ""),
    "test_name": (db.get("TEST") or {}).get("NAME"),
    "environ": {k: os.environ.get(k) for k in ("REDIS_URL", "LLM_BASE_URL", "DATABASE_URL")},
}))
"""
APP_VARIABLES = ("REDIS_URL", "LLM_BASE_URL", "OPENAI_API_KEY", "DATABASE_URL")


@pytest.fixture
def hostile_dotenv(tmp_path) -> Path:
    path = tmp_path / ".env"
    path.write_text(HOSTILE_DOTENV)
    return path


def load(settings_module: str, dotenv: Path, **explicit: str) -> dict:
    """Return what ``settings_module`` holds, loaded with ``dotenv`` and ``explicit`` only."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in APP_VARIABLES and k not in ("TEST_DATABASE_NAME", "DJANGO_SETTINGS_MODULE")
    }
    env.update(DJANGO_SETTINGS_MODULE=settings_module, PARLOR_DOTENV=str(dotenv), **explicit)
    result = subprocess.run(
        [sys.executable, "-c", REPORT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_hostile_dotenv_is_what_the_app_settings_would_use(hostile_dotenv):
    """The control: `make run`'s settings do read the file, so the cases below mean something."""
    local = load("config.settings.local", hostile_dotenv)
    assert local["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert local["layer"] == "channels_redis.core.RedisChannelLayer"
    assert local["llm"] == "https://prod-llm.invalid/v1"
    assert local["key"] == "sk-hostile"
    assert (local["engine"], local["host"]) == ("django.db.backends.postgresql", "prod-db.invalid")


@pytest.mark.parametrize("settings_module", ["config.settings.test", "tests.e2e.server_settings"])
def test_test_settings_ignore_the_dotenv(hostile_dotenv, settings_module):
    loaded = load(settings_module, hostile_dotenv)
    assert loaded["cache"] == "django.core.cache.backends.locmem.LocMemCache"
    assert loaded["layer"] == "channels.layers.InMemoryChannelLayer"
    assert loaded["llm"] == ""
    assert loaded["key"] == ""
    assert loaded["engine"] == "django.db.backends.sqlite3"
    assert loaded["name"] == str(ROOT / "db.sqlite3")
    assert "prod" not in json.dumps(loaded)
    # Nor does the file reach the environment of the processes the tests start.
    assert loaded["environ"] == {"REDIS_URL": None, "LLM_BASE_URL": None, "DATABASE_URL": None}


def test_test_settings_take_the_database_from_the_environment_only(hostile_dotenv, tmp_path):
    """CI's PostgreSQL pass: DATABASE_URL set explicitly is the one used, not the file's."""
    ci = load(
        "config.settings.test",
        hostile_dotenv,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres",
    )
    assert (ci["engine"], ci["host"], ci["name"]) == (
        "django.db.backends.postgresql",
        "127.0.0.1",
        "postgres",
    )
    assert ci["cache"] == "django.core.cache.backends.locmem.LocMemCache"
    sqlite = load("config.settings.test", hostile_dotenv, DATABASE_URL=f"sqlite:///{tmp_path}/x")
    assert (sqlite["engine"], sqlite["name"]) == ("django.db.backends.sqlite3", f"{tmp_path}/x")
    assert sqlite["test_name"].endswith(".sqlite3") and sqlite["test_name"] != sqlite["name"]


def test_a_server_a_test_starts_may_be_handed_redis_but_keeps_its_own_cache(hostile_dotenv):
    """tests/chat/test_cross_process.py starts servers with REDIS_URL and LLM_BASE_URL set."""
    server = load(
        "config.settings.test",
        hostile_dotenv,
        REDIS_URL="redis://127.0.0.1:6379/15",
        LLM_BASE_URL="http://127.0.0.1:8001/v1",
    )
    assert server["layer"] == "channels_redis.core.RedisChannelLayer"
    assert server["layer_config"]["hosts"][0]["address"] == "redis://127.0.0.1:6379/15"
    assert server["cache"] == "django.core.cache.backends.locmem.LocMemCache"
    assert server["llm"] == "http://127.0.0.1:8001/v1"
    assert server["key"] == ""


def test_pytest_refuses_to_run_with_the_apps_redis_in_its_environment(tmp_path):
    """A bare `pytest` with REDIS_URL exported stops before any test (tests/conftest.py)."""
    env = {k: v for k, v in os.environ.items() if k not in APP_VARIABLES}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        REDIS_URL="redis://prod-redis.invalid:6379/0",
        LLM_BASE_URL="https://prod-llm.invalid/v1",
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        + ["tests/test_middleware.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 4, output  # pytest's usage error
    assert "the tests would use services that are not theirs" in output
    assert "the channel layer is channels_redis.core.RedisChannelLayer" in output
    assert "LLM_BASE_URL is https://prod-llm.invalid/v1" in output
