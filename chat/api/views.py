"""REST endpoints for tokens and conversations (SPEC 4.1).

Views only parse input and call chat.services / chat.selectors / chat.exports; every
error becomes ``{"error": {...}}`` (core.api) through chat.api.errors.
"""

import json

from django.contrib.auth import authenticate
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.tokens import token_issue
from chat import chatgpt, exports, selectors, services, streaming
from chat.exceptions import ConversationNotFound
from core.api import errors, parse

from . import serializers as s
from .authentication import BearerTokenAuthentication
from .pagination import keyset_page, next_url, offset_from_cursor
from .parsers import UploadParser
from .throttles import TokenIssueThrottle

SESSION_ID = OpenApiParameter(
    "session_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Conversation id."
)
# What a send, an edit or a regeneration may be refused with besides the usual.
SEND_REFUSALS = {
    400: "Invalid input (invalid, empty_message, message_too_long, read_only, …); nothing "
    "is stored.",
    429: "Sending too fast (rate_limited), or your daily token quota is used up "
    "(quota_exceeded: the message says when it resets, the next UTC midnight); "
    "Retry-After says when to try again. Nothing is stored.",
}


class TokenView(APIView):
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [AllowAny]
    throttle_classes = [TokenIssueThrottle]

    @extend_schema(
        operation_id="auth_token_create",
        request=s.TokenRequestSerializer,
        responses={200: s.TokenSerializer, **errors(400, 429)},
        auth=[],
        summary="Issue a bearer token",
        description="Rate limited per username (THROTTLE_TOKENS). Bad credentials: 401.",
    )
    def post(self, request):
        data = parse(s.TokenRequestSerializer, request.data)
        user = authenticate(request, username=data["username"], password=data["password"])
        if user is None:
            raise AuthenticationFailed("The username or password is not correct.")
        raw, token = token_issue(user=user)
        return Response({"token": raw, "expires_at": token.expires_at})


