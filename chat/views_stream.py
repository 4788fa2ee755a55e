"""``POST /api/chat/stream``: one reply as Server-Sent Events (SPEC 4.1, 4.2).

The same events as the WebSocket, each as ``data: {json}``. The reply is written by the
streaming engine, not by this response: a client that goes away does not stop it.

config/asgi.py serves this view without Django's middleware (each sync middleware costs
two thread hops under ASGI), so the view validates the host, authenticates (a bearer
token, or the session cookie with its CSRF check) and answers errors in the API's one
shape itself. A bearer-token request is authenticated and its message stored in one
unit of database work.
"""

import asyncio
import uuid

from django.conf import settings
from django.contrib.auth import get_user
from django.core.exceptions import DisallowedHost
from django.http import JsonResponse, StreamingHttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from accounts.tokens import InvalidToken, bearer_token, token_sender, token_user
from config.logs import REQUEST_ID_HEADER, bind_request_id

from . import llm, prompting, ratelimit, selectors, streaming
from .exceptions import DomainError
from .models import Message
from .rendering import render_markdown
from .streaming import events
from .text import parse_json

ALLOWED_FIELDS = {"message", "session", "model", "run", "client_id", "temporary", "llm"}
# An edit or a regeneration names the message it makes a new version of (SPEC 4.6).
EDIT_FIELDS = {"edit", "message", "client_id"}
REGENERATE_FIELDS = {"regenerate"}
# Seconds of silence before a ``: ping`` comment (keeps proxies from closing the stream)
# and a look at the stored reply (so nothing can leave the stream hanging).
KEEPALIVE_INTERVAL = 15.0
# Seconds a conversation's first stream stays open after its reply for the title.
TITLE_WAIT = 5.0
PING = b": ping\n\n"


class NotAuthenticated(DomainError):
    status = 401
    code = "not_authenticated"
    default_message = "Authentication credentials were not given."


class CsrfFailed(DomainError):
    status = 403
    code = "csrf_failed"
    default_message = "CSRF verification failed."


def _error(exc: DomainError) -> JsonResponse:
    body = {"code": exc.code, "message": exc.message}
    if exc.field and exc.status == 400:
        body["fields"] = {exc.field: [exc.message]}
    response = JsonResponse({"error": body}, status=exc.status)
    if retry_after := getattr(exc, "retry_after", None):
        response["Retry-After"] = str(retry_after)
    return response


