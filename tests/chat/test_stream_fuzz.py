"""Fuzzing the streams' client input: WebSocket frames and SSE bodies (SPEC 4.6).

Whatever a client sends — odd types, NUL, half surrogate pairs, huge numbers, deep
nesting, not JSON at all — the socket answers with events and stays open (never a close
1011), and SSE answers a 4xx in the API's error shape or a stream (never a 500).
"""

import json

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat import streaming
from tests.factories import UserFactory

from .conftest import open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("dev_llm")]

ODD_TEXT = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()), max_size=40
) | st.sampled_from(["\x00", "\ud800", "a\udfffb", "💬", "[dev:tokens=2]", ""])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | ODD_TEXT
    | st.uuids().map(str)
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
KEYS = st.sampled_from(
    ["type", "session", "content", "model", "run", "client_id", "message", "llm"]
)
FRAMES = st.dictionaries(KEYS, VALUES, max_size=5).map(
    lambda frame: (
        {**frame, "content": f"{frame['content']} [dev:tokens=2]"}
        if isinstance(frame.get("content"), str)
        else frame
    )
) | st.fixed_dictionaries(
    {"type": st.sampled_from(["send", "stop", "subscribe"])}, optional={"session": VALUES}
)


def encode(frame) -> str:
    # json.dumps writes lone surrogates as \\udXXX escapes, as a client's JSON would.
    return json.dumps(frame)


RAW = st.sampled_from(
    [" ", "{", "[]", "null", "1e999", '"\\ud800"', "[" * 3000 + "]" * 3000, "\x00"]
)


@database_sync_to_async
def make_user():
    return UserFactory()


def examples(strategy, count: int = 120) -> list:
    """Draw ``count`` examples, the same every run (hypothesis runs no async test)."""
    drawn = []

    @settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def draw(value):
        drawn.append(value)

    draw()
    return drawn


async def test_any_websocket_frame_gets_events_and_the_socket_stays_open():
    user = await make_user()
    socket = await open_socket(user)
    answered, refusals = 0, set()
    for frame in examples(FRAMES.map(encode) | RAW):
        await socket.send_to(text_data=frame)
        # Every frame is answered: an error, or the session event of a send.
        event = json.loads(await socket.receive_from(timeout=5))
        assert event["type"] in {"error", "session"}, (frame, event)
        if event["type"] == "error":
            refusals.add(event.get("code"))
            assert event.get("code") != "server_error", (frame, event)
        answered += 1
        # Drain what else this frame started (a short reply), so frames stay paired.
        while not await socket.receive_nothing(timeout=0.1):
            await socket.receive_from()
    # Still open and still serving after all of it.
    await socket.send_json_to({"type": "send", "content": "still there? [dev:tokens=3]"})
    event = json.loads(await socket.receive_from(timeout=5))
    assert event["type"] == "session"
    await socket.disconnect()
    await streaming.Engine.current().wait_idle(10)
    assert answered >= 100
    assert "invalid" in refusals


async def test_any_sse_body_is_a_4xx_in_the_error_shape_or_a_stream():
    from accounts.tokens import token_issue

    user = await make_user()
    raw, _ = await database_sync_to_async(token_issue)(user=user)
    client = AsyncClient()
    statuses = set()
    bodies = st.dictionaries(
        st.sampled_from(["message", "session", "model", "run", "client_id", "llm", "extra"]),
        VALUES,
        max_size=4,
    ).map(encode)
    for body in examples(bodies | RAW):
        response = await client.post(
            "/api/chat/stream",
            data=body.encode("utf-8", "surrogatepass"),
            content_type="application/json",
            headers={"Authorization": f"Bearer {raw}"},
        )
        statuses.add(response.status_code)
        if response.status_code == 200:
            assert response["Content-Type"] == "text/event-stream"
            async for _ in response.streaming_content:
                pass
        else:
            assert 400 <= response.status_code < 500, (body, response.content)
            error = response.json()["error"]
            assert error["code"] and error["message"]
    await streaming.Engine.current().wait_idle(10)
    assert 400 in statuses
