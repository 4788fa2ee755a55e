"""POST /api/chat/stream is documented in the OpenAPI schema, and the documentation is
true: the real stream's events and refusals (through ASGI) match it.

The schemathesis runs (test_schema.py, test_schema_negative.py) leave this operation out,
because they call the app through WSGI, where it does not stream; this file tests it
instead.
"""

import copy
import json
import re

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.test import AsyncClient, Client
from jsonschema import Draft202012Validator
from rest_framework.test import APIClient

from accounts.tokens import token_issue
from chat import streaming
from chat.api.schema import EXAMPLE_STREAM, PATH
from chat.streaming import lifecycle
from tests.chat.conftest import dev_llm, dev_llm_server  # noqa: F401 (fixtures)
from tests.factories import ModelFactory, RunFactory, TradeFactory, UserFactory

EVENT_FIELDS = {
    # SPEC 4.2: each event's type and what it carries (``message`` of error is optional).
    "session": {"session", "title", "created"},
    "status": {"content"},
    "token": {"session", "message", "content"},
    "title": {"session", "title"},
    "done": {"session", "message", "html", "usage"},
    "error": {"error"},
    # SPEC 4.6 (operators): a stream open while people come and go, or write, carries them.
    "participant": {"session", "action", "name"},
    "message": {"session", "message"},
}


def schema() -> dict:
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return response.json()


def component(doc: dict, ref: str) -> dict:
    assert ref.startswith("#/components/schemas/"), ref
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]