def _parse(body: bytes) -> dict:
    """Return the request's fields, checked for shape; raise DomainError if malformed."""
    try:
        data = parse_json(body or b"")
    except ValueError as exc:
        error = DomainError(str(exc))
        error.code = "invalid_json"
        raise error from None
    if not isinstance(data, dict):
        raise DomainError("The body must be a JSON object.")
    kind = next((name for name in ("edit", "regenerate") if name in data), None)
    allowed = {"edit": EDIT_FIELDS, "regenerate": REGENERATE_FIELDS}.get(kind, ALLOWED_FIELDS)
    unknown = sorted(data.keys() - allowed)
    if unknown:
        what = f" with {kind}" if kind else ""
        raise DomainError(f"Unknown fields{what}: {', '.join(unknown)}.", field=unknown[0])
    if kind is not None:
        value = data[kind]
        if isinstance(value, bool) or not isinstance(value, int):
            raise DomainError(f"{kind} must be a message id (an integer).", field=kind)
    if "message" not in data and kind != "regenerate":
        raise DomainError("message is required.", field="message")
    for name in ("session", "client_id", "llm"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise DomainError(f"{name} must be a string.", field=name)
    if data.get("session"):
        try:
            uuid.UUID(data["session"])
        except ValueError:
            raise DomainError(
                f"'{data['session'][:64]}' is not a valid conversation id.", field="session"
            ) from None
    for name in ("model", "run"):
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise DomainError(f"{name} must be an integer id.", field=name)
    if not isinstance(data.get("temporary", False), bool):
        raise DomainError("temporary must be true or false.", field="temporary")
    return data


def _session_user(request):
    """Return the signed-in user of the session cookie (sync: reads the session store)."""
    from importlib import import_module

    engine = import_module(settings.SESSION_ENGINE)
    request.session = engine.SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    return get_user(request)


def _csrf_refused(request) -> bool:
    check = CsrfViewMiddleware(lambda req: None)
    check.process_request(request)
    return check.process_view(request, None, (), {}) is not None


def _caller(request, lookup=token_user):
    """Return who makes ``request`` (sync: reads the token or the session store): a
    bearer token's user (found by ``lookup``), else the session cookie's, whose request
    must pass the CSRF check. Raise the 401 or 403 error otherwise."""
    raw = bearer_token(request.headers.get("Authorization"))
    if raw is not None:
        user = lookup(raw)
        if user is None:
            raise InvalidToken()
        return user
    user = getattr(request, "user", None) or _session_user(request)
    if not user.is_authenticated:
        raise NotAuthenticated()
    if _csrf_refused(request):
        raise CsrfFailed()
    return user


def _begin(request, fields: dict, writing, *, early) -> streaming.Prepared:
    """Authenticate and store the message: one unit of database work. A bearer token
    seen lately is checked by the send's locking statement (accounts.tokens.token_sender:
    no round trip of its own)."""
    caller = _caller(request, token_sender)
    return streaming.prepare(user=caller, writing=writing, early=early, **fields)


class _Stream:
    """An SSE response as a watcher: the events of its reply, until that reply ends."""

    def __init__(self, message: int | None, *, titled: bool = True):
        self.message = message
        # A conversation's first reply: its title is being made, and the stream stays
        # open for it a little after the reply ends (TITLE_WAIT).
        self.titled = titled
        self.queue: asyncio.Queue[events.Event] = asyncio.Queue()

    def deliver(self, event: events.Event) -> None:
        if event.kind in ("token", "status", "done", "error", "session"):
            if event.message in (None, self.message) or event.kind == "session":
                self.queue.put_nowait(event)
        elif event.kind in ("title", "participant", "message"):
            self.queue.put_nowait(event)

    async def body(self, engine, session: str):
        heard, ended = True, False
        ticker = asyncio.get_running_loop().call_later(KEEPALIVE_INTERVAL, self._tick)
        try:
            while True:
                event = await self.queue.get()
                if event is _TICK:
                    if heard:
                        heard = False
                    else:
                        yield PING
                        if await self._ended_in_store(engine, session):
                            return
                    ticker = asyncio.get_running_loop().call_later(KEEPALIVE_INTERVAL, self._tick)
                    continue
                if event is _END:
                    return
                heard = True
                yield b"data: " + event.data + b"\n\n"
                if event.kind == "title":
                    self.titled = True
                if event.ends_reply and event.message == self.message:
                    if self.titled:
                        return
                    ended = True
                    asyncio.get_running_loop().call_later(TITLE_WAIT, self.queue.put_nowait, _END)
                if ended and self.titled:
                    return
                if event.kind == "error" and event.message is None:
                    return  # the conversation was deleted
        finally:
            ticker.cancel()
            engine.unwatch(session, self)

    def _tick(self) -> None:
        self.queue.put_nowait(_TICK)

    async def _ended_in_store(self, engine, session: str) -> bool:
        """After a long silence, replay the reply from the database if it has ended."""
        state = await streaming.db.run(selectors.reply_state, session_id=session)
        if state is None or state["pk"] != self.message:
            return False
        if state["status"] == Message.Status.STREAMING:
            await engine.settle_abandoned(session=session)
            return False  # if it was abandoned, the error event is on its way
        for event in streaming.stored_reply_events(session, state):
            self.queue.put_nowait(event)
        return False


_TICK = events.Event("tick", "", None, {}, b"")
_END = events.Event("end", "", None, {}, b"")


@csrf_exempt  # checked in _caller for session auth; bearer tokens need none
async def stream_view(request):
    """Store the message and stream the reply as text/event-stream."""
    bind_request_id(request.headers.get(REQUEST_ID_HEADER))  # no middleware does it here
    if streaming.draining():
        # Shutting down: nginx gives a 503 to another worker (proxy_next_upstream).
        error = DomainError("This server is restarting; please try again.")
        error.status, error.code = 503, "draining"
        return _error(error)
    if not hasattr(request, "scope"):
        # Under WSGI each request gets a loop of its own that ends with the view: a reply
        # streamed from it would never end. (The REST API's messages endpoint works.)
        error = DomainError("This endpoint streams: serve Parlor with an ASGI server.")
        error.status, error.code = 501, "not_implemented"
        return _error(error)
    try:
        request.get_host()  # ALLOWED_HOSTS: no middleware checks it on this path
    except DisallowedHost:
        return _error(DomainError("The Host header is not allowed."))
    if request.method != "POST":
        error = DomainError("Use POST.")
        error.status, error.code = 405, "method_not_allowed"
        return _error(error)
    engine = streaming.Engine.current()
    try:
        data = _parse(request.body)
        if "regenerate" in data:
            fields = {"regenerate": data["regenerate"]}
        elif "edit" in data:
            fields = {
                "edit": data["edit"],
                "content": data["message"],
                "client_id": data.get("client_id"),
            }
        else:
            fields = {
                "content": data["message"],
                "session_id": data.get("session"),
                "model_id": data.get("model"),
                "run_id": data.get("run"),
                "client_id": data.get("client_id"),
                "temporary": data.get("temporary", False),
                "llm": data.get("llm"),
            }
        prepared, early = await streaming.store(engine, _begin, request, fields, engine.writing())
    except DomainError as exc:
        return _error(exc)
    reply = prepared.reply
    session = str(reply.session.pk)
    message = reply.assistant_message.pk if reply.assistant_message else None
    stream = _Stream(message, titled=not (prepared.startable and reply.first_message))
    started = events.session_started(reply, duplicate=reply.duplicate)
    if message is None:
        # A duplicate of a message that never got a reply: nothing to wait for.
        body = iter([b"data: " + started.data + b"\n\n"])
        response = StreamingHttpResponse(body, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        return response
    stream.deliver(started)
    if prepared.startable:
        engine.launch(reply, prepared.context, stream, early=early)
    else:
        await streaming.follow(engine, session, stream)
    response = StreamingHttpResponse(stream.body(engine, session), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


# A suggested reply (SPEC 4.6, "Operators") ---------------------------------------------


class NotAnOperator(DomainError):
    status = 403
    code = "not_operator"
    default_message = "Only an operator in the conversation can ask for a suggested reply."


def _suggestion_for(request, session_id) -> prompting.ReplyContext:
    """Authenticate an operator's request for a draft, check it and return the LLM
    input: one unit of database work."""
    user = _caller(request)
    session = selectors.session_readable(user=user, session_id=session_id)
    if session.user_id == user.pk:
        raise NotAnOperator()
    ratelimit.check_send_rate(user_id=user.pk)
    return prompting.suggestion_context(session=session, operator_name=user.shown_name)


async def _draft(session: str, context: prompting.ReplyContext):
    """Stream a draft as ``token`` events (``message`` null), then ``done`` with its HTML
    (or ``error``). Nothing is stored: the operator edits it and sends it themselves."""
    parts: list[str] = []
    offset = 0
    try:
        stream = llm.stream_chat(messages=context.messages, model=context.model, tools=None)
        async for event in stream:
            if event.text:
                parts.append(event.text)
                body = {"type": "token", "session": session, "message": None}
                body.update(content=event.text, offset=offset, draft=True)
                offset += len(event.text)
                yield b"data: " + events.encode(body) + b"\n\n"
    except llm.LLMError as exc:
        body = events.error(session, None, exc.reason, "upstream_error").body
        yield b"data: " + events.encode({**body, "draft": True}) + b"\n\n"
        return
    text = "".join(parts)
    body = {"type": "done", "session": session, "message": None, "draft": True}
    body.update(html=render_markdown(text), content=text, status="complete", usage=None)
    yield b"data: " + events.encode(body) + b"\n\n"


@csrf_exempt  # checked in _caller for session auth; bearer tokens need none
async def suggest_view(request, session_id):
    """``POST /api/sessions/<id>/suggest/``: a draft reply for the operator, as SSE."""
    if request.method != "POST":
        error = DomainError("Use POST.")
        error.status, error.code = 405, "method_not_allowed"
        return _error(error)
    try:
        context = await streaming.db.run(_suggestion_for, request, session_id)
    except DomainError as exc:
        return _error(exc)
    draft = _draft(str(session_id), context)
    response = StreamingHttpResponse(draft, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
