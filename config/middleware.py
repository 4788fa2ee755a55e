"""Security headers the pages rely on."""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        # No inline script, no eval: every script is a file under /static/.
        "script-src 'self'",
        "style-src 'self'",
        # Rendered Markdown never contains images; data: covers CSS icons only.
        "img-src 'self' data:",
        "font-src 'self'",
        # 'self' covers ws:/wss: to this same host and port (CSP Level 3); a bare ws: or
        # wss: would let a script talk to any host at all.
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

# The API's schema browser loads its own scripts; JSON responses need no policy.
EXEMPT_PREFIXES = ("/api/",)


class ContentSecurityPolicyMiddleware:
    """Add a strict Content-Security-Policy to every page response.

    Sync and async capable (as django-htmx's middleware), so under ASGI an async chain
    does not hop to a thread and back for it.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            # Marked here, branched in __call__: swapping dunder methods would not work.
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        return self.add_headers(request, self.get_response(request))

    async def __acall__(self, request):
        return self.add_headers(request, await self.get_response(request))

    @staticmethod
    def add_headers(request, response):
        if not request.path.startswith(EXEMPT_PREFIXES):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response
