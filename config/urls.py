from django.contrib import admin
from django.urls import include, path

from chat.views_health import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("accounts/", include("accounts.urls")),
    path("api/", include("config.api_urls")),
    path("models/", include("models_app.urls")),
    path("", include("chat.urls")),
]