class SessionListView(APIView):
    @extend_schema(
        operation_id="sessions_list",
        parameters=[s.SessionListQuerySerializer],
        responses={200: s.SessionPageSerializer, **errors(400, 404)},
        summary="List conversations",
        description=(
            "Pinned first, then most recent activity; `next` is the URL of the next page "
            "(opaque keyset cursor) or null. With `q`, conversations whose title or "
            "messages match, best match first, each with a `snippet`. `tag` keeps the "
            "conversations carrying that tag; every filter combines with the others and "
            "with `q`. Filtering by a model or run that is not yours answers 404."
        ),
    )
    def get(self, request):
        query = parse(s.SessionListQuerySerializer, request.query_params)
        if query.get("model") or query.get("run"):
            # Someone else's model or run is "not found", like everywhere else.
            selectors.context_resolve(
                user=request.user, model_id=query.get("model"), run_id=query.get("run")
            )
        archived = s.ARCHIVED_FILTER[query["archived"]]
        filters = {
            "user": request.user,
            "context": query.get("context"),
            "model_id": query.get("model"),
            "run_id": query.get("run"),
            "archived": archived,
            "tag": query.get("tag"),
        }
        limit = query["limit"]
        if query.get("q") is not None:
            offset = offset_from_cursor(query.get("cursor"))
            rows, has_more = selectors.session_search(
                query=query["q"], offset=offset, limit=limit, **filters
            )
            following = {"o": offset + limit} if has_more else None
        else:
            rows, following = keyset_page(
                selectors.session_list(**filters, with_tags=True),
                cursor=query.get("cursor"),
                limit=limit,
            )
        results = s.SessionListItemSerializer(rows, many=True).data
        return Response({"results": results, "next": next_url(request, following)})

    @extend_schema(
        operation_id="sessions_create",
        request=s.SessionCreateSerializer,
        responses={
            201: s.SessionDetailSerializer,
            200: OpenApiResponse(s.SessionDetailSerializer, description="Same id again."),
            **errors(400, 404),
        },
        summary="Start a new conversation",
        description=(
            "Creates the new active conversation of its context (general, a model, or a "
            "run); the previous active one becomes inactive. With a client-chosen `id` "
            "the call is idempotent: the same id again answers 200 with the same session. "
            "`temporary: true` makes a temporary conversation instead: never active (the "
            "context's active one stays so), never listed, searched or in bulk exports, "
            "and deleted with its messages TEMPORARY_CHAT_TTL after its last message. "
            "`llm` (one of `GET /api/llms/`) chooses the LLM that answers; without it a "
            "model's conversation follows its model's LLM and a general one takes your "
            "`default_llm`. An unlisted LLM: 400 `unknown_llm`, nothing created."
        ),
    )
    def post(self, request):
        data = parse(s.SessionCreateSerializer, request.data)
        session, created = services.conversation_start(
            user=request.user,
            model_id=data.get("model"),
            run_id=data.get("run"),
            session_id=data.get("id"),
            title=data.get("title", ""),
            temporary=data["temporary"],
            llm=data.get("llm"),
        )
        session = selectors.session_get(user=request.user, session_id=session.pk)
        return Response(
            s.SessionDetailSerializer(session).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class SessionActiveView(APIView):
    @extend_schema(
        operation_id="sessions_active",
        parameters=[s.ActiveQuerySerializer],
        responses={200: s.SessionDetailSerializer, **errors(400, 404)},
        summary="The active conversation of a context",
        description="No model and run: the general context. 404 when it has none.",
    )
    def get(self, request):
        query = parse(s.ActiveQuerySerializer, request.query_params)
        model, run = selectors.context_resolve(
            user=request.user, model_id=query.get("model"), run_id=query.get("run")
        )
        session = selectors.session_active(
            user=request.user,
            model_id=model.pk if model else None,
            run_id=run.pk if run else None,
        )
        if session is None:
            raise ConversationNotFound("This context has no active conversation.")
        return Response(s.SessionDetailSerializer(session).data)


class SessionDetailView(APIView):
    @extend_schema(
        operation_id="sessions_retrieve",
        parameters=[SESSION_ID],
        responses={200: s.SessionDetailSerializer, **errors(400, 404)},
        summary="A conversation, with its summary",
    )
    def get(self, request, session_id):
        session = selectors.session_get(user=request.user, session_id=session_id)
        return Response(s.SessionDetailSerializer(session).data)

    @extend_schema(
        operation_id="sessions_update",
        parameters=[SESSION_ID],
        request=s.SessionUpdateSerializer,
        responses={200: s.SessionDetailSerializer, **errors(400, 404)},
        summary="Rename, pin, archive, tag, file in a folder or choose the LLM",
        description=(
            "Archiving also makes the conversation inactive. `tags` replaces the "
            "conversation's tags whole. `folder` (one of your folders, or null) is for a "
            "general conversation that is not temporary (else 400); a folder that is not "
            "yours: 404. `llm` (one of `GET /api/llms/`; empty: back to the default) "
            "answers the next replies; an unlisted one is 400 `unknown_llm`. Any invalid "
            "field: 400 `invalid` and nothing changes."
        ),
    )
    def patch(self, request, session_id):
        data = parse(s.SessionUpdateSerializer, request.data)
        session = services.conversation_update(user=request.user, session_id=session_id, **data)
        return Response(s.SessionDetailSerializer(session).data)

    @extend_schema(
        operation_id="sessions_destroy",
        parameters=[SESSION_ID],
        responses={204: None, **errors(400, 404)},
        summary="Delete a conversation and its messages",
    )
    def delete(self, request, session_id):
        services.conversation_delete(user=request.user, session_id=session_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TagListView(APIView):
    @extend_schema(
        operation_id="tags_list",
        parameters=[s.TagListQuerySerializer],
        responses={200: s.TagListSerializer, **errors(400)},
        summary="Your tags, with how many conversations carry each",
        description=(
            "Every tag on your conversations, by name, each with its `count`: the number "
            "of conversations `GET /api/sessions/?tag=<name>` lists with the same "
            "`archived` (archived ones are left out by default). Not paginated."
        ),
    )
    def get(self, request):
        query = parse(s.TagListQuerySerializer, request.query_params)
        archived = s.ARCHIVED_FILTER[query["archived"]]
        return Response({"results": selectors.tag_counts(user=request.user, archived=archived)})


class SessionResumeView(APIView):
    @extend_schema(
        operation_id="sessions_resume",
        parameters=[SESSION_ID],
        request=None,
        responses={200: s.SessionDetailSerializer, **errors(400, 404)},
        summary="Make a conversation the active one of its context",
        description="Does not change updated_at or last_message_at. Unarchives.",
    )
    def post(self, request, session_id):
        session = services.conversation_resume(user=request.user, session_id=session_id)
        return Response(s.SessionDetailSerializer(session).data)


class SessionDeleteAllView(APIView):
    @extend_schema(
        operation_id="sessions_delete_all",
        request=s.DeleteAllSerializer,
        responses={200: s.DeletedSerializer, **errors(400)},
        summary="Delete every conversation",
        description=f'Needs {{"confirm": "{s.DELETE_ALL_CONFIRMATION}"}}; anything else is 400.',
    )
    def post(self, request):
        parse(s.DeleteAllSerializer, request.data)
        return Response({"deleted": services.conversation_delete_all(user=request.user)})


class MessageListView(APIView):
    @extend_schema(
        operation_id="messages_list",
        parameters=[SESSION_ID, s.MessagePageQuerySerializer],
        responses={200: s.MessagePageSerializer, **errors(400, 404)},
        summary="A page of messages, oldest to newest",
        description=(
            "The newest `limit` messages before message `before` (keyset). `has_more` "
            "tells whether older ones exist; pass the first result's id as `before`."
        ),
    )
    def get(self, request, session_id):
        session = selectors.session_readable(user=request.user, session_id=session_id)
        query = parse(s.MessagePageQuerySerializer, request.query_params)
        rows, has_more = selectors.message_page(
            session=session, before_id=query.get("before"), limit=query["limit"]
        )
        return Response(
            {"results": messages_data(rows, request, owner=session.user), "has_more": has_more}
        )

    @extend_schema(
        operation_id="messages_create",
        parameters=[SESSION_ID],
        request=s.MessageCreateSerializer,
        responses={
            202: OpenApiResponse(
                s.ReplySerializer,
                description="Stored; the reply streams over WebSocket/SSE.",
            ),
            200: OpenApiResponse(
                s.ReplySerializer,
                description="This client_id was sent before: the same stored messages.",
            ),
            **errors(400, 404, 409, 429, descriptions=SEND_REFUSALS),
        },
        summary="Send a message",
        description=(
            "Stores the message and a `streaming` assistant placeholder, then starts the "
            "reply. Sending into an inactive conversation makes it active. Rate limited "
            "per user (THROTTLE_MESSAGES). While an operator is in the conversation the "
            "owner's message gets no reply (`assistant_message` null); an operator who "
            "joined it writes in person (author kind `operator`, no reply)."
        ),
    )
    def post(self, request, session_id):
        session = selectors.session_readable(user=request.user, session_id=session_id)
        data = parse(s.MessageCreateSerializer, request.data)
        reply = streaming.send_sync(
            user=request.user,
            content=data["content"],
            session_id=session.pk,
            client_id=data.get("client_id"),
        )
        return reply_response(reply, request)


def messages_data(messages, request, *, owner=None) -> list[dict]:
    """Return API objects of one conversation's ``messages`` (with versions and ratings);
    ``owner``: the conversation's (default: the caller)."""
    messages = [m for m in messages if m is not None]
    selectors.message_details(messages, user=request.user)
    context = {"owner_name": (owner or request.user).shown_name}
    return s.MessageSerializer(messages, many=True, context=context).data


def reply_response(reply, request, *, question: bool = True) -> Response:
    """Answer a send, an edit or a regeneration: 202 with the stored messages (200 when
    this ``client_id`` was sent before)."""
    owner = reply.session.user if reply.session.user_id != request.user.pk else None
    data = messages_data([reply.user_message, reply.assistant_message], request, owner=owner)
    body = {"assistant_message": data[1] if reply.assistant_message else None}
    if question:
        body = {"user_message": data[0], **body}
    return Response(
        body, status=status.HTTP_200_OK if reply.duplicate else status.HTTP_202_ACCEPTED
    )


MESSAGE_ID = OpenApiParameter(
    "message_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Message id."
)


class MessageEditView(APIView):
    @extend_schema(
        operation_id="messages_edit",
        parameters=[MESSAGE_ID],
        request=s.MessageCreateSerializer,
        responses={
            202: OpenApiResponse(
                s.ReplySerializer,
                description=(
                    "A new version of the question (its sibling) and a `streaming` reply "
                    "to it; the current path moves to them, the old branch stays."
                ),
            ),
            200: OpenApiResponse(
                s.ReplySerializer,
                description="This client_id was sent before: the same stored messages.",
            ),
            **errors(400, 404, 409, 429, descriptions=SEND_REFUSALS),
        },
        summary="Edit a question",
        description=(
            "On a user message: stores the edited text as a new version of it and starts "
            "its reply, which streams like a send's. 409 `generation_in_progress` while a "
            "reply is being written in the conversation."
        ),
    )
    def post(self, request, message_id):
        data = parse(s.MessageCreateSerializer, request.data)
        reply = streaming.send_sync(
            user=request.user,
            edit=message_id,
            content=data["content"],
            client_id=data.get("client_id"),
        )
        return reply_response(reply, request)


class MessageRegenerateView(APIView):
    @extend_schema(
        operation_id="messages_regenerate",
        parameters=[MESSAGE_ID],
        request=None,
        responses={
            202: OpenApiResponse(
                s.RegenerateSerializer,
                description=(
                    "A new `streaming` version of the reply; the current path moves to it, "
                    "the old reply stays."
                ),
            ),
            **errors(400, 404, 409, 429, descriptions=SEND_REFUSALS),
        },
        summary="Regenerate a reply",
        description=(
            "On an assistant message: asks the LLM again for a reply to the same "
            "question; it streams like a send's. 409 `generation_in_progress` while a "
            "reply is being written in the conversation."
        ),
    )
    def post(self, request, message_id):
        reply = streaming.send_sync(user=request.user, regenerate=message_id)
        return reply_response(reply, request, question=False)


class SessionBranchView(APIView):
    @extend_schema(
        operation_id="sessions_branch",
        parameters=[SESSION_ID],
        request=s.BranchSerializer,
        responses={200: s.MessagePageSerializer, **errors(400, 404, 409)},
        summary="Switch to another version",
        description=(
            "Moves the current path through `message` to its newest leaf and returns the "
            "path's newest messages (as the messages endpoint does). 409 "
            "`generation_in_progress` while a reply is being written."
        ),
    )
    def post(self, request, session_id):
        data = parse(s.BranchSerializer, request.data)
        session = services.conversation_branch(
            user=request.user, session_id=session_id, message_id=data["message"]
        )
        rows, has_more = selectors.message_page(session=session)
        return Response({"results": messages_data(rows, request), "has_more": has_more})


class MessageFeedbackView(APIView):
    @extend_schema(
        operation_id="messages_feedback",
        parameters=[MESSAGE_ID],
        request=s.FeedbackSerializer,
        responses={200: s.FeedbackResultSerializer, **errors(400, 404)},
        summary="Rate a reply",
        description="Thumbs up or down on an assistant reply, with an optional note; "
        "`null` clears the caller's rating.",
    )
    def put(self, request, message_id):
        data = parse(s.FeedbackSerializer, request.data)
        feedback = services.feedback_set(
            user=request.user,
            message_id=message_id,
            rating=data["rating"],
            note=data.get("note") or "",
        )
        return Response(
            {"rating": feedback.rating, "note": feedback.note}
            if feedback
            else {"rating": None, "note": ""}
        )


class SessionStopView(APIView):
    @extend_schema(
        operation_id="sessions_stop",
        parameters=[SESSION_ID],
        request=None,
        responses={200: s.StopSerializer, **errors(400, 404)},
        summary="Stop the reply being written",
        description="The partial reply is kept with status `stopped`.",
    )
    def post(self, request, session_id):
        stopped = streaming.stop_sync(user=request.user, session_id=session_id)
        return Response({"stopped": bool(stopped)})


class SessionExportView(APIView):
    @extend_schema(
        operation_id="sessions_export",
        parameters=[SESSION_ID, s.ExportQuerySerializer],
        responses={
            (200, "text/markdown"): OpenApiResponse(OpenApiTypes.STR, description="Markdown"),
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT, description="JSON export, importable"
            ),
            **errors(400, 404),
        },
        summary="Download a conversation",
        description="Content-Disposition: attachment; filename=parlor-<title>-<date>.md|json",
    )
    def get(self, request, session_id):
        session = selectors.session_get(user=request.user, session_id=session_id)
        fmt = parse(s.ExportQuerySerializer, request.query_params)["format"]
        if fmt == "json":
            body = json.dumps(exports.export_json(session=session), ensure_ascii=False, indent=2)
            content_type = "application/json"
        else:
            body = exports.export_markdown(session=session)
            content_type = "text/markdown; charset=utf-8"
        response = HttpResponse(body, content_type=content_type)
        filename = exports.export_filename(session=session, fmt=fmt)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class SessionImportView(APIView):
    @extend_schema(
        operation_id="sessions_import",
        request=OpenApiTypes.OBJECT,
        responses={201: s.SessionDetailSerializer, **errors(400, 413)},
        summary="Import a JSON export as a new conversation",
        description=(
            "The body is a file from `export/?format=json`. It becomes a new, inactive "
            "general conversation. A malformed file is refused whole (400) and changes "
            "nothing."
        ),
    )
    def post(self, request):
        conversation, messages = exports.check_import(request.data)
        session = services.conversation_import(user=request.user, messages=messages, **conversation)
        session = selectors.session_get(user=request.user, session_id=session.pk)
        return Response(s.SessionDetailSerializer(session).data, status=status.HTTP_201_CREATED)


class ChatGPTImportView(APIView):
    parser_classes = [UploadParser]

    @extend_schema(
        operation_id="import_chatgpt",
        request={"multipart/form-data": s.ChatGPTImportSerializer},
        responses={
            200: s.ChatGPTImportResultSerializer,
            **errors(
                400,
                413,
                descriptions={
                    400: "Not a ChatGPT export (code invalid), or no file sent; nothing "
                    "was imported.",
                    413: f"The file is larger than {chatgpt.EXPORT_MAX_BYTES // 2**20} MB.",
                },
            ),
        },
        summary="Import a ChatGPT data export",
        description=(
            "The multipart field `file` is `conversations.json` of a ChatGPT data export, or "
            "the export's zip. Each conversation becomes an inactive general conversation, "
            "its branches (edited questions, regenerated replies) kept as versions and its "
            "current path following ChatGPT's `current_node`; system, tool and hidden "
            "messages are left out; titles and times are kept. A conversation imported "
            "before (same ChatGPT id, same user) is skipped. A conversation that cannot be "
            "read is named in `errors` and the others are imported. A file that is not a "
            "ChatGPT export is refused whole (400 `invalid`) and imports nothing."
        ),
    )
    def post(self, request):
        upload = parse(s.ChatGPTImportSerializer, request.data)["file"]
        chatgpt.check_upload(upload)
        result = services.import_chatgpt(user=request.user, file=upload)
        return Response(s.ChatGPTImportResultSerializer(result).data)


class SessionShareView(APIView):
    @extend_schema(
        operation_id="sessions_share",
        parameters=[SESSION_ID],
        request=None,
        responses={201: s.ShareCreatedSerializer, **errors(400, 404)},
        summary="Share a read-only snapshot",
        description=(
            "Takes a snapshot of the conversation as it is now (the current path's questions "
            "and replies) and answers the public page's `url` (`/s/<token>`: no sign-in, "
            "read-only, `noindex`). The token is in this answer only: the server keeps its "
            "hash. Sharing again takes a new snapshot under a new token, and the previous "
            "link stops working. A temporary conversation cannot be shared (400)."
        ),
    )
    def post(self, request, session_id):
        token, link = services.share_create(user=request.user, session_id=session_id)
        body = {"url": share_url(request, token), "token": token, "created_at": link.created_at}
        return Response(s.ShareCreatedSerializer(body).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="sessions_unshare",
        parameters=[SESSION_ID],
        request=None,
        responses={204: None, **errors(400, 404)},
        summary="Revoke the share link",
        description="Its page answers 404 from then on. A conversation not shared: 404.",
    )
    def delete(self, request, session_id):
        services.share_revoke(user=request.user, session_id=session_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


def share_url(request, token: str) -> str:
    """Return the absolute address of the public page of a share link."""
    return request.build_absolute_uri(reverse("chat:share_page", args=[token]))


class ShareListView(APIView):
    @extend_schema(
        operation_id="shares_list",
        responses={200: s.ShareListSerializer, **errors()},
        summary="Your share links",
        description=(
            "Newest first: each link's conversation, its title when shared and when. Never "
            "the links themselves: the server keeps only their hashes (share again for a "
            "new one). Not paginated."
        ),
    )
    def get(self, request):
        links = selectors.share_list(user=request.user)
        return Response({"results": s.ShareSerializer(links, many=True).data})


FOLDER_ID = OpenApiParameter(
    "folder_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The folder's id."
)


class FolderListView(APIView):
    @extend_schema(
        operation_id="folders_list",
        responses={200: s.FolderListSerializer, **errors()},
        summary="Your folders",
        description="By name. Not paginated.",
    )
    def get(self, request):
        folders = selectors.folder_list(user=request.user)
        return Response({"results": s.FolderSerializer(folders, many=True).data})

    @extend_schema(
        operation_id="folders_create",
        request=s.FolderWriteSerializer,
        responses={201: s.FolderSerializer, **errors(400)},
        summary="Create a folder",
        description=(
            "For general conversations (PATCH a conversation's `folder`). The name is one "
            f"line of 1 to {services.FOLDER_NAME_MAX_CHARS} characters, whitespace "
            f"collapsed; at most {services.FOLDERS_MAX} folders."
        ),
    )
    def post(self, request):
        name = parse(s.FolderWriteSerializer, request.data)["name"]
        folder = services.folder_create(user=request.user, name=name)
        return Response(s.FolderSerializer(folder).data, status=status.HTTP_201_CREATED)


class FolderDetailView(APIView):
    @extend_schema(
        operation_id="folders_update",
        parameters=[FOLDER_ID],
        request=s.FolderWriteSerializer,
        responses={200: s.FolderSerializer, **errors(400, 404)},
        summary="Rename a folder",
    )
    def patch(self, request, folder_id):
        name = parse(s.FolderWriteSerializer, request.data)["name"]
        folder = services.folder_rename(user=request.user, folder_id=folder_id, name=name)
        return Response(s.FolderSerializer(folder).data)

    @extend_schema(
        operation_id="folders_destroy",
        parameters=[FOLDER_ID],
        request=None,
        responses={204: None, **errors(400, 404)},
        summary="Delete a folder",
        description="Its conversations are kept, in no folder (`folder` null).",
    )
    def delete(self, request, folder_id):
        services.folder_delete(user=request.user, folder_id=folder_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
