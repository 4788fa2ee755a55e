"""``POST /api/chat/stream`` in the OpenAPI schema (SPEC 4.1, 4.2).

The stream is a plain async Django view (chat/views_stream.py), served outside DRF, so
drf-spectacular cannot see it. ``ChatStreamDocsView`` stands in for it: a DRF view that
is never routed, whose ``@extend_schema`` says what the real view takes and answers, and
``add_chat_stream`` (a PREPROCESSING_HOOK, SPECTACULAR_SETTINGS) adds it to the endpoints
the schema is made of, at the real view's path. What it documents is checked against the
real view's events and errors in tests/api/test_schema_stream.py.
"""

from django.conf import settings
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.views import APIView

from chat.services import CLIENT_ID_MAX_CHARS
from core.api import errors

from .serializers import AuthorSerializer

PATH = "/api/chat/stream"


def _literal(*values: str, help_text: str = "") -> serializers.CharField:
    """Return a string field documented as one of ``values`` (inline, no enum component).

    A class per field: a serializer copies its fields anew, which loses what is set on
    an instance.
    """
    literal = type("LiteralField", (serializers.CharField,), {})
    schema = {"type": "string", "enum": list(values)}
    return extend_schema_field(schema)(literal)(help_text=help_text)


class ChatStreamSerializer(serializers.Serializer):
    message = serializers.CharField(
        max_length=settings.MAX_MESSAGE_CHARS,
        trim_whitespace=False,
        help_text="The user's message: not blank, at most MAX_MESSAGE_CHARS characters.",
    )
    session = serializers.UUIDField(
        required=False,
        allow_null=True,
        help_text=(
            "The conversation to send into (made active if it is not). An id that does not "
            "exist yet starts a new conversation with that id (a new chat's first message). "
            "Absent: the active conversation of the context given by model and run, "
            "created if there is none."
        ),
    )
    model = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="One of your models: the conversation is about it.",
    )
    run = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="One of your runs (of `model`, if given): the conversation is about it.",
    )
    client_id = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=CLIENT_ID_MAX_CHARS,
        help_text=(
            "Idempotency key: the same client_id again in the conversation answers with the "
            "stored messages (`duplicate`) instead of sending twice."
        ),
    )
    temporary = serializers.BooleanField(
        required=False,
        default=False,
        help_text=(
            "When this message creates the conversation: make it a temporary one (never "
            "listed or active, deleted TEMPORARY_CHAT_TTL after its last message). Without "
            "`session`, a new temporary conversation. Ignored in an existing conversation."
        ),
    )
    llm = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text=(
            "One of `GET /api/llms/`: the LLM that writes this reply, kept as the "
            "conversation's LLM (as `PATCH /api/sessions/<id>/` would). Absent, null or "
            "empty: the conversation's. An unlisted one is 400 `unknown_llm`."
        ),
    )


class ChatStreamEditSerializer(serializers.Serializer):
    edit = serializers.IntegerField(
        min_value=1,
        help_text=(
            "One of your messages: `message` becomes a new version of it (its sibling), "
            "answered by a new reply; the current path moves to them."
        ),
    )
    message = serializers.CharField(
        max_length=settings.MAX_MESSAGE_CHARS,
        trim_whitespace=False,
        help_text="The question's new text: not blank, at most MAX_MESSAGE_CHARS characters.",
    )
    client_id = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=CLIENT_ID_MAX_CHARS,
        help_text="Idempotency key, as a send's.",
    )


class ChatStreamRegenerateSerializer(serializers.Serializer):
    regenerate = serializers.IntegerField(
        min_value=1,
        help_text=(
            "One of the assistant's replies: a new version of it (its sibling) is written "
            "for the same question; the current path moves to it."
        ),
    )


ChatStreamRequest = PolymorphicProxySerializer(
    component_name="ChatStreamBody",
    serializers=[ChatStreamSerializer, ChatStreamEditSerializer, ChatStreamRegenerateSerializer],
    resource_type_field_name=None,
)

