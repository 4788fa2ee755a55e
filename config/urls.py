from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views import defaults

from chat.views_health import healthz, readyz
from chat.views_metrics import metrics
from chat.views_stream import stream_view
from core.api import error_body

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("accounts/", include("accounts.urls")),
    path("api/chat/stream", stream_view),
    path("api/", include("config.api_urls")),
    path("models/", include("models_app.urls")),
    path("settings/", include("chat.urls_settings")),
    path("", include("chat.urls")),
]


# Errors raised before or outside a DRF view (a bad Host header, an exception in a plain
# view) still answer /api/ in the API's one error shape; pages get the HTML templates.


def _api_error(request, status: int, code: str, message: str):
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(code, message), status=status)
    return None


def bad_request(request, exception):
    answer = _api_error(request, 400, "bad_request", "The request is malformed.")
    return answer or defaults.bad_request(request, exception)


def permission_denied(request, exception):
    answer = _api_error(request, 403, "permission_denied", "You may not do this.")
    return answer or defaults.permission_denied(request, exception)


def page_not_found(request, exception):
    answer = _api_error(request, 404, "not_found", "Not found.")
    return answer or defaults.page_not_found(request, exception)


def server_error(request):
    answer = _api_error(request, 500, "server_error", "The server hit an error.")
    return answer or defaults.server_error(request)


handler400 = bad_request
handler403 = permission_denied
handler404 = page_not_found
handler500 = server_error
