"""``POST /api/chat/stream``: one reply as Server-Sent Events (SPEC 4.1, 4.2).

The same events as the WebSocket, each as ``data: {json}``. The reply is written by the
engine, not by this response: a client that goes away does not stop it.
"""

import asyncio
import json

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.http import JsonResponse, StreamingHttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from accounts.tokens import token_user

from . import engine, ratelimit, services
from .exceptions import DomainError
from .models import Message
from .rendering import render_markdown

ALLOWED_FIELDS = {"message", "session", "model", "run", "client_id"}
# Seconds of silence before a ``: ping`` comment (keeps proxies from closing the stream)
# and a look at the stored reply (so a lost ``done`` cannot hang the stream forever).
KEEPALIVE_INTERVAL = 15.0


def _error(status: int, code: str, message: str, fields: dict | None = None) -> JsonResponse:
    body = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return JsonResponse({"error": body}, status=status)


def _csrf_failure(request) -> JsonResponse | None:
    """Return a 403 response if a session-authenticated request fails the CSRF check."""
    check = CsrfViewMiddleware(lambda req: None)
    check.process_request(request)
    rejected = check.process_view(request, None, (), {})
    if rejected is not None:
        return _error(403, "csrf_failed", "CSRF verification failed.")
    return None


async def _authenticate(request):
    """Return (user, error response): a bearer token, else the session with CSRF."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        user = await database_sync_to_async(token_user)(header[7:].strip())
        if user is None:
            return None, _error(401, "not_authenticated", "The token is invalid or expired.")
        return user, None
    user = await request.auser()
    if not user.is_authenticated:
        return None, _error(401, "not_authenticated", "Authentication credentials were not given.")
    failure = await sync_to_async(_csrf_failure)(request)
    return (None, failure) if failure else (user, None)


def _parse(body: bytes) -> tuple[dict | None, JsonResponse | None]:
    try:
        data = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError):
        return None, _error(400, "invalid_json", "The body is not valid JSON.")
    if not isinstance(data, dict):
        return None, _error(400, "invalid", "The body must be a JSON object.")
    unknown = sorted(data.keys() - ALLOWED_FIELDS)
    if unknown:
        return None, _error(
            400,
            "unknown_fields",
            f"Unknown fields: {', '.join(unknown)}.",
            {name: "Unknown field." for name in unknown},
        )
    if "message" not in data:
        return None, _error(400, "invalid", "message is required.", {"message": "Required."})
    return data, None


def _sse(event: dict) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()


def _stored_end(session_id, state: dict) -> list[dict]:
    """Return the events that replay a final stored reply: its text, then done or error."""
    session = str(session_id)
    events = [
        {
            "type": "token",
            "session": session,
            "message": state["message"],
            "content": state["content"],
            "offset": 0,
        }
    ]
    if state["status"] == Message.Status.ERROR:
        events.append(
            {
                "type": "error",
                "session": session,
                "message": state["message"],
                "error": state["error"] or "The reply failed.",
            }
        )
    else:
        events.append(
            {
                "type": "done",
                "session": session,
                "message": state["message"],
                "html": render_markdown(state["content"]),
                "usage": None,
                "status": state["status"],
            }
        )
    return events


async def _final_state(session_id, message_id) -> dict | None:
    """Return the stored reply ``message_id`` if it is final (ending it if abandoned)."""
    state = await database_sync_to_async(engine.reply_state)(session_id=session_id)
    if state is None or state["message"] != message_id:
        return None
    if state["status"] == Message.Status.STREAMING:
        if not await engine.afinish_abandoned(session_id=session_id):
            return None
        state = await database_sync_to_async(engine.reply_state)(session_id=session_id)
    return state if state["status"] != Message.Status.STREAMING else None


@csrf_exempt  # checked in _authenticate for session auth; bearer tokens need none
async def stream_view(request):
    """Store the message and stream the reply as text/event-stream."""
    if request.method != "POST":
        return _error(405, "method_not_allowed", "Use POST.")
    user, failure = await _authenticate(request)
    if failure is not None:
        return failure
    data, failure = _parse(request.body)
    if failure is not None:
        return failure
    try:
        await database_sync_to_async(ratelimit.check_send_rate)(user_id=user.pk)
    except ratelimit.RateLimited as exc:
        response = _error(429, exc.code, exc.message)
        response["Retry-After"] = str(exc.retry_after)
        return response
    try:
        reply = await database_sync_to_async(services.reply_start)(
            user=user,
            content=data["message"],
            session_id=data.get("session"),
            model_id=data.get("model"),
            run_id=data.get("run"),
            client_id=data.get("client_id"),
        )
    except DomainError as exc:
        fields = {exc.field: exc.message} if exc.field and exc.status == 400 else None
        return _error(exc.status, exc.code, exc.message, fields)

    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = engine.session_group(reply.session.pk)
    await layer.group_add(group, channel)
    engine.start_generation(reply)
    message_id = reply.assistant_message.pk if reply.assistant_message else None

    async def events():
        receiving = None
        try:
            yield _sse(
                {
                    "type": "session",
                    "session": str(reply.session.pk),
                    "title": reply.session.title,
                    "created": reply.session_created,
                    "message": message_id,
                }
            )
            if message_id is None:
                return  # a duplicate of a message that never got a reply: nothing to wait for
            if reply.duplicate:
                state = await _final_state(reply.session.pk, message_id)
                if state is not None:
                    for event in _stored_end(reply.session.pk, state):
                        yield _sse(event)
                    return
            while True:
                # One receive at a time, never cancelled while waiting: cancelling a
                # channels-redis receive can drop another channel's message.
                receiving = receiving or asyncio.ensure_future(layer.receive(channel))
                done, _ = await asyncio.wait({receiving}, timeout=KEEPALIVE_INTERVAL)
                if not done:
                    yield b": ping\n\n"
                    state = await _final_state(reply.session.pk, message_id)
                    if state is not None:
                        for event in _stored_end(reply.session.pk, state):
                            yield _sse(event)
                        return
                    continue
                event = receiving.result()["event"]
                receiving = None
                yield _sse(event)
                if event["type"] in ("done", "error") and event.get("message") == message_id:
                    return
        finally:
            if receiving is not None:
                receiving.cancel()
            await layer.group_discard(group, channel)

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
