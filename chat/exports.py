"""The export formats of a conversation, Markdown and JSON, and the check of a JSON export.

The JSON format (``"format": "parlor.conversation", "version": 2``: the whole message tree,
each message with its ``id`` and ``parent``, and the conversation's ``current_leaf``;
version 1, a list without ids, is read as one path) is what
``check_import`` reads back for ``services.conversation_import``; the REST API, the admin
and the export_conversations/import_conversations commands share these functions.
"""

import json
from datetime import UTC, datetime

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify

from . import selectors
from .exceptions import DomainError
from .models import ChatSession, Context, Message
from .services import INTERRUPTED, TITLE_MAX_CHARS, check_tags

EXPORT_FORMAT = "parlor.conversation"
EXPORT_VERSION = 2
IMPORT_VERSIONS = (1, 2)
IMPORT_MAX_MESSAGES = 10_000
IMPORT_MAX_CONTENT_CHARS = 500_000
ROLE_LABELS = {
    Message.Role.USER: "You",
    Message.Role.ASSISTANT: "Assistant",
    Message.Role.SYSTEM: "System",
    Message.Role.TOOL: "Tool",
    Message.Role.OPERATOR: "Support",
}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def export_filename(*, session: ChatSession, fmt: str, today=None) -> str:
    """Return ``parlor-<slug of title>-<date>.md`` (or ``.json``)."""
    slug = slugify(session.title)[:60].strip("-") or "conversation"
    day = (today or timezone.now()).date().isoformat()
    return f"parlor-{slug}-{day}.{'md' if fmt == 'markdown' else 'json'}"


def _context(session: ChatSession) -> dict:
    return {
        "kind": session.context,
        "model": (
            {"id": session.model_id, "name": session.model.name} if session.model_id else None
        ),
        "run": session.run_id,
        "detached_label": session.detached_label,
    }


def export_json(*, session: ChatSession) -> dict:
    """Return the conversation and all its messages (the whole tree) as a JSON-ready dict."""
    messages = list(selectors.message_list(session=session))
    path = [m.pk for m in messages if m.on_path]
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": timezone.now().isoformat(),
        "conversation": {
            "id": str(session.pk),
            "title": session.title,
            "context": _context(session),
            "pinned": session.pinned,
            "archived": session.archived,
            "tags": session.tag_names(),
            "summary": session.summary,
            "created_at": _iso(session.created_at),
            "updated_at": _iso(session.updated_at),
            "last_message_at": _iso(session.last_message_at),
            "current_leaf": path[-1] if path else None,
        },
        "messages": [
            {
                "id": m.pk,
                "parent": m.parent_id,
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "error": m.error,
                "llm": m.llm,
                "prompt_tokens": m.prompt_tokens,
                "completion_tokens": m.completion_tokens,
                "tools_used": m.tools_used,
                "author_name": m.author_name,
                "created_at": _iso(m.created_at),
            }
            for m in messages
        ],
    }


def export_markdown(*, session: ChatSession) -> str:
    """Return the conversation's current path as a readable Markdown document."""
    match session.context:
        case Context.RUN:
            context = f"Run #{session.run_id} of {session.model.name}"
        case Context.MODEL:
            context = f"Model: {session.model.name}"
        case Context.DETACHED:
            context = session.detached_label
        case _:
            context = "General"
    lines = [
        f"# {session.title or 'New conversation'}",
        "",
        f"- Context: {context}",
        f"- Created: {session.created_at:%Y-%m-%d %H:%M} UTC",
        f"- Exported: {timezone.now():%Y-%m-%d %H:%M} UTC",
        f"- Messages: {session.message_count}",
    ]
    if tags := session.tag_names():
        lines.append(f"- Tags: {', '.join(tags)}")
    lines.append("")
    if session.summary:
        lines += ["## Summary", "", session.summary, ""]
    lines += ["---", ""]
    for message in selectors.message_list(session=session, path_only=True):
        label = ROLE_LABELS.get(message.role, message.role)
        if message.role == Message.Role.OPERATOR and message.author_name:
            label += f" ({message.author_name})"
        if message.role == Message.Role.ASSISTANT and message.llm:
            label += f" ({message.llm})"
        lines += [f"### {label} — {message.created_at:%Y-%m-%d %H:%M} UTC", ""]
        lines += [message.content or "_(empty)_", ""]
        for tool in message.tools_used or []:
            if isinstance(tool, dict):
                lines.append(f"> Tool used: `{tool.get('name', '?')}`")
        if message.status != Message.Status.COMPLETE:
            reason = f": {message.error}" if message.error else ""
            lines += [f"_({message.status}{reason})_", ""]
    return "\n".join(lines).rstrip() + "\n"


# Import ------------------------------------------------------------------------------

TOP_KEYS = {"format", "version", "exported_at", "conversation", "messages"}
CONVERSATION_KEYS = {
    "id",
    "title",
    "context",
    "pinned",
    "archived",
    "tags",
    "summary",
    "created_at",
    "updated_at",
    "last_message_at",
    "current_leaf",
}
MESSAGE_KEYS = {
    "id",
    "parent",
    "role",
    "content",
    "status",
    "error",
    "llm",
    "prompt_tokens",
    "completion_tokens",
    "tools_used",
    "author_name",
    "created_at",
}


def _fail(message: str, field: str) -> DomainError:
    return DomainError(message, field=field)


def _keys(obj, allowed: set, where: str) -> dict:
    if not isinstance(obj, dict):
        raise _fail(f"{where} must be an object.", where)
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise _fail(f"{where} has unknown field(s): {', '.join(unknown)}.", where)
    return obj


