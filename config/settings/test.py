"""Test settings: fast hashing, no pool (tests open connections per thread themselves)."""

import os
import tempfile
from pathlib import Path

from .base import *  # noqa: F403
from .base import DATABASE_URL, database_config, env

SECRET_KEY = "test-secret-key"
DEBUG = False
ALLOWED_HOSTS = ["*"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DATABASES = {"default": database_config(DATABASE_URL, pool=False)}
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", default=None)}
if (
    DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
    and not DATABASES["default"]["TEST"]["NAME"]
):
    # Django's default in-memory test database uses SQLite's shared cache, whose table
    # locks fail at once between threads ("database table is locked"), ignoring the busy
    # timeout. A file in WAL mode makes concurrent writers wait, as in production.
    DATABASES["default"]["TEST"]["NAME"] = str(
        Path(tempfile.gettempdir()) / f"parlor-test-{os.getpid()}.sqlite3"
    )
# No background sweep racing the tests; they settle abandoned replies themselves.
RECOVERY_INTERVAL = 0
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
