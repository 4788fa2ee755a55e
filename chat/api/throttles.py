"""Rate limits of the REST API, counted by chat/ratelimit.py and accounts/throttling.py.

Rates come from settings at request time (THROTTLE_MESSAGES, THROTTLE_TOKENS, LOGIN_ATTEMPTS).
"""

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from accounts import throttling


class TokenIssueThrottle(BaseThrottle):
    """Issuing tokens is signing in: per username asked for and per address.

    Refused while the sign-in limit holds either (the same failures the sign-in page
    counts), and past THROTTLE_TOKENS tries of either.
    """

    retry_after: int | None = None

    def allow_request(self, request, view):
        data = request.data
        username = data.get("username") if isinstance(data, dict) else None
        who = {
            "username": username if isinstance(username, str) else "",
            "address": throttling.client_address(request),
        }
        self.retry_after = throttling.login_blocked_for(**who) or throttling.attempt(
            "token-issue", settings.THROTTLE_TOKENS, **who
        )
        return not self.retry_after

    def wait(self):
        return self.retry_after
