"""Security headers the pages rely on, the request id of every request, and no new work
while the process drains."""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpResponse, JsonResponse

from config.logs import REQUEST_ID_HEADER, bind_request_id
from core.api import error_body

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


class RequestIdMiddleware:
    """Serve each request under its request id (config/logs.py) and answer with it.

    The id is the ``X-Request-ID`` nginx sends (its ``$request_id``) when it is a valid
    one, else a new one; every line logged while the request is served carries it, and
    the response names it in ``X-Request-ID``. First in MIDDLEWARE, so that every other
    middleware logs under it. It is not reset when the chain returns: Django logs a 4xx or
    5xx response (``django.request``) after the chain, and the server its access line
    after that. Under ASGI the task serving the request holds it alone; in a sync thread
    the next request binds its own.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        request_id = bind_request_id(request.headers.get(REQUEST_ID_HEADER))
        return self.add_header(self.get_response(request), request_id)

    async def __acall__(self, request):
        request_id = bind_request_id(request.headers.get(REQUEST_ID_HEADER))
        return self.add_header(await self.get_response(request), request_id)

    @staticmethod
    def add_header(response, request_id: str):
        response.headers.setdefault(REQUEST_ID_HEADER, request_id)
        return response


# What a balancer and Prometheus ask a worker itself: answered while it drains.
PROBE_PATHS = ("/healthz", "/readyz", "/metrics")


class RefuseWhileDrainingMiddleware:
    """Answer 503 to new requests while this process drains after SIGTERM.

    The balancer's cue: nginx passes a 503 on to another worker (``proxy_next_upstream
    http_503``, deploy/nginx), so a worker that is shutting down gets no new work through
    Django's middleware while its replies in flight finish. Nothing is done for a refused
    request, so passing it on is safe even for a POST. The probes are still answered.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        from chat.streaming import draining

        self.draining = draining
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        return self.refusal(request) or self.get_response(request)

    async def __acall__(self, request):
        return self.refusal(request) or await self.get_response(request)

    def refusal(self, request):
        if not self.draining() or request.path in PROBE_PATHS:
            return None
        message = "This server is restarting; try again."
        if request.path.startswith("/api/"):
            response = JsonResponse(error_body("draining", message), status=503)
        else:
            response = HttpResponse(message, status=503, content_type="text/plain")
        response["Retry-After"] = "1"
        return response
