"""Rate limit on browser sign-in: failed attempts per (username, address) in a window."""

import hashlib
import re

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured

_RATE = re.compile(r"^(\d+)/(\d*)(s|sec|m|min|h|hour)$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600}


def parse_rate(rate: str) -> tuple[int, int]:
    """Return (attempts, seconds) for a rate like ``10/5min`` or ``20/h``."""
    match = _RATE.match(rate.strip())
    if not match:
        raise ImproperlyConfigured(f"LOGIN_ATTEMPTS must look like '10/5min', not {rate!r}.")
    count, multiplier, unit = match.groups()
    return int(count), int(multiplier or 1) * _UNIT_SECONDS[unit]


def _key(username: str, address: str) -> str:
    digest = hashlib.sha256(f"{username.strip().lower()}|{address}".encode()).hexdigest()
    return f"login-failures:{digest}"


def login_blocked_for(*, username: str, address: str) -> int:
    """Return how many seconds sign-in stays blocked for this pair (0: not blocked)."""
    limit, window = parse_rate(settings.LOGIN_ATTEMPTS)
    return window if cache.get(_key(username, address), 0) >= limit else 0


def login_failed(*, username: str, address: str) -> None:
    """Count one failed sign-in; the count expires a window after the first failure."""
    _, window = parse_rate(settings.LOGIN_ATTEMPTS)
    key = _key(username, address)
    cache.add(key, 0, timeout=window)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window)


def login_succeeded(*, username: str, address: str) -> None:
    cache.delete(_key(username, address))
