"""The settings page's URLs, under /settings/ (config/urls.py)."""

from django.urls import path

from . import views_settings as views

app_name = "settings"

urlpatterns = [
    path("", views.settings_page, name="page"),
    *(
        path(section, views.profile_section, {"section": section}, name=section)
        for section in views.PROFILE_SECTIONS
    ),
    path("tokens", views.token_create, name="token_create"),
    path("tokens/<int:token_id>/revoke", views.token_revoke, name="token_revoke"),
    path("export", views.export_all, name="export"),
    path("delete-all", views.delete_all, name="delete_all"),
]