SESSION = "The conversation's id."
MESSAGE = "The assistant message's id."


class SessionEventSerializer(serializers.Serializer):
    type = _literal("session")
    session = serializers.UUIDField(help_text=SESSION)
    title = serializers.CharField(help_text="The conversation's title so far (may be empty).")
    created = serializers.BooleanField(help_text="Whether this message created the conversation.")
    message = serializers.IntegerField(
        allow_null=True,
        help_text=MESSAGE + " The reply streams under it; null for a duplicate without a reply.",
    )
    user_message = serializers.IntegerField(help_text="The stored user message's id.")
    duplicate = serializers.BooleanField(
        help_text="The client_id was seen before: these are the stored messages."
    )


class StatusEventSerializer(serializers.Serializer):
    type = _literal("status")
    session = serializers.UUIDField(help_text=SESSION)
    message = serializers.IntegerField(help_text=MESSAGE)
    content = serializers.CharField(help_text="What the assistant is doing, e.g. a tool call.")


class TokenEventSerializer(serializers.Serializer):
    type = _literal("token")
    session = serializers.UUIDField(help_text=SESSION)
    message = serializers.IntegerField(help_text=MESSAGE)
    content = serializers.CharField(help_text="Text of the reply; may carry several tokens.")
    offset = serializers.IntegerField(
        min_value=0,
        help_text=(
            "Where `content` starts in the reply. Appending is right when it equals the "
            "length received so far; a smaller one replays the reply from there."
        ),
    )


class TitleEventSerializer(serializers.Serializer):
    type = _literal("title")
    session = serializers.UUIDField(help_text=SESSION)
    title = serializers.CharField(help_text="The conversation's new title.")


class UsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField(min_value=0)
    completion_tokens = serializers.IntegerField(min_value=0)


class DoneEventSerializer(serializers.Serializer):
    type = _literal("done")
    session = serializers.UUIDField(help_text=SESSION)
    message = serializers.IntegerField(help_text=MESSAGE)
    html = serializers.CharField(help_text="The whole reply as sanitized HTML (its Markdown).")
    usage = UsageSerializer(
        allow_null=True, help_text="Tokens the reply used; null when replayed from storage."
    )
    status = _literal("complete", "stopped", help_text="stopped: the reply was stopped.")
    length = serializers.IntegerField(min_value=0, help_text="The reply's length in characters.")


class ErrorEventSerializer(serializers.Serializer):
    type = _literal("error")
    session = serializers.UUIDField(required=False, help_text=SESSION)
    message = serializers.IntegerField(
        required=False, help_text=MESSAGE + " Absent when no reply was started."
    )
    error = serializers.CharField(help_text="A sentence for people: why the reply ended.")
    code = serializers.CharField(
        help_text=(
            "Stable code, the same as the REST error's for the same condition, e.g. "
            "`error` (the LLM failed), `interrupted`, `not_found` (the conversation was "
            "deleted)."
        )
    )


class ParticipantEventSerializer(serializers.Serializer):
    type = _literal("participant")
    session = serializers.UUIDField(help_text=SESSION)
    action = _literal(
        "requested",
        "joined",
        "left",
        help_text="The owner asked for a person, or an operator joined or left (SPEC 4.6).",
    )
    name = serializers.CharField(help_text="The person's display name, else username.")


class PersonMessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    session = serializers.UUIDField()
    role = _literal("user", "operator")
    content = serializers.CharField()
    html = serializers.CharField(help_text="The message as sanitized HTML (its Markdown).")
    status = serializers.CharField()
    parent = serializers.IntegerField(allow_null=True)
    author = AuthorSerializer()
    client_id = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()


class MessageEventSerializer(serializers.Serializer):
    type = _literal("message")
    session = serializers.UUIDField(help_text=SESSION)
    message = PersonMessageSerializer(
        help_text="A message a person wrote: an operator, or the owner while one is in."
    )


EVENTS = {
    "session": SessionEventSerializer,
    "status": StatusEventSerializer,
    "token": TokenEventSerializer,
    "title": TitleEventSerializer,
    "done": DoneEventSerializer,
    "error": ErrorEventSerializer,
    "participant": ParticipantEventSerializer,
    "message": MessageEventSerializer,
}

