"""Rate limits on signing up and signing in, per client address and per username.

Counters live in Django's cache (LocMem, or Redis shared by every process). ``parse_rate``
and ``count_hit`` also serve the per-user send limit in chat/ratelimit.py.

- Sign-in counts failures from every door that passes a request to ``authenticate`` (the
  sign-in page, ``POST /api/auth/token/``, the admin's sign-in; see accounts/backends.py):
  ``LOGIN_ATTEMPTS`` per username whatever the address, ``LOGIN_ATTEMPTS_PER_ADDRESS`` per
  address whatever the usernames. A success forgets the username's failures only.
- ``attempt`` counts every try of one action, e.g. sign-up (``SIGNUP_ATTEMPTS``) or issuing
  an API token (``THROTTLE_TOKENS``), with one rate per username and per address.

Usernames are counted by ``username_key``, so ``ALICE`` and ``alice`` share one budget;
keys are hashed, since any text may arrive as a username.
"""

import hashlib
import re

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured

from .models import username_key

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^(\d+)/(\d*)\s*([smhd])[a-z]*$")
# Longer than any valid username; bounds the normalizing work on what a client sends.
_USERNAME_CHARS = 150


def parse_rate(rate: str) -> tuple[int, int]:
    """Return (requests, seconds) of a rate such as ``"30/min"``, ``"10/5min"`` or ``"20/h"``."""
    match = _RATE.match(rate.strip().lower())
    if not match:
        raise ImproperlyConfigured(f"A rate must look like '30/min' or '10/5min', not {rate!r}.")
    count, multiplier, unit = match.groups()
    return int(count), int(multiplier or 1) * PERIODS[unit]


def count_hit(key: str, *, window: int) -> int:
    """Count one hit on ``key`` in the cache and return the count; the key lives ``window`` s.

    ``cache.add`` + ``cache.incr`` are atomic, so concurrent hits cannot be lost. With
    Redis they are one round trip (every send counts one: chat/ratelimit.py), sent as
    one MULTI, on the cache's key and in the form Django's own ``add``/``incr`` write.
    """
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        full_key = backend.make_and_validate_key(key)
        client = backend._cache.get_client(full_key, write=True)
        with client.pipeline(transaction=True) as pipe:
            pipe.set(full_key, 0, ex=window, nx=True)
            pipe.incr(full_key)
            return pipe.execute()[1]
    cache.add(key, 0, timeout=window)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window)
        return 1


def client_address(request) -> str:
    """Return the address the server saw the request come from (``REMOTE_ADDR``).

    Never X-Forwarded-For, which any client can write: behind a proxy, the ASGI server
    puts the client's address there (uvicorn's ``--forwarded-allow-ips``, daphne's
    ``--proxy-headers``).
    """
    return request.META.get("REMOTE_ADDR") or ""


def _key(action: str, kind: str, value: str) -> str:
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"parlor:{action}:{kind}:{digest}"


def _counters(
    action: str, *, username: str, address: str, user_rate: str, address_rate: str
) -> list[tuple[str, int, int]]:
    """Return the (cache key, limit, window) of each counter one try is counted on."""
    counters = []
    if username:
        limit, window = parse_rate(user_rate)
        key = _key(action, "user", username_key(username[:_USERNAME_CHARS]))
        counters.append((key, limit, window))
    if address:
        limit, window = parse_rate(address_rate)
        counters.append((_key(action, "addr", address), limit, window))
    return counters


def _blocked_for(counters) -> int:
    counts = cache.get_many([key for key, _, _ in counters])
    return max(
        (window for key, limit, window in counters if counts.get(key, 0) >= limit), default=0
    )


def attempt(action: str, rate: str, *, username: str, address: str) -> int:
    """Count one try of ``action``; return how many seconds to wait instead (0: go ahead).

    ``rate`` applies to the username and to the address separately. A refused try is not
    counted, so one that a busy address is refused costs the username nothing (tries in
    flight at once may pass the limit by their number).
    """
    counters = _counters(
        action, username=username, address=address, user_rate=rate, address_rate=rate
    )
    blocked = _blocked_for(counters)
    if not blocked:
        for key, _, window in counters:
            count_hit(key, window=window)
    return blocked


def _login_counters(*, username: str, address: str):
    return _counters(
        "login-failures",
        username=username,
        address=address,
        user_rate=settings.LOGIN_ATTEMPTS,
        address_rate=settings.LOGIN_ATTEMPTS_PER_ADDRESS,
    )


def login_blocked_for(*, username: str, address: str) -> int:
    """Return how many seconds sign-in stays refused to this username or address (0: not)."""
    return _blocked_for(_login_counters(username=username, address=address))


def login_failed(*, username: str, address: str) -> None:
    """Count one failed sign-in; each count expires a window after its first failure."""
    for key, _, window in _login_counters(username=username, address=address):
        count_hit(key, window=window)


def login_succeeded(*, username: str, address: str) -> None:
    """Forget the username's failures, not the address's (whose budget spans usernames)."""
    for key, _, _ in _login_counters(username=username, address=""):
        cache.delete(key)
