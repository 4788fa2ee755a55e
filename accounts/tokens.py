"""Bearer tokens for the REST API, SSE and the WebSocket.

One parser for the ``Authorization`` header (``bearer_token``) and one lookup
(``token_user``) serve every door, so a token reads the same everywhere. People name,
list and revoke their tokens through accounts.services and accounts.selectors.
"""

import hashlib
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from config import statements

from .models import ApiToken, User

# RFC 6750's b64token: what a token may be made of (ours are URL-safe base64).
_TOKEN_CHARS = r"[A-Za-z0-9._~+/-]+=*"
TOKEN = re.compile(_TOKEN_CHARS, re.ASCII)
# ``Bearer <token>``: the scheme in any case, one or more spaces, nothing else.
_BEARER = re.compile(rf"bearer +({_TOKEN_CHARS})", re.ASCII | re.IGNORECASE)
MAX_TOKEN_CHARS = 200
# A token's last use is written at most once this often: a busy token costs no write.
LAST_USED_EVERY = timedelta(seconds=60)
_TOKEN = ApiToken._meta.db_table
_TOKEN_USER = (
    "SELECT u.id, t.id, (t.last_used_at IS NULL OR t.last_used_at < %s),"
    " u.about_me, u.response_style, u.default_llm, u.quota_tokens_per_day"
    f" FROM {_TOKEN} t JOIN {User._meta.db_table} u"
    " ON u.id = t.user_id WHERE t.digest = %s AND t.expires_at > %s AND u.is_active"
)
# The user's fields _TOKEN_USER reads, after the ids: in the model's field order, which
# Model.from_db reads its values in.
_USER_SETTINGS = ("about_me", "response_style", "default_llm", "quota_tokens_per_day")
# Conditional, so two requests that both saw a stale time write it once between them.
_TOKEN_USED = (
    f"UPDATE {_TOKEN} SET last_used_at = %s"
    " WHERE id = %s AND (last_used_at IS NULL OR last_used_at < %s)"
)


def bearer_token(header_value: str | bytes | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` value, else None.

    None when the header is absent, names another scheme, or is malformed (no token, more
    than one, characters a token cannot hold): every door then treats the request as
    carrying no token.
    """
    if header_value is None:
        return None
    if isinstance(header_value, bytes):
        header_value = header_value.decode("latin-1")  # HTTP header bytes
    match = _BEARER.fullmatch(header_value.strip(" \t"))
    return match.group(1) if match else None


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_issue(*, user: User, name: str = "") -> tuple[str, ApiToken]:
    """Create a token for ``user``; return the raw value (shown once) and the record.

    ``name`` is stored as given: accounts.services.token_create checks a person's.
    """
    raw = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        digest=_digest(raw),
        expires_at=timezone.now() + timedelta(seconds=settings.API_TOKEN_TTL_SECONDS),
    )
    return raw, token


def token_user(raw: str) -> User | None:
    """Return the active user a valid, unexpired token belongs to, or None.

    A value that cannot be a token (empty, too long, other characters) is refused
    without a query. The token's ``last_used_at`` is written when it is older than
    LAST_USED_EVERY (one conditional UPDATE), so most calls are the one SELECT.
    """
    if not isinstance(raw, str) or len(raw) > MAX_TOKEN_CHARS or not TOKEN.fullmatch(raw):
        return None
    # Every API call and every streamed reply asks this: plain statements (the ORM would
    # take ten times their CPU building them). The user comes back with only its id
    # loaded, its daily token quota, which every send checks (chat.sql.lock_sender), and
    # what every reply's prompt reads (custom instructions, default LLM); any other
    # field loads when read.
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    stale_before = adapt(now - LAST_USED_EVERY)
    with statements.cursor() as cursor:
        cursor.execute(_TOKEN_USER, [stale_before, _digest(raw), adapt(now)])
        row = cursor.fetchone()
        if row is None:
            return None
        user_id, token_id, stale, *settings = row
        if stale:
            cursor.execute(_TOKEN_USED, [adapt(now), token_id, stale_before])
    return User.from_db(
        connection.alias,
        ["id", "is_active", *_USER_SETTINGS],
        [user_id, True, *settings],
    )
