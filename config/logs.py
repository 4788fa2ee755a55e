"""Logs an operator can use: text or one JSON object per line, each with a request id.

``LOG_FORMAT=json`` writes every record (Django's, the app's, uvicorn's) as one JSON object
per line: ``timestamp``, ``level``, ``logger``, ``message``, ``request_id`` (and
``exception`` with its traceback when there is one). ``text`` (the default) writes the same
fields as a line for people.

The request id names one request in every line logged while it is served. nginx makes one
per request (``$request_id``) and passes it as ``X-Request-ID``; without nginx one is made
here. It lives in the context variable ``REQUEST_ID``: ``config.middleware.RequestIdMiddleware``
binds it for requests through Django's middleware, and code that serves a request outside
that chain (the SSE view, the WebSocket consumer) binds it with ``bind_request_id``. Tasks
started in a fresh ``contextvars.Context`` get it with ``context_with_request_id``.

This module is imported by the settings: it must not import Django's settings.
"""

import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Iterable

from django.core.exceptions import ImproperlyConfigured

LOG_FORMATS = ("text", "json")
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "parlor_request_id", default=None
)
# nginx's $request_id is 32 hex digits; other proxies send UUIDs or similar. Anything
# else (too long, spaces, quotes: a client's attempt to forge log lines) is replaced.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}", re.ASCII)


def new_request_id() -> str:
    """Return a fresh request id (32 hex digits, as nginx's)."""
    return uuid.uuid4().hex


def valid_request_id(value: str | bytes | None) -> str | None:
    """Return ``value`` if it can be used as a request id as it is, else None."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value and _VALID_REQUEST_ID.fullmatch(value):
        return value
    return None


def bind_request_id(incoming: str | bytes | None = None) -> str:
    """Make ``incoming`` (if valid, else a new id) the current request id; return it.

    Call it where a request starts being served, in the task (or thread) serving it:
    every record logged from there on, and from tasks started from there with the
    current context, carries it.
    """
    request_id = valid_request_id(incoming) or new_request_id()
    REQUEST_ID.set(request_id)
    return request_id


def current_request_id() -> str | None:
    """Return the request id of the request being served here, or None."""
    return REQUEST_ID.get()


def scope_request_id(scope: dict) -> str | None:
    """Return the valid ``X-Request-ID`` of an ASGI scope's headers, or None."""
    name = REQUEST_ID_HEADER.lower().encode()
    return valid_request_id(_header(scope.get("headers") or (), name))


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def context_with_request_id(request_id: str | None) -> contextvars.Context:
    """Return a fresh context holding only ``request_id``: for ``create_task(context=…)``."""
    context = contextvars.Context()
    if request_id is not None:
        context.run(REQUEST_ID.set, request_id)
    return context


class RequestIdFilter(logging.Filter):
    """Give each record the request id it was logged under (``-`` outside any request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        line = {
            "timestamp": self.timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": None if request_id in (None, "-") else request_id,
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # Newlines inside values are escaped by json: one record, one line.
        return json.dumps(line, ensure_ascii=False, default=str, separators=(",", ":"))

    @staticmethod
    def timestamp(created: float) -> str:
        """Return ``created`` as ISO 8601 in UTC with milliseconds."""
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        return f"{seconds}.{int(created % 1 * 1000):03d}Z"


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# uvicorn configures its own loggers, with handlers of their own and propagate off, before
# it imports the app; in json every line must be JSON, so they are configured here too.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error")
# uvicorn's access log is on while its logger has a handler (--no-access-log removes
# them): it is configured only if it is on, so that it stays off when it was turned off.
ACCESS_LOGGER = "uvicorn.access"


def logging_config(*, log_format: str, level: str) -> dict:
    """Return the LOGGING setting for ``log_format`` (text or json) at ``level``."""
    if log_format not in LOG_FORMATS:
        choices = ", ".join(LOG_FORMATS)
        raise ImproperlyConfigured(f"LOG_FORMAT must be one of {choices}, not {log_format!r}.")
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "config.logs.RequestIdFilter"}},
        "formatters": {
            "text": {"format": TEXT_FORMAT},
            "json": {"()": "config.logs.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
    }
    if log_format == "json":
        loggers = {name: {"handlers": ["console"], "propagate": False} for name in SERVER_LOGGERS}
        # Named, or dictConfig would make it propagate to "uvicorn" (and so be on).
        access_on = bool(logging.getLogger(ACCESS_LOGGER).handlers)
        loggers[ACCESS_LOGGER] = {"handlers": ["console"] if access_on else [], "propagate": False}
        config["loggers"] = loggers
    return config
