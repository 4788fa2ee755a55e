"""Keyset cursor over the sidebar order (-pinned, -activity_at, -id).

DRF's CursorPagination keys on the first ordering field only; the sidebar needs all
three, so the cursor is the last row's (pinned, activity_at, id), base64-encoded JSON.
Search results are ranked, not keyset-ordered; their cursor carries an offset instead.
"""

import base64
import binascii
import json
import uuid

from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime
from rest_framework.utils.urls import replace_query_param

from chat.exceptions import DomainError

CURSOR_PARAM = "cursor"


def encode_cursor(payload: dict) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str) -> dict:
    """Return the payload of an opaque cursor, or raise a clear 400."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        payload = None
    if not isinstance(payload, dict):
        raise DomainError("The cursor is not valid.", field=CURSOR_PARAM)
    return payload


def next_url(request, payload: dict | None) -> str | None:
    if payload is None:
        return None
    return replace_query_param(request.build_absolute_uri(), CURSOR_PARAM, encode_cursor(payload))


def keyset_page(qs: QuerySet, *, cursor: str | None, limit: int) -> tuple[list, dict | None]:
    """Return one page of ``qs`` (ordered -pinned, -activity_at, -id) and the next cursor."""
    if cursor:
        payload = decode_cursor(cursor)
        try:
            pinned = payload["p"]
            activity_at = parse_datetime(payload["a"])
            last_id = uuid.UUID(payload["i"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DomainError("The cursor is not valid.", field=CURSOR_PARAM) from None
        if not isinstance(pinned, bool) or activity_at is None:
            raise DomainError("The cursor is not valid.", field=CURSOR_PARAM)
        # Rows strictly after the cursor in the (-pinned, -activity_at, -id) order.
        after = Q(activity_at__lt=activity_at) | Q(activity_at=activity_at, id__lt=last_id)
        qs = qs.filter(Q(pinned__lt=pinned) | Q(pinned=pinned) & after)
    rows = list(qs[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, {"p": last.pinned, "a": last.activity_at.isoformat(), "i": str(last.pk)}


def offset_from_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    offset = decode_cursor(cursor).get("o")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= 10_000:
        raise DomainError("The cursor is not valid.", field=CURSOR_PARAM)
    return offset
