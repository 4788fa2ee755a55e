"""Settings of the live server the end-to-end tests drive (a daphne subprocess).

The test settings, plus static files served straight from the source folders (nothing is
collected) and the database named by DATABASE_URL, which the fixture points at the test
database.
"""

import os

from config.settings.test import *  # noqa: F403

WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
# Every test signs up a new person from 127.0.0.1: more than the hourly sign-up limit.
SIGNUP_ATTEMPTS = "10000/h"
# The sweep of replies whose writer died, as production runs it, for the servers a test
# kills (tests/e2e/conftest.py: restartable_server); the others run without it.
RECOVERY_INTERVAL = float(os.environ.get("PARLOR_RECOVERY_INTERVAL", "0"))
