from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import log_redaction

        # Whichever server runs the app (uvicorn, daphne, runserver), token values in
        # the paths it logs are masked from the first request on.
        log_redaction.install()
