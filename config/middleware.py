"""Security headers the pages rely on."""

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        # No inline script, no eval: every script is a file under /static/.
        "script-src 'self'",
        "style-src 'self'",
        # Rendered Markdown never contains images; data: covers CSS icons only.
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

# The API's schema browser loads its own scripts; JSON responses need no policy.
EXEMPT_PREFIXES = ("/api/",)


class ContentSecurityPolicyMiddleware:
    """Add a strict Content-Security-Policy to every page response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path.startswith(EXEMPT_PREFIXES):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response
