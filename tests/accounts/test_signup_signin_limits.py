"""Sign-up and sign-in are limited per address and per username, on every door (SPEC 4.6)."""

import ast
import uuid
from pathlib import Path

import pytest
from django.contrib.auth import SESSION_KEY
from rest_framework.test import APIClient

from accounts import throttling
from accounts.models import User
from tests.api.conftest import assert_error
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-123"
NEW_PASSWORD = "a-long-pass-phrase-9"


@pytest.fixture(autouse=True)
def small_rates(settings):
    settings.LOGIN_ATTEMPTS = "3/5min"
    settings.LOGIN_ATTEMPTS_PER_ADDRESS = "5/5min"
    settings.SIGNUP_ATTEMPTS = "2/h"
    settings.THROTTLE_TOKENS = "1000/min"


def sign_in(client, username, password, address="10.0.0.1", **extra):
    return client.post(
        "/accounts/login/",
        {"username": username, "password": password},
        REMOTE_ADDR=address,
        **extra,
    )


def token(username, password, address="10.0.0.1"):
    return APIClient().post(
        "/api/auth/token/",
        {"username": username, "password": password},
        format="json",
        REMOTE_ADDR=address,
    )


def sign_up(client, username, address="10.0.0.1"):
    return client.post(
        "/accounts/signup/",
        {"username": username, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        REMOTE_ADDR=address,
    )


def test_failures_for_one_username_from_many_addresses_pause_it(client):
    UserFactory(username="alice")
    for n in range(3):
        assert sign_in(client, "alice", "wrong", address=f"10.0.1.{n}").status_code == 200
    response = sign_in(client, "alice", PASSWORD, address="10.0.1.99")
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    assert SESSION_KEY not in client.session
    # Any case or width of the name is the same name.
    assert sign_in(client, "ALICE", PASSWORD, address="10.0.1.98").status_code == 429


def test_failures_from_one_address_for_many_usernames_pause_the_address(client):
    UserFactory(username="bob")
    for n in range(5):
        assert sign_in(client, f"nobody{n}", "wrong", address="10.0.2.1").status_code == 200
    assert sign_in(client, "bob", PASSWORD, address="10.0.2.1").status_code == 429
    assert SESSION_KEY not in client.session
    # Another address is not paused, and X-Forwarded-For cannot pose as one.
    assert (
        sign_in(client, "bob", PASSWORD, address="10.0.2.1", HTTP_X_FORWARDED_FOR="10.9.9.9")
    ).status_code == 429
    assert sign_in(client, "bob", PASSWORD, address="10.0.2.2").status_code == 302


def test_the_token_endpoint_shares_the_sign_in_budget_and_answers_429_in_the_api_shape(client):
    UserFactory(username="carol")
    for n in range(2):
        sign_in(client, "carol", "wrong", address=f"10.0.3.{n}")
    assert_error(token("carol", "wrong", address="10.0.3.50"), 401, "authentication_failed")
    # Three failures, two on the page and one on the API: both doors are now refused.
    response = token("carol", PASSWORD, address="10.0.3.51")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
    assert sign_in(client, "carol", PASSWORD, address="10.0.3.52").status_code == 429


def test_the_token_endpoint_is_paused_per_address_across_usernames():
    UserFactory(username="dave")
    for n in range(5):
        assert token(f"nobody{n}", "wrong", address="10.0.4.1").status_code == 401
    assert_error(token("dave", PASSWORD, address="10.0.4.1"), 429, "throttled")
    assert token("dave", PASSWORD, address="10.0.4.2").status_code == 200


def test_token_issuing_is_rate_limited_per_address_and_per_username(settings):
    settings.THROTTLE_TOKENS = "2/min"
    UserFactory(username="erin")
    UserFactory(username="frank")
    assert token("erin", PASSWORD, address="10.0.5.1").status_code == 200
    assert token("frank", PASSWORD, address="10.0.5.1").status_code == 200
    assert_error(token("erin", PASSWORD, address="10.0.5.1"), 429, "throttled")
    assert token("erin", PASSWORD, address="10.0.5.2").status_code == 200
    assert_error(token("erin", PASSWORD, address="10.0.5.3"), 429, "throttled")


def test_the_admin_sign_in_is_refused_too_while_the_username_is_paused(client):
    User.objects.create_superuser("root", password=PASSWORD)
    for n in range(3):
        sign_in(client, "root", "wrong", address=f"10.0.6.{n}")
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "root", "password": PASSWORD, "next": "/admin/"},
        REMOTE_ADDR="10.0.6.9",
    )
    assert response.status_code == 200
    assert SESSION_KEY not in client.session


