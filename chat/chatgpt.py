"""Read a ChatGPT data export: ``conversations.json``, or the zip ChatGPT sends it in.

The file is a JSON list of conversations, each a tree of messages (``mapping``: node id ->
``{"message", "parent", "children"}``) with ``current_node``, the end of the branch the
conversation was left on. It is read one conversation at a time (``ijson``), never whole:
memory follows the largest conversation, not the export. ``read_export`` yields them;
``conversation_fields`` turns one into the arguments of ``services.conversation_import``,
and ``services.import_chatgpt`` writes them. This module writes nothing.

What is kept of a conversation: the user's and the assistant's messages, as a tree.
Left out: nodes without a message, system and tool messages, messages ChatGPT itself
hides (``metadata.is_visually_hidden_from_conversation``), the assistant's calls to a
tool (addressed to another ``recipient`` than ``all``; code it runs is kept), custom
instructions, memory and reasoning (``user_editable_context``, ``model_editable_context``,
``thoughts``, ``reasoning_recap``), and messages left empty once read. A message left out
is skipped, not cut: its children become children of its nearest kept ancestor, so the
branches of an edited question or a regenerated reply stay siblings. Text parts are
joined with blank lines; what Parlor cannot show (images, audio, attached files) is a
note such as ``[image: photo.png]`` or ``[file: report.pdf]``; code and its output are
fenced code blocks.
"""

import io
import itertools
import math
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from heapq import heappop, heappush
from pathlib import PurePosixPath

import ijson

from .exceptions import DomainError, ImportTooLarge
from .exports import IMPORT_MAX_CONTENT_CHARS, IMPORT_MAX_MESSAGES
from .models import ChatSession, Message
from .text import clean_text

# ``ChatSession.imported_from`` of a conversation from ChatGPT: this, then its id.
SOURCE = "chatgpt:"
ID_MAX_CHARS = ChatSession._meta.get_field("imported_from").max_length - len(SOURCE)
ID_PATTERN = re.compile(rf"[A-Za-z0-9._:-]{{1,{ID_MAX_CHARS}}}")
# The largest upload taken (the REST API and the page; nginx takes as much).
EXPORT_MAX_BYTES = 100 * 1024 * 1024
# The most JSON one conversation may take: it is held in memory while it is read.
CONVERSATION_MAX_BYTES = 64 * 1024 * 1024
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
BOM = b"\xef\xbb\xbf"
KEPT_ROLES = {"user": Message.Role.USER, "assistant": Message.Role.ASSISTANT}
LEFT_OUT_CONTENT = {
    "user_editable_context",
    "model_editable_context",
    "thoughts",
    "reasoning_recap",
}
TRUNCATED = "\n\n[truncated]"
LLM_MAX_CHARS = Message._meta.get_field("llm").max_length
LABEL_MAX_CHARS = 100
_END = object()


class BrokenConversation(Exception):
    """One conversation of an export that cannot be imported; the others can."""


def _invalid(message: str) -> DomainError:
    return DomainError(message, field="file")


class _Counted(io.RawIOBase):
    """The bytes of ``conversations.json``: a UTF-8 BOM dropped, counted for the progress,
    and no conversation (the bytes read since ``mark``) larger than CONVERSATION_MAX_BYTES."""

    def __init__(self, stream):
        self.stream = stream
        self.count = 0
        self.mark = 0
        self.head = b""

    def readable(self):
        return True

    def peek(self) -> bytes:
        """Read the first bytes and return them; the next reads give them again."""
        self.head = self._read(64 * 1024).removeprefix(BOM)
        return self.head

    def _read(self, size: int) -> bytes:
        try:
            data = self.stream.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise _invalid(f"The zip archive is damaged ({exc}).") from None
        self.count += len(data)
        if self.count - self.mark > CONVERSATION_MAX_BYTES:
            raise _invalid(
                f"A conversation is larger than {CONVERSATION_MAX_BYTES // 2**20} MB of JSON."
            )
        return data

    def readinto(self, buffer) -> int:
        data = self.head or self._read(len(buffer))
        self.head = data[len(buffer) :]
        data = data[: len(buffer)]
        buffer[: len(data)] = data
        return len(data)


