"""Test settings: fast hashing, no pool (tests open connections per thread themselves).

Tests use their own services, never the ones the app is configured with: no ``.env`` is
read (here, nor in any process a test starts, which inherits ``PARLOR_DOTENV=""``), the
cache is always the process's own memory, and only variables set explicitly in the
environment count. ``make test`` runs pytest without ``REDIS_URL``, ``LLM_BASE_URL`` and
``OPENAI_API_KEY``, so the tests get the in-memory channel layer and the development LLM;
a server process a test starts may be handed them (tests/chat/test_cross_process.py).
The database is ``DATABASE_URL`` from the environment (CI's PostgreSQL pass), else SQLite;
either way Django's test database, not that one, is what the tests fill and flush.
"""

import os
import tempfile
from pathlib import Path

# Before base reads the .env file: read none.
os.environ["PARLOR_DOTENV"] = ""

from .base import *  # noqa: E402, F403
from .base import DATABASE_URL, database_config, env  # noqa: E402

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
# Never a shared cache: tests clear it (tests/api/conftest.py), and the throttles' counts
# must not leak between processes or runs.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# No test talks to a real provider; the development LLM needs no key.
OPENAI_API_KEY = ""
# No background sweep racing the tests; they settle abandoned replies themselves.
RECOVERY_INTERVAL = 0
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
