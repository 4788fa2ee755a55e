"""REST API routes under /api/ (SPEC 4.1). Ids are parsed by the views: bad ones are 400."""

from django.http import JsonResponse
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from accounts import api as accounts
from chat.api import views as chat
from models_app import api as models


def not_found(request, rest=""):
    """Answer unknown /api/ paths in the API's error shape rather than an HTML page."""
    body = {"error": {"code": "not_found", "message": f"No API endpoint at {request.path}."}}
    return JsonResponse(body, status=404)


urlpatterns = [
    path("auth/token/", chat.TokenView.as_view(), name="api-token"),
    path("me/password/", accounts.PasswordChangeView.as_view(), name="api-me-password"),
    path("sessions/", chat.SessionListView.as_view(), name="api-sessions"),
    path("sessions/active/", chat.SessionActiveView.as_view(), name="api-session-active"),
    path("sessions/delete-all/", chat.SessionDeleteAllView.as_view(), name="api-delete-all"),
    path("sessions/import/", chat.SessionImportView.as_view(), name="api-session-import"),
    path("sessions/<str:session_id>/", chat.SessionDetailView.as_view(), name="api-session"),
    path(
        "sessions/<str:session_id>/resume/",
        chat.SessionResumeView.as_view(),
        name="api-session-resume",
    ),
    path(
        "sessions/<str:session_id>/messages/",
        chat.MessageListView.as_view(),
        name="api-session-messages",
    ),
    path(
        "sessions/<str:session_id>/stop/", chat.SessionStopView.as_view(), name="api-session-stop"
    ),
    path(
        "sessions/<str:session_id>/export/",
        chat.SessionExportView.as_view(),
        name="api-session-export",
    ),
    path("models/", models.ModelListView.as_view(), name="api-models"),
    path("models/<str:model_id>/", models.ModelDetailView.as_view(), name="api-model"),
    path("models/<str:model_id>/runs/", models.ModelRunListView.as_view(), name="api-model-runs"),
    path("runs/<str:run_id>/", models.RunDetailView.as_view(), name="api-run"),
    path(
        "schema/",
        SpectacularAPIView.as_view(permission_classes=[AllowAny]),
        name="api-schema",
    ),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="api-schema", permission_classes=[AllowAny]),
        name="api-docs",
    ),
    re_path(r"^(?P<rest>.*)$", not_found),
]