def _conversations_json(file) -> tuple[object, int | None]:
    """Return the stream of ``conversations.json`` in ``file`` (a seekable binary file or
    bytes: the JSON itself, or a zip holding it at any depth) and its size in bytes."""
    if isinstance(file, bytes | bytearray):
        file = io.BytesIO(file)
    file.seek(0, io.SEEK_END)
    size = file.tell()
    file.seek(0)
    if file.read(4) not in ZIP_MAGIC:
        file.seek(0)
        return file, size
    file.seek(0)
    try:
        archive = zipfile.ZipFile(file)
        found = [
            info
            for info in archive.infolist()
            if PurePosixPath(info.filename).name == "conversations.json"
            and not info.is_dir()
            and not info.filename.startswith("__MACOSX/")
        ]
        if not found:
            raise _invalid("The zip archive has no conversations.json: it is not a ChatGPT export.")
        member = min(found, key=lambda info: (info.filename.count("/"), info.filename))
        return archive.open(member), member.file_size
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError) as exc:
        # RuntimeError: an encrypted member; NotImplementedError is not raised for the
        # methods ChatGPT uses (stored, deflated).
        raise _invalid(f"The file is not a readable zip archive ({exc}).") from None
    except NotImplementedError as exc:
        raise _invalid(f"The zip archive cannot be read ({exc}).") from None


def check_upload(upload) -> None:
    """Refuse an uploaded export larger than EXPORT_MAX_BYTES (a file on the server's own
    disk, ``manage.py import_chatgpt``'s, has no such limit)."""
    if upload.size > EXPORT_MAX_BYTES:
        raise ImportTooLarge(
            f"The file is larger than {EXPORT_MAX_BYTES // 2**20} MB (the server's operator "
            "can import it with manage.py import_chatgpt).",
            field="file",
        )


def read_export(file, *, progress: Callable[[int, int | None], None] | None = None) -> Iterator:
    """Yield the conversations of a ChatGPT export one at a time, each a dict as parsed.

    Raise DomainError (``invalid``, on field ``file``) when the file is not a ChatGPT
    export: not JSON, a zip without ``conversations.json``, not a list, an item that is not
    a conversation (an object with a ``mapping``); it may come after conversations were
    yielded, so the caller's transaction must not keep them. ``progress(read, total)``
    is called after each conversation with the bytes of ``conversations.json`` read so
    far and its size (None when not known).
    """
    stream, total = _conversations_json(file)
    source = _Counted(stream)
    start = source.peek().lstrip()
    if not start:
        raise _invalid("The file is empty: it is not a ChatGPT export.")
    if start[:1] != b"[":
        what = "a JSON object" if start[:1] == b"{" else "not a JSON list"
        raise _invalid(f"The file is {what}: a ChatGPT export is the list of conversations.")
    items = ijson.items(source, "item", use_float=True)
    for index in itertools.count(1):
        try:
            item = next(items, _END)
        except ijson.JSONError as exc:
            reason = str(exc).splitlines()[0][:120] if str(exc) else "it ends too soon"
            raise _invalid(f"The file is not valid JSON ({reason}).") from None
        if item is _END:
            return
        if not isinstance(item, dict) or "mapping" not in item:
            raise _invalid(
                f"Item {index} of the list is not a ChatGPT conversation (it has no mapping)."
            )
        source.mark = source.count
        yield item
        if progress is not None:
            progress(source.count, total)


# One conversation ---------------------------------------------------------------------


def conversation_label(raw: dict) -> str:
    """Return how a conversation is named in a report: its title, else its id."""
    for value in (raw.get("title"), raw.get("conversation_id"), raw.get("id")):
        if isinstance(value, str) and value.strip():
            return " ".join(clean_text(value).split())[:LABEL_MAX_CHARS]
    return "(untitled, without id)"


