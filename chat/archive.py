"""Everything of a person's in one zip (the settings page's "Export everything").

Each conversation (archived ones too) is two files under ``conversations/``: its JSON
export (``exports.export_json``: the whole tree, importable with POST
/api/sessions/import/) and its Markdown (``exports.export_markdown``: the current path,
to read). ``index.md`` lists them; ``account.json`` holds the person's settings. The zip
is written into a spooled temporary file: in memory while small, on disk past
ARCHIVE_MEMORY_BYTES, so an export of thousands of conversations takes no more memory
than one of them.
"""

import json
import tempfile
import zipfile
from pathlib import PurePosixPath

from django.utils import timezone

from accounts import selectors as account_selectors

from . import exports, selectors
from .models import ChatSession

ARCHIVE_MEMORY_BYTES = 8 * 2**20
# Conversations read from the database at a time (with their tags: one more query each).
CHUNK = 200


def archive_filename(*, today=None) -> str:
    return f"parlor-export-{(today or timezone.now()).date().isoformat()}.zip"


def _stem(session: ChatSession) -> str:
    """Return the file name of a conversation without its suffix; the id keeps two
    conversations with one title apart."""
    name = PurePosixPath(exports.export_filename(session=session, fmt="json"))
    return f"{name.stem}-{str(session.pk)[:8]}"


def _markdown_text(value: str) -> str:
    """Return ``value`` as literal text in a Markdown list item."""
    for char in "\\`*_[]<>#|":
        value = value.replace(char, "\\" + char)
    return " ".join(value.split())


def _index(entries: list[dict], *, username: str) -> str:
    lines = [
        f"# Parlor export of {username}",
        "",
        f"Exported {timezone.now():%Y-%m-%d %H:%M} UTC: {len(entries)} conversation(s), "
        "most recent first. Each is a Markdown file to read and a JSON file that "
        "POST /api/sessions/import/ reads back.",
        "",
    ]
    for entry in entries:
        title = _markdown_text(entry["title"] or "New conversation")
        lines.append(
            f"- **{title}** ({entry['context']}, {entry['when']}, "
            f"{entry['messages']} message(s)): [Markdown](<{entry['stem']}.md>) · "
            f"[JSON](<{entry['stem']}.json>)"
        )
    return "\n".join(lines) + "\n"


def export_archive(*, user) -> tempfile.SpooledTemporaryFile:
    """Return a zip of every conversation of ``user`` and their settings, at its start.

    The caller closes it. Conversations are those the user's lists show
    (``selectors.session_list``), archived ones included.
    """
    spool = tempfile.SpooledTemporaryFile(max_size=ARCHIVE_MEMORY_BYTES)  # noqa: SIM115 - returned
    entries = []
    with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        sessions = selectors.session_list(user=user, archived=None, with_tags=True)
        for session in sessions.iterator(chunk_size=CHUNK):
            stem = f"conversations/{_stem(session)}"
            data = exports.export_json(session=session)
            archive.writestr(f"{stem}.json", json.dumps(data, ensure_ascii=False, indent=2))
            archive.writestr(f"{stem}.md", exports.export_markdown(session=session))
            when = session.last_message_at or session.created_at
            entries.append(
                {
                    "stem": stem,
                    "title": session.title,
                    "context": session.context.label,
                    "when": f"{when:%Y-%m-%d}",
                    "messages": session.message_count,
                }
            )
        profile = account_selectors.profile_get(user=user)
        account = {name: getattr(profile, name) for name in account_selectors.PROFILE_READ_FIELDS}
        archive.writestr("account.json", json.dumps(account, ensure_ascii=False, indent=2))
        archive.writestr("index.md", _index(entries, username=profile.username))
    spool.seek(0)
    return spool
