"""The per-user rate of sending messages, one budget shared by REST, WebSocket and SSE.

A fixed window counted in Django's cache (LocMem, or Redis shared by every process).
``parse_rate`` and ``count_hit`` also serve the sign-in limit in accounts/throttling.py.
"""

import math
import re
import time

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured

from .exceptions import DomainError

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^(\d+)/(\d*)\s*([smhd])[a-z]*$")


class RateLimited(DomainError):
    status = 429
    code = "rate_limited"

    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"You are sending messages too fast; try again in {retry_after} seconds.")


def parse_rate(rate: str) -> tuple[int, int]:
    """Return (requests, seconds) of a rate such as ``"30/min"``, ``"10/5min"`` or ``"20/h"``."""
    match = _RATE.match(rate.strip().lower())
    if not match:
        raise ImproperlyConfigured(f"A rate must look like '30/min' or '10/5min', not {rate!r}.")
    count, multiplier, unit = match.groups()
    return int(count), int(multiplier or 1) * PERIODS[unit]


def count_hit(key: str, *, window: int) -> int:
    """Count one hit on ``key`` in the cache and return the count; the key lives ``window`` s.

    ``cache.add`` + ``cache.incr`` are atomic, so concurrent hits cannot be lost.
    """
    cache.add(key, 0, timeout=window)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window)
        return 1


def check_send_rate(*, user_id) -> None:
    """Count one message sent by ``user_id``; raise RateLimited past THROTTLE_MESSAGES."""
    rate = getattr(settings, "THROTTLE_MESSAGES", None)
    if not rate:
        return
    limit, period = parse_rate(rate)
    now = time.time()
    window = int(now // period)
    count = count_hit(f"parlor:send-rate:{user_id}:{period}:{window}", window=period + 1)
    if count > limit:
        raise RateLimited(max(1, math.ceil((window + 1) * period - now)))