ChatStreamEvent = PolymorphicProxySerializer(
    component_name="ChatStreamEvent",
    serializers=EVENTS,
    resource_type_field_name="type",
)

EXAMPLE_STREAM = (
    'data: {"type":"session","session":"5f0c2b7e-6a1d-4c3e-9b1a-2d4e6f8a0b1c",'
    '"title":"Summarize this run.","created":true,"message":42,"user_message":41,'
    '"duplicate":false}\n\n'
    'data: {"type":"status","session":"5f0c2b7e-6a1d-4c3e-9b1a-2d4e6f8a0b1c",'
    '"message":42,"content":"Looking up the run summary…"}\n\n'
    'data: {"type":"token","session":"5f0c2b7e-6a1d-4c3e-9b1a-2d4e6f8a0b1c",'
    '"message":42,"content":"The run made **+$247.00**","offset":0}\n\n'
    'data: {"type":"done","session":"5f0c2b7e-6a1d-4c3e-9b1a-2d4e6f8a0b1c",'
    '"message":42,"html":"<p>The run made <strong>+$247.00</strong></p>",'
    '"usage":{"prompt_tokens":310,"completion_tokens":9},"status":"complete","length":25}\n\n'
    'data: {"type":"title","session":"5f0c2b7e-6a1d-4c3e-9b1a-2d4e6f8a0b1c",'
    '"title":"Run summary"}\n\n'
)

DESCRIPTION = """\
Store the message and stream the assistant's reply as
[Server-Sent Events](https://html.spec.whatwg.org/multipage/server-sent-events.html)
(`text/event-stream`).

**Authentication**: `Authorization: Bearer <token>` (from `POST /api/auth/token/`), or
the browser's session cookie with its CSRF token in the `X-CSRFToken` header.

**The stream**: each event is one line `data: <JSON object>` followed by a blank line;
the object is one of the `ChatStreamEvent` schemas, told apart by `type` (the same events
as the WebSocket `/ws/chat/`, SPEC 4.2):

The body is a send (`message`, with `session` or `model`/`run`), an edit (`edit`: the id of
one of your messages, and its new text as `message`) or a regeneration (`regenerate`: the
id of an assistant reply); all three answer with the same events.

- `session`: first, where the reply will stream (the conversation, the message ids);
- `status`: what the assistant is doing, e.g. looking up the run's trades;
- `token`: text of the reply (several tokens may come in one event);
- `title`: the conversation's title, when it is generated (may come after `done`);
- `done`: the reply is complete or stopped, with its sanitized HTML and token usage;
- `error`: the reply failed (the LLM failed, or it was interrupted), with a readable reason.

The response ends after the reply's `done` or `error` event; the stream of a
conversation's first message waits for its `title` too, at most 5 s after the reply
ends (TITLE_WAIT). Lines starting with `:`
(`: ping`) are comments sent after 15 s of silence; ignore them. The reply is not tied
to this response: if the client goes away the reply goes on and is stored; the WebSocket's
`subscribe` picks it up again.

**Errors** before the stream starts are ordinary JSON responses in the API's error shape
(`{"error": {"code", "message", "fields"?}}`), listed below; once the stream has started,
a failure is an `error` event.
"""


class _BodyRequired(AutoSchema):
    """drf-spectacular marks a body required by its serializer's required fields, which
    a oneOf (send, edit or regenerate) has none of at its top: this one always is."""

    def _get_request_body(self, direction="request"):
        body = super()._get_request_body(direction)
        if body:
            body["required"] = True
        return body


