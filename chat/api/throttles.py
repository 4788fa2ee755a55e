"""Rate limits of the REST API, counted by chat/ratelimit.py and accounts/throttling.py.

Rates come from settings at request time (THROTTLE_MESSAGES, THROTTLE_TOKENS, LOGIN_ATTEMPTS).
"""

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from accounts import throttling
from chat.ratelimit import RateLimited, check_send_rate


class MessageSendThrottle(BaseThrottle):
    """Sending messages: per authenticated user, the budget the WebSocket and SSE share."""

    retry_after: int | None = None

    def allow_request(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return True
        try:
            check_send_rate(user_id=request.user.pk)
        except RateLimited as exc:
            self.retry_after = exc.retry_after
            return False
        return True

    def wait(self):
        return self.retry_after


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
