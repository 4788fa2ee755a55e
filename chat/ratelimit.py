"""The per-user rate of sending messages, one budget shared by REST, WebSocket and SSE.

A fixed window counted in Django's cache (LocMem, or Redis shared by every process):
``cache.add`` + ``cache.incr`` are atomic, so concurrent sends cannot overshoot.
"""

import math
import time

from django.conf import settings
from django.core.cache import cache

from .exceptions import DomainError

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"You are sending messages too fast; try again in {retry_after} seconds.")


def parse_rate(rate: str) -> tuple[int, int]:
    """Return (requests, seconds) of a rate such as ``"30/min"``."""
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip()[:1].lower()]


def check_send_rate(*, user_id) -> None:
    """Count one message sent by ``user_id``; raise RateLimited past THROTTLE_MESSAGES."""
    rate = getattr(settings, "THROTTLE_MESSAGES", None)
    if not rate:
        return
    limit, period = parse_rate(rate)
    now = time.time()
    window = int(now // period)
    key = f"parlor:send-rate:{user_id}:{period}:{window}"
    cache.add(key, 0, timeout=period + 1)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=period + 1)
        count = 1
    if count > limit:
        raise RateLimited(max(1, math.ceil((window + 1) * period - now)))