class ChatStreamDocsView(APIView):
    """The schema of ``POST /api/chat/stream``; never routed (config/urls.py routes the
    path to chat.views_stream.stream_view)."""

    schema = _BodyRequired()

    @extend_schema(
        operation_id="chat_stream",
        tags=["chat"],
        summary="Send a message and stream the reply (SSE)",
        description=DESCRIPTION,
        request=ChatStreamRequest,
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                ChatStreamEvent,
                description=("A stream of `data: <event>` lines, each event one of these objects."),
                examples=[
                    OpenApiExample(
                        "A reply",
                        value=EXAMPLE_STREAM,
                        media_type="text/event-stream",
                        response_only=True,
                    )
                ],
            ),
            **errors(
                400,
                404,
                409,
                429,
                501,
                503,
                descriptions={
                    400: (
                        "Invalid input: malformed JSON (invalid_json), unknown fields or wrong "
                        "types (invalid), an empty message (empty_message), a message over "
                        "MAX_MESSAGE_CHARS (message_too_long), a run of another model or a "
                        "conversation of another context (invalid_context), a conversation "
                        "whose model or run was deleted (read_only), an LLM not offered here "
                        "(unknown_llm)."
                    ),
                    401: "No credentials (not_authenticated), or an invalid or expired token.",
                    403: "Session authentication without a valid CSRF token (csrf_failed).",
                    404: "The conversation, model or run is unknown or another user's.",
                    409: (
                        "A reply is still being written in this conversation "
                        "(generation_in_progress)."
                    ),
                    429: (
                        "Sending too fast (rate_limited), or the daily token quota is used "
                        "up (quota_exceeded, until the next UTC midnight); Retry-After says "
                        "when to try again. Nothing was stored."
                    ),
                    501: (
                        "Served through WSGI, where a response cannot stream "
                        "(not_implemented): serve Parlor with an ASGI server."
                    ),
                    503: (
                        "This server process is shutting down (draining): nothing was "
                        "stored; send again (a load balancer retries another process)."
                    ),
                },
            ),
        },
    )
    def post(self, request):
        raise NotImplementedError("Documentation only: chat.views_stream.stream_view serves this.")


SUGGEST_PATH = "/api/sessions/{session_id}/suggest/"

SUGGEST_DESCRIPTION = """\
Operators in the conversation (SPEC 4.6): the assistant drafts the next reply from the
conversation, streamed as Server-Sent Events to the caller only. Nothing is stored or shown
to the owner: the operator edits the draft and sends it with the messages endpoint.

Events: `token` (`message` null, `draft` true, `content`, `offset`), then `done` (`message`
null, `draft` true, the whole draft as `content` and as sanitized `html`), or `error`
(`code` `upstream_error`) if the LLM failed. Counts against the caller's send rate.
"""


class SuggestDocsView(APIView):
    """The schema of ``POST /api/sessions/<id>/suggest/``; never routed (config/api_urls.py
    routes the path to chat.views_stream.suggest_view)."""

    @extend_schema(
        operation_id="sessions_suggest",
        tags=["sessions"],
        parameters=[
            OpenApiParameter(
                "session_id",
                OpenApiTypes.UUID,
                OpenApiParameter.PATH,
                description="Conversation id.",
            )
        ],
        summary="Suggest a reply (operators, SSE)",
        description=SUGGEST_DESCRIPTION,
        request=None,
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                description="`data: <event>` lines: `token` events, then `done` or `error`."
            ),
            **errors(
                400,
                401,
                403,
                404,
                429,
                descriptions={
                    403: "The conversation's owner (not_operator): drafts are for operators.",
                    404: "Not an operator in this conversation (not_found).",
                },
            ),
        },
    )
    def post(self, request, session_id):
        raise NotImplementedError("Documentation only: chat.views_stream.suggest_view serves this.")


def add_chat_stream(endpoints: list, **kwargs) -> list:
    """PREPROCESSING_HOOK: add ``POST /api/chat/stream`` and the operators' suggested reply
    (plain async views) to the documented endpoints."""
    return [
        *endpoints,
        (PATH, r"^api/chat/stream$", "POST", ChatStreamDocsView.as_view()),
        (
            SUGGEST_PATH,
            r"^api/sessions/(?P<session_id>[^/.]+)/suggest/$",
            "POST",
            SuggestDocsView.as_view(),
        ),
    ]
