"""chat.llm's SDK client: a chat request built from its constant part is the request the
SDK builds itself."""

import json

import openai
import pytest
from openai._models import FinalRequestOptions

from chat import llm

BODY = {"model": "parlor-dev", "messages": [{"role": "user", "content": "Héllo"}], "stream": True}


def make(api_key="key-1"):
    return llm._Client(
        base_url="http://127.0.0.1:9/v1",
        api_key=api_key,
        timeout=openai.Timeout(42.0, connect=7.0),
        max_retries=0,
    )


def options(body=BODY, **extra):
    return FinalRequestOptions.construct(
        method="post", url=llm.CHAT_PATH, content=llm._body(body), **extra
    )


def as_sent(request):
    return (
        request.method,
        str(request.url),
        sorted(request.headers.multi_items()),
        request.content,
        request.extensions,
    )


def sdk_build(client, opts, **kwargs):
    return openai.AsyncOpenAI._build_request(client, opts, **kwargs)


def test_a_chat_request_is_the_one_the_sdk_builds():
    client = make()
    for body in (BODY, {**BODY, "messages": [{"role": "user", "content": "x" * 5000}]}):
        ours = client._build_request(options(body))
        assert as_sent(ours) == as_sent(sdk_build(client, options(body)))
        assert ours.headers["content-length"] == str(len(llm._body(body)))
        timeout = {"connect": 7.0, "read": 42.0, "write": 42.0, "pool": 42.0}
        assert ours.extensions["timeout"] == timeout
    assert client._template is not None


def test_the_template_follows_a_changed_key():
    client = make()
    client._build_request(options())
    client.api_key = "key-2"
    request = client._build_request(options())
    assert request.headers["authorization"] == "Bearer key-2"
    assert as_sent(request) == as_sent(sdk_build(client, options()))


@pytest.mark.parametrize(
    "extra",
    [
        {"headers": {"X-Extra": "1"}},
        {"timeout": 3.0},
        {"params": {"a": "b"}},
    ],
)
def test_a_request_with_options_of_its_own_is_built_by_the_sdk(extra):
    client = make()
    request = client._build_request(options(**extra))
    assert as_sent(request) == as_sent(sdk_build(client, options(**extra)))
    assert client._template is None  # the constant part is kept from plain requests only


def test_a_retry_is_built_by_the_sdk():
    client = make()
    request = client._build_request(options(), retries_taken=1)
    assert request.headers["x-stainless-retry-count"] == "1"


def test_the_body_is_json_even_with_text_orjson_refuses():
    body = {"messages": [{"role": "user", "content": "cut \ud83d emoji"}]}
    assert json.loads(llm._body(body)) == body
    assert json.loads(llm._body(BODY)) == BODY
