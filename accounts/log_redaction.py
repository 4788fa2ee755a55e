"""Keep bearer-token values out of the servers' logs.

uvicorn logs each socket's path with its query string (``"WebSocket /ws/chat/?token=…"
[accepted]`` on ``uvicorn.error``) and each request's on ``uvicorn.access``; daphne's
``runserver`` and Django's development server log full paths too. A filter on those
loggers masks every ``…token=<value>`` before any handler sees the record. It is added to
the logger objects, not their handlers: the server configures its handlers before it
imports the app, and the app must not undo that configuration.
"""

import logging
import re
from collections.abc import Mapping

REDACTED = "[redacted]"
_TOKEN_PARAMETER = re.compile(r"(token=)[^&\s\"'#;]+", re.IGNORECASE)
SERVER_LOGGERS = (
    "uvicorn.error",
    "uvicorn.access",
    "daphne.server",
    "daphne.http_protocol",
    "daphne.ws_protocol",
    "django.channels.server",
    "django.server",
    "gunicorn.access",
)


def redact(text: str) -> str:
    """Return ``text`` with the value of every ``token=`` parameter masked."""
    return _TOKEN_PARAMETER.sub(rf"\g<1>{REDACTED}", text)


def _redacted(value):
    return redact(value) if isinstance(value, str) else value


class RedactTokensFilter(logging.Filter):
    """Mask token parameters in a record's message and in each of its arguments.

    Arguments keep their shape (uvicorn's access formatter unpacks them by position).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redacted(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _redacted(arg) for key, arg in record.args.items()}
        return True


def install() -> None:
    """Add the filter to every server logger that writes request paths (once each)."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokensFilter) for f in logger.filters):
            logger.addFilter(RedactTokensFilter())