def conversation_source(raw: dict) -> str:
    """Return the ``imported_from`` of a conversation: ``chatgpt:<its id>``."""
    value = raw.get("conversation_id") or raw.get("id")
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise BrokenConversation("It has no valid conversation id.")
    return SOURCE + value


def _time(value) -> datetime | None:
    """Return an epoch time in seconds as an aware UTC datetime (None when it is none)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    try:
        at = datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return at if 1900 <= at.year <= 9000 else None


def _created(node: dict) -> datetime | None:
    message = node.get("message")
    return _time(message.get("create_time")) if isinstance(message, dict) else None


def _nodes(raw: dict) -> dict[str, dict]:
    """Return the mapping of a conversation, checked: each node an object whose parent is
    another node of the mapping (or none)."""
    mapping = raw["mapping"]
    if not isinstance(mapping, dict):
        raise BrokenConversation("Its mapping is not an object of messages.")
    for key, node in mapping.items():
        if not isinstance(node, dict):
            raise BrokenConversation(f"Its node {key[:40]} is not an object.")
        parent = node.get("parent")
        if parent is not None and (not isinstance(parent, str) or parent not in mapping):
            raise BrokenConversation(
                f"The parent of its node {key[:40]} is not one of its messages."
            )
    return mapping


def _fenced(text: str, language="") -> str:
    """Return ``text`` as a fenced code block whose fence no backtick run inside closes."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    if not isinstance(language, str) or not re.fullmatch(r"[\w+#.-]{1,30}", language):
        language = ""
    language = "" if language == "unknown" else language
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def _note(what: str, name=None) -> str:
    if isinstance(name, str) and name.strip():
        return f"[{what}: {' '.join(name.split())[:200]}]"
    return f"[{what} omitted]"


def _file_id(pointer) -> str | None:
    """Return the file id an asset pointer names (``file-service://file-X`` -> file-X)."""
    return pointer.rsplit("/", 1)[-1] if isinstance(pointer, str) and pointer else None


def _part(part, attachments: dict[str, str], shown: set[str]) -> str:
    """Return the text of one part of a message: its text, or a note of what it was."""
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return ""
    kind = part.get("content_type")
    kind = kind if isinstance(kind, str) else ""
    if isinstance(part.get("text"), str):
        return part["text"]  # e.g. audio_transcription: the words spoken
    file_id = _file_id(part.get("asset_pointer"))
    if file_id in attachments:
        shown.add(file_id)
    name = attachments.get(file_id)
    if "image" in kind:
        return _note("image", name)
    if "video" in kind:
        return _note("video", name)
    if "audio" in kind:
        return _note("audio", name)
    return _note(re.sub(r"[^a-z_]", "", kind)[:40] or "attachment", name)


def _attachments(metadata: dict) -> dict[str, str]:
    """Return the files attached to a message, name by file id."""
    found = {}
    attachments = metadata.get("attachments")
    for index, item in enumerate(attachments if isinstance(attachments, list) else []):
        if isinstance(item, dict):
            name = item.get("name")
            key = item.get("id") if isinstance(item.get("id"), str) else f"#{index}"
            found[key] = name if isinstance(name, str) else ""
    return found


def _text(content: dict, metadata: dict) -> str:
    """Return what a message says, as Parlor shows it (Markdown)."""
    kind = content.get("content_type")
    text = content.get("text")
    if kind == "code" and isinstance(text, str):
        return _fenced(text, content.get("language"))
    if kind == "execution_output" and isinstance(text, str):
        return _fenced(text)
    if kind == "tether_quote" and isinstance(text, str):
        title = content.get("title") or content.get("url")
        quote = "\n".join(f"> {line}" for line in text.splitlines())
        return f"{quote}\n>\n> — {title}" if isinstance(title, str) and title else quote
    attachments = _attachments(metadata)
    shown: set[str] = set()
    parts = content.get("parts")
    pieces = [_part(part, attachments, shown) for part in parts] if isinstance(parts, list) else []
    if not any(piece.strip() for piece in pieces) and isinstance(text, str):
        pieces = [text]
    pieces += [_note("file", name) for key, name in attachments.items() if key not in shown]
    return "\n\n".join(piece for piece in pieces if piece.strip())


def _message(node: dict) -> dict | None:
    """Return the Message fields of a node, or None when it is left out."""
    message = node.get("message")
    if not isinstance(message, dict):
        return None
    author = message.get("author")
    role = author.get("role") if isinstance(author, dict) else None
    role = KEPT_ROLES.get(role) if isinstance(role, str) else None
    content = message.get("content")
    metadata = message.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    if role is None or not isinstance(content, dict):
        return None
    kind = content.get("content_type")
    kind = kind if isinstance(kind, str) else ""
    if kind in LEFT_OUT_CONTENT or metadata.get("is_visually_hidden_from_conversation") is True:
        return None
    recipient = message.get("recipient", "all")
    if role == Message.Role.ASSISTANT and recipient not in ("all", None) and kind != "code":
        return None  # a call to a tool (browsing, image generation, memory)
    text = _text(content, metadata)
    if not text.strip():
        return None
    if len(text) > IMPORT_MAX_CONTENT_CHARS:
        text = text[: IMPORT_MAX_CONTENT_CHARS - len(TRUNCATED)] + TRUNCATED
    llm = metadata.get("model_slug") if role == Message.Role.ASSISTANT else None
    return {
        "role": role,
        "content": text,
        "status": Message.Status.COMPLETE,
        "llm": llm[:LLM_MAX_CHARS] if isinstance(llm, str) else "",
        "created_at": _created(node),
    }


def conversation_fields(raw: dict) -> dict:
    """Return ``services.conversation_import``'s arguments for one conversation (but
    ``user`` and ``imported_from``), or raise BrokenConversation saying why it cannot be.

    The messages come parents first, in the order they were written (``create_time``; a
    message without one right after its parent), so that ids grow with time and the
    versions of a turn are numbered as ChatGPT made them. Each has its node id as ``key``
    and its nearest kept ancestor as ``parent``. The current leaf is ``current_node``'s
    nearest kept ancestor; without one, the newest leaf (the last message).
    """
    nodes = _nodes(raw)
    order = {key: index for index, key in enumerate(nodes)}
    children: dict[str, list[str]] = {}
    roots = []
    for key, node in nodes.items():
        parent = node.get("parent")
        (children.setdefault(parent, []) if parent is not None else roots).append(key)
    created_at = _time(raw.get("create_time"))
    # (when, file order, node, nearest kept ancestor); a node comes out after its parent.
    start = created_at or datetime.min.replace(tzinfo=UTC)
    waiting = [(_created(nodes[key]) or start, order[key], key, None) for key in roots]
    kept_as: dict[str, str | None] = {}
    messages = []
    visited = 0
    while waiting:
        when, _, key, ancestor = heappop(waiting)
        visited += 1
        fields = _message(nodes[key])
        if fields is not None:
            messages.append({"key": key, "parent": ancestor, **fields})
            ancestor = key
            if len(messages) > IMPORT_MAX_MESSAGES:
                raise BrokenConversation(f"It has more than {IMPORT_MAX_MESSAGES:,} messages.")
        kept_as[key] = ancestor
        for child in children.get(key, ()):
            heappush(
                waiting, (max(when, _created(nodes[child]) or when), order[child], child, ancestor)
            )
    if visited < len(nodes):
        raise BrokenConversation("Its messages' parents form a cycle.")
    if not messages:
        raise BrokenConversation("It has no messages of the user or the assistant.")
    title, current = raw.get("title"), raw.get("current_node")
    return {
        "messages": messages,
        "title": title if isinstance(title, str) else "",
        "created_at": created_at,
        "current_leaf": kept_as.get(current) if isinstance(current, str) else None,
    }