def _text(obj: dict, key: str, where: str, *, limit: int, default: str = "") -> str:
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _fail(f"{where}.{key} must be a string.", f"{where}.{key}")
    if len(value) > limit:
        raise _fail(f"{where}.{key} is longer than {limit:,} characters.", f"{where}.{key}")
    if "\x00" in value:
        raise _fail(f"{where}.{key} contains a NUL character.", f"{where}.{key}")
    return value


def _time(obj: dict, key: str, where: str) -> datetime | None:
    value = obj.get(key)
    if value is None:
        return None
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
        if parsed is not None:
            if timezone.is_naive(parsed):
                parsed = timezone.make_aware(parsed, UTC)
            parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        parsed = None
    if parsed is None or not 1900 <= parsed.year <= 9000:
        raise _fail(
            f"{where}.{key} must be an ISO 8601 date-time between 1900 and 9000.",
            f"{where}.{key}",
        )
    return parsed


def _tokens(obj: dict, key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise _fail(f"{where}.{key} must be a non-negative integer.", f"{where}.{key}")
    return value


def _message_id(obj: dict, key: str, where: str):
    value = obj.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | str)):
        raise _fail(f"{where}.{key} must be a message id.", f"{where}.{key}")
    return value


def _check_message(raw, index: int, seen: set, previous) -> dict:
    """Check one message; ``seen`` holds the keys of those before it, ``previous`` the last.

    A message's key is its ``id`` (its position when it has none); its parent is the
    message its ``parent`` names, which comes before it, or without ``parent`` (version
    1) the message before it.
    """
    where = f"messages.{index}"
    raw = _keys(raw, MESSAGE_KEYS, where)
    key = _message_id(raw, "id", where)
    key = f"#{index}" if key is None else key
    if key in seen:
        raise _fail(f"{where}.id repeats an earlier message's id.", f"{where}.id")
    if "parent" in raw:
        parent = _message_id(raw, "parent", where)
        if parent is not None and parent not in seen:
            raise _fail(f"{where}.parent must be the id of a message before it.", f"{where}.parent")
    else:
        parent = previous
    seen.add(key)
    role = raw.get("role")
    if role not in Message.Role.values:
        raise _fail(f"{where}.role must be one of {', '.join(Message.Role.values)}.", where)
    status = raw.get("status", Message.Status.COMPLETE)
    if status not in Message.Status.values:
        raise _fail(f"{where}.status must be one of {', '.join(Message.Status.values)}.", where)
    error = _text(raw, "error", where, limit=10_000)
    if status == Message.Status.STREAMING:
        # A reply that was still being written when exported ends where the file ends.
        status, error = Message.Status.ERROR, error or INTERRUPTED
    tools = raw.get("tools_used") or []
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise _fail(f"{where}.tools_used must be a list of objects.", f"{where}.tools_used")
    # PostgreSQL's jsonb refuses NUL characters anywhere in a document.
    if "\\u0000" in json.dumps(tools) or len(json.dumps(tools)) > 100_000:
        raise _fail(f"{where}.tools_used is too large or contains NUL.", f"{where}.tools_used")
    return {
        "key": key,
        "parent": parent,
        "role": role,
        "content": _text(raw, "content", where, limit=IMPORT_MAX_CONTENT_CHARS),
        "status": status,
        "error": error,
        "llm": _text(raw, "llm", where, limit=120),
        "prompt_tokens": _tokens(raw, "prompt_tokens", where),
        "completion_tokens": _tokens(raw, "completion_tokens", where),
        "tools_used": tools,
        # An operator's name (SPEC 4.6); the account is not carried over.
        "author_name": _text(raw, "author_name", where, limit=150),
        "created_at": _time(raw, "created_at", where),
    }


def check_import(data) -> tuple[dict, list[dict]]:
    """Return the conversation and messages of a JSON export, or raise a clear error.

    The conversation is the keyword arguments of ``services.conversation_import`` but
    ``messages``; the messages are its ``messages``.
    """
    data = _keys(data, TOP_KEYS, "file")
    if data.get("format") != EXPORT_FORMAT:
        raise _fail(f'format must be "{EXPORT_FORMAT}".', "format")
    if data.get("version") not in IMPORT_VERSIONS:
        raise _fail(f"version must be one of {', '.join(map(str, IMPORT_VERSIONS))}.", "version")
    conversation = _keys(data.get("conversation"), CONVERSATION_KEYS, "conversation")
    pinned = conversation.get("pinned", False)
    if not isinstance(pinned, bool):
        raise _fail("conversation.pinned must be true or false.", "conversation.pinned")
    raw_tags = conversation.get("tags")
    try:
        tags = check_tags([] if raw_tags is None else raw_tags)
    except DomainError as exc:
        raise _fail(f"conversation.tags: {exc.message}", "conversation.tags") from None
    header = {
        "title": " ".join(
            _text(conversation, "title", "conversation", limit=TITLE_MAX_CHARS).split()
        ),
        "summary": _text(conversation, "summary", "conversation", limit=IMPORT_MAX_CONTENT_CHARS),
        "pinned": pinned,
        "created_at": _time(conversation, "created_at", "conversation"),
        "tags": tags,
    }
    messages = data.get("messages")
    if not isinstance(messages, list):
        raise _fail("messages must be a list.", "messages")
    if len(messages) > IMPORT_MAX_MESSAGES:
        raise _fail(f"At most {IMPORT_MAX_MESSAGES:,} messages can be imported.", "messages")
    seen: set = set()
    checked = []
    for index, raw in enumerate(messages):
        checked.append(_check_message(raw, index, seen, checked[-1]["key"] if checked else None))
    current = _message_id(conversation, "current_leaf", "conversation")
    if current is not None and current not in seen:
        raise _fail(
            "conversation.current_leaf must be the id of one of its messages.",
            "conversation.current_leaf",
        )
    header["current_leaf"] = current
    return header, checked
