"""Rate limit on browser sign-in: failed attempts per (username, address) in a window."""

import hashlib

from django.conf import settings
from django.core.cache import cache

from chat.ratelimit import count_hit, parse_rate


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
    count_hit(_key(username, address), window=window)


def login_succeeded(*, username: str, address: str) -> None:
    cache.delete(_key(username, address))
