"""REST API routes under /api/ (SPEC 4.1). Ids are parsed by the views: bad ones are 400."""

from django.http import JsonResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer

from accounts import api as accounts
from chat.api import views as chat
from chat.api import views_operators as operators
from chat.api import views_usage
from chat.llm import available_llms
from chat.views_stream import suggest_view
from models_app import api as models


@csrf_exempt
def not_found(request, rest=""):
    """Answer unknown /api/ paths in the API's error shape rather than an HTML page.

    CSRF-exempt: it changes nothing, and a POST without a token must learn the path is
    unknown (404), not get the CSRF failure page.
    """
    body = {"error": {"code": "not_found", "message": f"No API endpoint at {request.path}."}}
    return JsonResponse(body, status=404)


class JSONErrorsMixin:
    """Answer errors (405, 406, ...) in JSON whatever the page's own renderer."""

    def handle_exception(self, exc):
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)


class SchemaView(JSONErrorsMixin, SpectacularAPIView):
    """The OpenAPI schema: JSON unless YAML is asked for (Accept)."""

    renderer_classes = [
        OpenApiJsonRenderer,
        OpenApiJsonRenderer2,
        OpenApiYamlRenderer,
        OpenApiYamlRenderer2,
    ]

    def _get_version_parameter(self, request):
        # The API has one version; ?version= would otherwise reach the Content-Disposition
        # header, where a control character makes the server drop the connection.
        return None


class DocsView(JSONErrorsMixin, SpectacularSwaggerView):
    """Swagger UI. OPTIONS is refused: its metadata has no HTML template to render."""

    http_method_names = ["get", "head"]


urlpatterns = [
    path("auth/token/", chat.TokenView.as_view(), name="api-token"),
    path("me/password/", accounts.PasswordChangeView.as_view(), name="api-me-password"),
    # accounts is below chat: the LLMs a default may name are chat's, passed in here.
    path("me/", accounts.MeView.as_view(offered_llms=available_llms), name="api-me"),
    path("tokens/", accounts.TokenListView.as_view(), name="api-tokens"),
    path("tokens/<str:token_id>/", accounts.TokenDetailView.as_view(), name="api-token-detail"),
    path("sessions/", chat.SessionListView.as_view(), name="api-sessions"),
    path("sessions/active/", chat.SessionActiveView.as_view(), name="api-session-active"),
    path("sessions/delete-all/", chat.SessionDeleteAllView.as_view(), name="api-delete-all"),
    path("sessions/import/", chat.SessionImportView.as_view(), name="api-session-import"),
    path("import/chatgpt/", chat.ChatGPTImportView.as_view(), name="api-import-chatgpt"),
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
    path(
        "sessions/<str:session_id>/branch/",
        chat.SessionBranchView.as_view(),
        name="api-session-branch",
    ),
    path(
        "sessions/<str:session_id>/share/",
        chat.SessionShareView.as_view(),
        name="api-session-share",
    ),
    path(
        "sessions/<str:session_id>/handoff/",
        operators.HandoffView.as_view(),
        name="api-session-handoff",
    ),
    path("sessions/<str:session_id>/join/", operators.JoinView.as_view(), name="api-session-join"),
    path(
        "sessions/<str:session_id>/leave/", operators.LeaveView.as_view(), name="api-session-leave"
    ),
    path(
        "sessions/<str:session_id>/participants/",
        operators.ParticipantsView.as_view(),
        name="api-session-participants",
    ),
    path("sessions/<str:session_id>/suggest/", suggest_view, name="api-session-suggest"),
    path("operator/queue/", operators.QueueView.as_view(), name="api-operator-queue"),
    path("shares/", chat.ShareListView.as_view(), name="api-shares"),
    path("folders/", chat.FolderListView.as_view(), name="api-folders"),
    path("folders/<str:folder_id>/", chat.FolderDetailView.as_view(), name="api-folder"),
    path("messages/<str:message_id>/edit/", chat.MessageEditView.as_view(), name="api-edit"),
    path(
        "messages/<str:message_id>/regenerate/",
        chat.MessageRegenerateView.as_view(),
        name="api-regenerate",
    ),
    path(
        "messages/<str:message_id>/feedback/",
        chat.MessageFeedbackView.as_view(),
        name="api-feedback",
    ),
    path("tags/", chat.TagListView.as_view(), name="api-tags"),
    path("llms/", views_usage.LLMListView.as_view(), name="api-llms"),
    path("usage/", views_usage.UsageView.as_view(), name="api-usage"),
    path("models/", models.ModelListView.as_view(), name="api-models"),
    path("models/<str:model_id>/", models.ModelDetailView.as_view(), name="api-model"),
    path("models/<str:model_id>/runs/", models.ModelRunListView.as_view(), name="api-model-runs"),
    path("runs/<str:run_id>/", models.RunDetailView.as_view(), name="api-run"),
    path(
        "schema/",
        SchemaView.as_view(permission_classes=[AllowAny]),
        name="api-schema",
    ),
    path(
        "docs/",
        DocsView.as_view(url_name="api-schema", permission_classes=[AllowAny]),
        name="api-docs",
    ),
    re_path(r"^(?P<rest>.*)$", not_found),
]
