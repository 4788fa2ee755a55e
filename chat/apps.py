from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # They register themselves: the system checks, and the answers to models_app's
        # deletions (which keep the conversations about a deleted model or run).
        from . import checks, receivers  # noqa: F401
