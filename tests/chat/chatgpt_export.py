"""A small ChatGPT data export (tests/chat/data/chatgpt_conversations.json) and what the
ChatGPT import tests build from it.

The export has two conversations. "Trip to Portugal": a system message and hidden custom
instructions at the root; the first question edited (two sibling questions, each with its
reply); a question with an image and a PDF attached; code the assistant ran and the tool's
output; that reply regenerated (two sibling replies), the second followed by a hidden
message; ``current_node`` on the first, older reply. The other, without a title: a
question, the model's thoughts and their recap, and a reply without a time.
"""

import io
import json
import zipfile
from pathlib import Path

from chat.models import ChatSession

EXPORT = Path(__file__).parent / "data" / "chatgpt_conversations.json"
TRIP_ID = "11111111-1111-4111-8111-111111111111"
UNTITLED_ID = "22222222-2222-4222-8222-222222222222"


def conversations() -> list[dict]:
    return json.loads(EXPORT.read_text())


def export_bytes(items: list | None = None) -> bytes:
    return json.dumps(conversations() if items is None else items).encode()


def export_zip(
    data: bytes | None = None, *, name: str = "ChatGPT-export/conversations.json"
) -> bytes:
    """Return a zip like ChatGPT's: ``conversations.json`` (in a folder) among other files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ChatGPT-export/chat.html", "<html></html>")
        archive.writestr("ChatGPT-export/user.json", '{"id": "user-1"}')
        archive.writestr(name, export_bytes() if data is None else data)
    return buffer.getvalue()


def tree(session: ChatSession) -> list[tuple]:
    """Return a conversation's messages in id order as (role, content, index of the
    parent in that order or None, on the current path)."""
    messages = list(session.messages.order_by("id"))
    index = {message.pk: position for position, message in enumerate(messages)}
    return [
        (m.role, m.content, index.get(m.parent_id), m.on_path)
        for m in messages  # a parent always comes before its children
    ]


TRIP_TREE = [
    ("user", "Plan a day in Lisbon.", None, False),
    ("assistant", "Morning: Alfama.\n\nEvening: Bairro Alto.", 0, False),
    ("user", "Plan a day in Porto.", None, True),
    ("assistant", "Morning: Ribeira.", 2, True),
    (
        "user",
        "[image: bridge.jpg]\n\nHow long is this bridge?\n\n[file: itinerary.pdf]",
        3,
        True,
    ),
    ("assistant", "```python\nprint(385.25)\n```", 4, True),
    ("assistant", "About 385 metres.", 5, True),
    ("assistant", "The Dom Luís I Bridge is 385 m long.", 5, False),
]
UNTITLED_TREE = [
    ("user", "Is 91 prime?", None, True),
    ("assistant", "No: 91 = 7 × 13.", 0, True),
]
