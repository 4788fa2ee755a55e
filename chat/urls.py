from django.urls import path

from . import views, views_folders, views_import, views_operator, views_share

app_name = "chat"

urlpatterns = [
    path("", views.home, name="home"),
    path("new", views.chat_new, name="new"),
    path("c/<uuid:session_id>", views.session_open, name="session"),
    path("c/<uuid:session_id>/messages", views.older_messages, name="older_messages"),
    path(
        "c/<uuid:session_id>/messages/<int:message_id>",
        views.message_detail,
        name="message",
    ),
    path(
        "c/<uuid:session_id>/messages/<int:message_id>/feedback",
        views.message_feedback,
        name="feedback",
    ),
    path("c/<uuid:session_id>/branch", views.session_branch, name="branch"),
    path("c/<uuid:session_id>/rename", views.session_rename, name="rename"),
    path("c/<uuid:session_id>/tags", views.session_tags, name="tags"),
    path("c/<uuid:session_id>/item", views.session_item, name="item"),
    path("c/<uuid:session_id>/pin", views.session_pin, name="pin"),
    path("c/<uuid:session_id>/archive", views.session_archive, name="archive"),
    path("c/<uuid:session_id>/delete", views.session_delete, name="delete"),
    path("c/<uuid:session_id>/llm", views.session_llm, name="llm"),
    path("c/<uuid:session_id>/share", views_share.session_share, name="share"),
    path("c/<uuid:session_id>/share/revoke", views_share.session_unshare, name="unshare"),
    path("c/<uuid:session_id>/folder", views_folders.session_folder, name="folder"),
    path("folders/<int:folder_id>/rename", views_folders.folder_rename, name="folder_rename"),
    path("folders/<int:folder_id>/delete", views_folders.folder_delete, name="folder_delete"),
    path("s/<str:token>", views_share.share_page, name="share_page"),
    path("m/<int:model_id>/new", views.model_new, name="model_new"),
    path("m/<int:model_id>/c/<uuid:session_id>", views.session_open, name="model_session"),
    path("m/<int:model_id>/runs/<int:run_id>/chat", views.run_chat, name="run_chat"),
    path("m/<int:model_id>/runs/<int:run_id>/new", views.run_new, name="run_new"),
    path("sidebar", views.sidebar, name="sidebar"),
    path("sidebar/more", views.sidebar_more, name="sidebar_more"),
    path("search", views.search, name="search"),
    path("signed-in", views.signed_in, name="signed_in"),
    path("import/chatgpt", views_import.import_chatgpt, name="import_chatgpt"),
    path("operator/", views_operator.queue_page, name="operator_queue"),
    path("operator/queue", views_operator.queue_list, name="operator_queue_list"),
    path("operator/c/<uuid:session_id>", views_operator.session_page, name="operator_session"),
    path("operator/c/<uuid:session_id>/join", views_operator.join, name="operator_join"),
    path("operator/c/<uuid:session_id>/leave", views_operator.leave, name="operator_leave"),
]
