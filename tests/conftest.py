import asyncio
import os

import pytest
from django.db import connection

from .factories import ModelFactory, RunFactory, UserFactory


def pytest_configure(config):
    """Refuse to run with the app's own services: tests use their own (config/settings/test.py).

    The test settings read no .env and keep the cache in memory, but take REDIS_URL,
    LLM_BASE_URL and OPENAI_API_KEY from the environment, for the server processes some
    tests start; exported in the shell that runs pytest they would reach a real Redis or
    provider. ``make test`` unsets them; a bare ``pytest`` with them set stops here.
    """
    from django.conf import settings

    problems = []
    if settings.DOTENV:
        problems.append(f"{settings.SETTINGS_MODULE} reads {settings.DOTENV}")
    cache = settings.CACHES["default"]["BACKEND"]
    if not cache.endswith("LocMemCache"):
        problems.append(f"the cache is {cache}")
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    if not layer.endswith("InMemoryChannelLayer"):
        problems.append(f"the channel layer is {layer} (REDIS_URL is set)")
    if settings.LLM_BASE_URL:
        problems.append(f"LLM_BASE_URL is {settings.LLM_BASE_URL}")
    if settings.OPENAI_API_KEY:
        problems.append("OPENAI_API_KEY is set")
    if problems:
        raise pytest.UsageError(
            "the tests would use services that are not theirs: "
            + "; ".join(problems)
            + ". Run `make test`, or pytest with DJANGO_SETTINGS_MODULE=config.settings.test"
            " and without REDIS_URL, LLM_BASE_URL and OPENAI_API_KEY in the environment."
        )


def pytest_sessionfinish(session):
    """Close the LLM clients of the background engine, where sync code's replies ran
    (its loop lives as long as the process), before the interpreter collects them."""
    from chat import llm
    from chat.streaming import engine

    background = engine._background
    if background is not None and background.loop.is_running():
        asyncio.run_coroutine_threadsafe(llm.aclose(), background.loop).result(10)


def pytest_collection_modifyitems(config, items):
    """Skip PostgreSQL-only tests on SQLite; they run in CI's PostgreSQL pass."""
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL; runs in the PostgreSQL pass of CI")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


@pytest.fixture
def model(user):
    return ModelFactory(owner=user)


@pytest.fixture
def run(model):
    return RunFactory(model=model)


@pytest.fixture
def redis_url():
    """Redis for cross-process tests; in CI (REQUIRE_SERVICES=1) its absence fails."""
    import redis

    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:
        if os.environ.get("REQUIRE_SERVICES"):
            pytest.fail(f"Redis is required but cannot be reached at {url}: {exc}")
        pytest.skip(f"Redis not reachable at {url}")
    return url
