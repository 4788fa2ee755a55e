"""Per-user rate limits; rates come from settings (THROTTLE_MESSAGES, THROTTLE_TOKENS)."""

import hashlib

from django.conf import settings
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from chat.ratelimit import RateLimited, check_send_rate


class _SettingsRateThrottle(SimpleRateThrottle):
    """Read the rate from settings at request time, so operators and tests can change it."""

    setting_name = ""

    def get_rate(self):
        return getattr(settings, self.setting_name)

    def __init__(self):
        # SimpleRateThrottle parses the rate once here; re-read it per request instead.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)


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


class TokenIssueThrottle(_SettingsRateThrottle):
    """Issuing tokens: per username asked for (the caller is not signed in yet)."""

    scope = "tokens"
    setting_name = "THROTTLE_TOKENS"

    def get_cache_key(self, request, view):
        data = request.data
        username = data.get("username") if isinstance(data, dict) else None
        if not isinstance(username, str) or not username:
            ident = f"addr:{self.get_ident(request)}"
        else:
            # Hashed: any text may be sent as a username, and cache keys must stay safe.
            digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()
            ident = f"user:{digest}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
