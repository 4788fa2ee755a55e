from django.urls import path

from . import views

app_name = "models_app"

urlpatterns = [
    path("", views.model_list, name="list"),
    path("new/", views.model_create, name="create"),
    path("<int:model_id>/", views.model_detail, name="detail"),
    path("<int:model_id>/edit/", views.model_edit, name="edit"),
    path("<int:model_id>/delete/", views.model_delete, name="delete"),
    path("<int:model_id>/runs/<int:run_id>/", views.run_detail, name="run"),
]
