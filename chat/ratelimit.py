"""The per-user rate of sending messages, one budget shared by REST, WebSocket and SSE.

A fixed window counted in Django's cache (LocMem, or Redis shared by every process), with
the rate parser and the counter of accounts/throttling.py (the lower app: sign-in and sign-up
limits live there).
"""

import math
import time

from django.conf import settings

from accounts.throttling import count_hit, parse_rate

from . import metrics
from .exceptions import DomainError


class RateLimited(DomainError):
    status = 429
    code = "rate_limited"

    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"You are sending messages too fast; try again in {retry_after} seconds.")


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
        metrics.REFUSALS.labels(RateLimited.code).inc()
        raise RateLimited(max(1, math.ceil((window + 1) * period - now)))
