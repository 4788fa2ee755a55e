import os

import pytest
from django.db import connection

from .factories import ModelFactory, RunFactory, UserFactory


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
