"""Settings of the live server the end-to-end tests drive (a daphne subprocess).

The test settings, plus static files served straight from the source folders (nothing is
collected) and the database named by DATABASE_URL, which the fixture points at the test
database.
"""

from config.settings.test import *  # noqa: F403

WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
