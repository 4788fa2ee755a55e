"""config/logs.py and the request id: one JSON object per line, each naming its request."""

import asyncio
import contextvars
import io
import json
import logging
import logging.config

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import AsyncClient

from config.logs import (
    REQUEST_ID,
    JsonFormatter,
    RequestIdFilter,
    bind_request_id,
    context_with_request_id,
    current_request_id,
    logging_config,
    scope_request_id,
)

NGINX_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"  # what nginx's $request_id looks like


def configured(log_format: str, name: str) -> tuple[logging.Logger, io.StringIO]:
    """Return a logger writing to a string through ``log_format``'s console handler.

    Built by dictConfig's own configurator from LOGGING's entries (the global dictConfig
    would close the test runner's handlers).
    """
    config = logging_config(log_format=log_format, level="INFO")
    configurator = logging.config.DictConfigurator(config)
    configurator.config["formatters"] = config["formatters"]
    formatter = configurator.configure_formatter(config["formatters"][log_format])
    request_id = configurator.configure_filter(config["filters"]["request_id"])
    assert config["handlers"]["console"]["filters"] == ["request_id"]
    assert config["handlers"]["console"]["formatter"] == log_format
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(request_id)
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_a_json_line_holds_time_level_logger_message_and_request_id():
    logger, stream = configured("json", "parlor.test.json")
    context = contextvars.copy_context()
    context.run(bind_request_id, NGINX_ID)
    context.run(logger.info, "reply %s ended", 42)
    contextvars.Context().run(logger.warning, "outside any request\nsecond line")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert set(first) == {"timestamp", "level", "logger", "message", "request_id"}
    assert (first["level"], first["logger"], first["message"]) == (
        "INFO",
        "parlor.test.json",
        "reply 42 ended",
    )
    assert first["request_id"] == NGINX_ID
    assert first["timestamp"].endswith("Z") and "T" in first["timestamp"]
    assert (second["request_id"], second["message"]) == (None, "outside any request\nsecond line")


def test_an_exception_stays_in_its_one_json_line():
    logger, stream = configured("json", "parlor.test.exc")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    (line,) = stream.getvalue().splitlines()
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_a_text_line_names_the_request_too():
    logger, stream = configured("text", "parlor.test.text")
    context = contextvars.copy_context()
    context.run(bind_request_id, NGINX_ID)
    context.run(logger.info, "hello")
    contextvars.Context().run(logger.info, "no request")
    first, second = stream.getvalue().splitlines()
    assert f"INFO parlor.test.text [{NGINX_ID}] hello" in first
    assert "[-] no request" in second


def test_log_format_is_text_or_json():
    with pytest.raises(ImproperlyConfigured, match="LOG_FORMAT"):
        logging_config(log_format="xml", level="INFO")


def test_json_takes_uvicorns_loggers_and_leaves_its_access_log_off_when_it_is_off():
    access = logging.getLogger("uvicorn.access")
    saved = access.handlers[:]
    try:
        access.handlers = []  # uvicorn --no-access-log
        loggers = logging_config(log_format="json", level="INFO")["loggers"]
        assert loggers["uvicorn.access"] == {"handlers": [], "propagate": False}
        access.handlers = [logging.NullHandler()]  # uvicorn's access log on
        loggers = logging_config(log_format="json", level="INFO")["loggers"]
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            assert loggers[name] == {"handlers": ["console"], "propagate": False}
        assert "loggers" not in logging_config(log_format="text", level="INFO")
    finally:
        access.handlers = saved


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        (NGINX_ID, True),
        ("3b241101-e2bb-4255-8caf-4136c566a962", True),
        (NGINX_ID.encode(), True),
        (None, False),
        ("", False),
        ("x" * 65, False),
        ('forged" "level":"ERROR', False),
        ("line\nbreak", False),
    ],
)
def test_a_request_id_is_taken_as_given_only_when_it_is_a_plain_token(incoming, kept):
    bound = contextvars.copy_context().run(bind_request_id, incoming)
    expected = incoming.decode() if isinstance(incoming, bytes) else incoming
    assert (bound == expected) is kept
    assert len(bound) >= 1 and bound.replace("-", "").isalnum()


def test_scope_request_id_reads_the_asgi_header():
    scope = {"headers": [(b"host", b"x"), (b"x-request-id", NGINX_ID.encode())]}
    assert scope_request_id(scope) == NGINX_ID
    assert scope_request_id({"headers": [(b"x-request-id", b"bad id")]}) is None
    assert scope_request_id({}) is None


async def test_a_task_started_in_a_fresh_context_gets_the_request_id_it_is_given():
    async def read():
        return current_request_id()

    loop = asyncio.get_running_loop()
    before = REQUEST_ID.get()
    assert await loop.create_task(read(), context=contextvars.Context()) is None
    task = loop.create_task(read(), context=context_with_request_id(NGINX_ID))
    assert await task == NGINX_ID
    assert REQUEST_ID.get() == before  # the caller's context is untouched


@pytest.mark.django_db
def test_the_middleware_serves_a_request_under_nginxs_id_and_answers_with_it(client, caplog):
    caplog.set_level(logging.WARNING, logger="django.request")
    caplog.handler.addFilter(RequestIdFilter())  # as LOGGING's handler has it
    response = client.get("/no-such-page", HTTP_X_REQUEST_ID=NGINX_ID)
    assert response.status_code == 404
    assert response["X-Request-ID"] == NGINX_ID
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert json.loads(JsonFormatter().format(record))["request_id"] == NGINX_ID


@pytest.mark.django_db
def test_without_a_usable_id_the_middleware_makes_one(client):
    made = client.get("/healthz")["X-Request-ID"]
    replaced = client.get("/healthz", HTTP_X_REQUEST_ID="not an id")["X-Request-ID"]
    assert len(made) == len(replaced) == 32 and made != replaced
    assert "not an id" not in replaced


@pytest.mark.django_db(transaction=True)
async def test_the_middleware_binds_the_id_on_the_async_path_too():
    response = await AsyncClient().get("/healthz", headers={"X-Request-ID": NGINX_ID})
    assert response["X-Request-ID"] == NGINX_ID