def as_json_schema(node):
    """Return an OpenAPI 3.0 schema as JSON Schema: ``nullable`` becomes a null choice."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: as_json_schema(value) for key, value in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


def validator(doc: dict, name: str) -> Draft202012Validator:
    """Return a validator for one component, its references resolved within the schema."""
    root = {
        "$ref": f"#/components/schemas/{name}",
        "components": {"schemas": as_json_schema(copy.deepcopy(doc["components"]["schemas"]))},
    }
    return Draft202012Validator(root)


def check_event(doc: dict, event: dict) -> None:
    """Fail unless ``event`` is valid for its documented schema and has no undocumented key."""
    mapping = component(doc, "#/components/schemas/ChatStreamEvent")["discriminator"]["mapping"]
    assert event["type"] in mapping, event
    name = mapping[event["type"]].rsplit("/", 1)[1]
    errors = [e.message for e in validator(doc, name).iter_errors(event)]
    assert errors == [], (event, errors)
    documented = set(doc["components"]["schemas"][name]["properties"])
    assert set(event) <= documented, (event["type"], set(event) - documented)


def parse(text: str) -> list[dict]:
    """Return the events of an SSE body (``data:`` lines; ``:`` comments skipped)."""
    events = []
    for block in text.strip().split("\n\n"):
        lines = [line for line in block.split("\n") if not line.startswith(":")]
        if lines:
            assert len(lines) == 1 and lines[0].startswith("data: "), block
            events.append(json.loads(lines[0][len("data: ") :]))
    return events


@pytest.mark.django_db
def test_the_schema_documents_the_stream_request_auth_and_responses():
    doc = schema()
    operation = doc["paths"][PATH]["post"]
    assert list(doc["paths"][PATH]) == ["post"]
    assert operation["operationId"] == "chat_stream"

    body = operation["requestBody"]
    assert body["required"] is True and list(body["content"]) == ["application/json"]
    # One of a send, an edit and a regeneration.
    kinds = component(doc, body["content"]["application/json"]["schema"]["$ref"])["oneOf"]
    send, edit, regenerate = (component(doc, kind["$ref"]) for kind in kinds)
    assert (set(edit["properties"]), edit["required"]) == (
        {"edit", "message", "client_id"},
        ["edit", "message"],
    )
    assert (set(regenerate["properties"]), regenerate["required"]) == (
        {"regenerate"},
        ["regenerate"],
    )
    assert edit["properties"]["edit"]["type"] == regenerate["properties"]["regenerate"]["type"]
    assert edit["properties"]["edit"]["type"] == "integer"
    request = send
    properties = request["properties"]
    assert set(properties) == {
        "message",
        "session",
        "model",
        "run",
        "client_id",
        "llm",
        "temporary",
    }
    assert properties["temporary"]["type"] == "boolean"
    assert request["required"] == ["message"]
    assert properties["message"]["type"] == "string" and properties["message"]["maxLength"]
    assert (properties["session"]["type"], properties["session"]["format"]) == ("string", "uuid")
    assert properties["model"]["type"] == properties["run"]["type"] == "integer"
    assert properties["client_id"]["type"] == "string"

    # Bearer token or the session cookie (with CSRF, said in the description).
    assert {"bearerAuth": []} in operation["security"]
    assert {"cookieAuth": []} in operation["security"]
    assert "CSRF" in operation["description"]

    responses = operation["responses"]
    errors = ("400", "401", "403", "404", "409", "429", "501", "503")
    assert set(responses) == {"200", *errors}
    assert list(responses["200"]["content"]) == ["text/event-stream"]
    for status in errors:
        error = responses[status]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/Error"}, status


@pytest.mark.django_db
def test_the_schema_documents_every_event_of_the_stream():
    doc = schema()
    stream = doc["paths"][PATH]["post"]["responses"]["200"]["content"]["text/event-stream"]
    events = component(doc, stream["schema"]["$ref"])
    assert events["discriminator"]["propertyName"] == "type"
    mapping = events["discriminator"]["mapping"]
    assert set(mapping) == set(EVENT_FIELDS)
    assert sorted(ref["$ref"] for ref in events["oneOf"]) == sorted(mapping.values())
    for kind, fields in EVENT_FIELDS.items():
        event = component(doc, mapping[kind])
        assert fields | {"type"} <= set(event["required"]), kind
        type_schema = event["properties"]["type"]
        assert component(doc, type_schema["$ref"])["enum"] == [kind]
    error = component(doc, mapping["error"])
    assert {"code", "session", "message"} <= set(error["properties"])
    # The example in the docs is a stream of documented events.
    example = stream["examples"]["AReply"]["value"]
    assert example == EXAMPLE_STREAM
    for event in parse(example):
        check_event(doc, event)


@pytest.mark.django_db
def test_the_schema_is_valid_openapi_with_no_warning(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "/api/chat/stream:" in out.read_text()


@pytest.mark.django_db
def test_the_docs_page_shows_the_schema_with_the_stream():
    client = Client()
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    # Swagger UI loads the schema from /api/schema/, which holds the operation.
    assert re.search(rb"/api/schema/", docs.content)
    assert PATH in schema()["paths"]


# The real stream keeps to the documentation.


@database_sync_to_async
def documented() -> dict:
    return schema()


@database_sync_to_async
def a_user_with_a_run():
    user = UserFactory()
    run = RunFactory(model=ModelFactory(owner=user))
    TradeFactory(run=run, symbol="TSLA", executed_at=run.started_at)
    raw, _ = token_issue(user=user)
    return user, run, {"Authorization": f"Bearer {raw}"}


async def stream(body: dict, headers: dict) -> tuple[int, str, list[dict] | dict]:
    response = await AsyncClient().post(
        PATH, data=json.dumps(body), content_type="application/json", headers=headers
    )
    if response["Content-Type"] != "text/event-stream":
        return response.status_code, response["Content-Type"], json.loads(response.content)
    text = b"".join([chunk async for chunk in response.streaming_content]).decode()
    await streaming.Engine.current().wait_idle()
    return response.status_code, response["Content-Type"], parse(text)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("dev_llm")
async def test_a_real_run_stream_sends_only_documented_events():
    doc = await documented()
    _, run, auth = await a_user_with_a_run()
    status, content_type, events = await stream(
        {"message": "Show me the trades of this run", "run": run.pk}, auth
    )
    assert (status, content_type) == (200, "text/event-stream")
    kinds = [event["type"] for event in events]
    assert kinds[0] == "session" and "status" in kinds and "token" in kinds
    # A first message's stream may carry the title after the reply's done.
    assert kinds[-1] == "done" or kinds[-2:] == ["done", "title"], kinds
    for event in events:
        check_event(doc, event)


@pytest.mark.django_db(transaction=True)
async def test_a_failed_reply_ends_with_a_documented_error_event(settings):
    doc = await documented()
    _, _, auth = await a_user_with_a_run()
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens: the LLM fails
    settings.LLM_TIMEOUT = 2.0
    status, _, events = await stream({"message": "Hello"}, auth)
    assert status == 200
    kinds = [event["type"] for event in events]
    assert kinds[:2] == ["session", "error"] and set(kinds[2:]) <= {"title"}, kinds
    for event in events:
        check_event(doc, event)


@pytest.mark.django_db(transaction=True)
async def test_refusals_are_documented_statuses_in_the_error_shape():
    doc = await documented()
    responses = doc["paths"][PATH]["post"]["responses"]
    error_shape = validator(doc, "Error")
    _, _, auth = await a_user_with_a_run()
    other = await database_sync_to_async(RunFactory)()
    cases = [
        ({"message": "Hi"}, {}, 401),
        ({"message": "Hi"}, {"Authorization": "Bearer not-a-token"}, 401),
        ({"message": ""}, auth, 400),
        ({"message": "Hi", "colour": "red"}, auth, 400),
        ({"message": "Hi", "session": "not-a-uuid"}, auth, 400),
        ({"message": "Hi", "run": other.pk}, auth, 404),
    ]
    for body, headers, expected in cases:
        status, content_type, answer = await stream(body, headers)
        assert (status, content_type) == (expected, "application/json"), (body, answer)
        assert str(status) in responses
        assert list(error_shape.iter_errors(answer)) == [], answer


@pytest.mark.django_db(transaction=True)
async def test_draining_and_wsgi_refusals_are_the_documented_503_and_501(monkeypatch):
    doc = await documented()
    responses = doc["paths"][PATH]["post"]["responses"]
    error_shape = validator(doc, "Error")
    _, _, auth = await a_user_with_a_run()
    with monkeypatch.context() as patch:
        patch.setitem(lifecycle._state, "draining", True)
        status, content_type, answer = await stream({"message": "Hi"}, auth)
    assert (status, content_type, answer["error"]["code"]) == (503, "application/json", "draining")
    assert "503" in responses and list(error_shape.iter_errors(answer)) == []

    served = await database_sync_to_async(Client().post)(
        PATH, data=json.dumps({"message": "Hi"}), content_type="application/json", headers=auth
    )
    answer = json.loads(served.content)
    assert (served.status_code, answer["error"]["code"]) == (501, "not_implemented")
    assert "501" in responses and list(error_shape.iter_errors(answer)) == []


@pytest.mark.django_db(transaction=True)
async def test_session_auth_without_csrf_is_the_documented_403():
    user = await database_sync_to_async(UserFactory)()
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(user)
    response = await client.post(PATH, {"message": "Hi"}, content_type="application/json")
    assert response.status_code == 403
    doc = await documented()
    assert "403" in doc["paths"][PATH]["post"]["responses"]
    body = json.loads(response.content)
    assert list(validator(doc, "Error").iter_errors(body)) == []
    assert body["error"]["code"] == "csrf_failed"
