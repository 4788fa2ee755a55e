from django.contrib import admin
from django.urls import include, path

from chat.views_health import healthz
from chat.views_stream import stream_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("accounts/", include("accounts.urls")),
    path("api/chat/stream", stream_view),
    path("api/", include("config.api_urls")),
    path("models/", include("models_app.urls")),
    path("", include("chat.urls")),
]