def test_a_success_forgets_the_usernames_failures_not_the_addresses(client):
    UserFactory(username="gina")
    for _ in range(2):
        sign_in(client, "gina", "wrong", address="10.0.7.1")
    assert sign_in(client, "gina", PASSWORD, address="10.0.7.1").status_code == 302
    client.logout()
    # gina's name has its three failures again; the address keeps its two of five.
    for _ in range(2):
        sign_in(client, "gina", "wrong", address="10.0.7.2")
    assert sign_in(client, "gina", PASSWORD, address="10.0.7.2").status_code == 302
    client.logout()
    for n in range(3):
        sign_in(client, f"nobody{n}", "wrong", address="10.0.7.1")
    assert sign_in(client, "gina", PASSWORD, address="10.0.7.1").status_code == 429


def test_sign_up_is_limited_per_address(client):
    assert sign_up(client, "first", address="10.0.8.1").status_code == 302
    client.logout()
    assert sign_up(client, "second", address="10.0.8.1").status_code == 302
    client.logout()
    response = sign_up(client, "third", address="10.0.8.1")
    assert response.status_code == 429
    assert response["Retry-After"] == "3600"
    assert "Too many sign-up attempts" in response.content.decode()
    assert not User.objects.filter(username="third").exists()
    assert sign_up(client, "third", address="10.0.8.2").status_code == 302


def test_sign_up_is_limited_per_username_asked_for(client):
    UserFactory(username="taken")
    # Probing whether a name exists, from ever new addresses, is paused too.
    assert sign_up(client, "taken", address="10.0.9.1").status_code == 200
    assert sign_up(client, "TAKEN", address="10.0.9.2").status_code == 200
    response = sign_up(client, "Taken", address="10.0.9.3")
    assert response.status_code == 429
    assert "Too many sign-up attempts" in response.content.decode()


def test_accounts_imports_nothing_from_chat():
    """Apps import downward: the limiter lives in accounts, chat/ratelimit.py uses it."""
    from chat import ratelimit

    assert ratelimit.parse_rate is throttling.parse_rate
    assert ratelimit.count_hit is throttling.count_hit
    root = Path(throttling.__file__).resolve().parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "chat"]
    assert offenders == []


@pytest.fixture
def redis_cache(redis_url, settings):
    """Django's cache on Redis, as with REDIS_URL (under a key prefix of its own)."""
    from django.core.cache import caches

    prefix = f"test-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": prefix,
        }
    }
    yield caches["default"]
    caches["default"].delete_many(["parlor:test-hits", "parlor:racy", "parlor:short"])


def test_hits_counted_on_redis_are_djangos_counters_and_none_is_lost(redis_cache):
    """With Redis a hit is one round trip: the same key, value and expiry as Django's
    own add and incr, and hits from many threads at once all count."""
    from concurrent.futures import ThreadPoolExecutor

    assert [throttling.count_hit("parlor:test-hits", window=30) for _ in range(3)] == [1, 2, 3]
    assert redis_cache.get("parlor:test-hits") == 3
    full = redis_cache.make_and_validate_key("parlor:test-hits")
    client = redis_cache._cache.get_client(full)
    assert 0 < client.ttl(full) <= 30
    assert redis_cache.incr("parlor:test-hits") == 4  # Django's own incr reads it

    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(lambda _: throttling.count_hit("parlor:racy", window=30), range(80)))
    assert sorted(counts) == list(range(1, 81))


def test_a_hit_counted_on_redis_is_one_round_trip(redis_cache, monkeypatch):
    from redis.connection import AbstractConnection

    sends = []
    send = AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        sends.append(command)
        return send(self, command, check_health)

    throttling.count_hit("parlor:test-hits", window=30)  # the pool's connection is open
    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    assert throttling.count_hit("parlor:test-hits", window=30) == 2
    assert len(sends) == 1  # Django's add and incr: three (SET NX, EXISTS, INCRBY)


def test_a_counter_past_its_window_starts_again_on_redis(redis_cache):
    import time

    assert throttling.count_hit("parlor:short", window=1) == 1
    time.sleep(1.2)
    assert throttling.count_hit("parlor:short", window=1) == 1
