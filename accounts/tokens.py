"""Bearer tokens for the REST API, SSE and the WebSocket.

One parser for the ``Authorization`` header (``bearer_token``) and one lookup
(``token_user``) serve every door, so a token reads the same everywhere. People name,
list and revoke their tokens through accounts.services and accounts.selectors.

A send checks its token under the sender's row lock instead (``token_sender``): the
streamed reply's path then has no round trip of the token's own.
"""

import hashlib
import re
import secrets
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from config import statements
from core.exceptions import DomainError

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
# A token ``t`` (its digest, then the time now) is valid for its user ``u``.
_VALID = "t.digest = %s AND t.expires_at > %s AND u.is_active"
_TOKEN_USER = (
    "SELECT u.id, t.id, (t.last_used_at IS NULL OR t.last_used_at < %s),"
    " u.about_me, u.response_style, u.default_llm, u.quota_tokens_per_day"
    f" FROM {_TOKEN} t JOIN {User._meta.db_table} u"
    f" ON u.id = t.user_id WHERE {_VALID}"
)
# The user's fields _TOKEN_USER reads, after the ids: in the model's field order, which
# Model.from_db reads its values in.
_USER_SETTINGS = ("about_me", "response_style", "default_llm", "quota_tokens_per_day")
# Conditional, so two requests that both saw a stale time write it once between them.
_TOKEN_USED = (
    f"UPDATE {_TOKEN} SET last_used_at = %s"
    " WHERE id = %s AND (last_used_at IS NULL OR last_used_at < %s)"
)


class InvalidToken(DomainError):
    status = 401
    code = "not_authenticated"
    default_message = "The token is invalid or expired."


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


def _well_formed(raw) -> bool:
    """Whether ``raw`` can be a token (not empty, not too long, a token's characters)."""
    return isinstance(raw, str) and len(raw) <= MAX_TOKEN_CHARS and bool(TOKEN.fullmatch(raw))


def token_user(raw: str) -> User | None:
    """Return the active user a valid, unexpired token belongs to, or None.

    A value that cannot be a token (empty, too long, other characters) is refused
    without a query. The token's ``last_used_at`` is written when it is older than
    LAST_USED_EVERY (one conditional UPDATE), so most calls are the one SELECT.
    """
    return _user_by_digest(_digest(raw)) if _well_formed(raw) else None


def _user_by_digest(digest: str) -> User | None:
    """``token_user`` for a well-formed token's digest."""
    # Every API call and every streamed reply asks this: plain statements (the ORM would
    # take ten times their CPU building them). The user comes back with only its id
    # loaded, its daily token quota, which every send checks (chat.sql.lock_sender), and
    # what every reply's prompt reads (custom instructions, default LLM); any other
    # field loads when read.
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    stale_before = adapt(now - LAST_USED_EVERY)
    with statements.cursor() as cursor:
        cursor.execute(_TOKEN_USER, [stale_before, digest, adapt(now)])
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


# Send path: the token checked with the sender's lock ------------------------------------

# Tokens found valid within LAST_USED_EVERY: digest -> (user id, time.monotonic() then).
_recent: dict[str, tuple[int, float]] = {}
_recent_lock = threading.Lock()
RECENT_TOKENS = 4096  # the most remembered (per process); the oldest go first


def token_sender(raw: str) -> User | None:
    """Return the user a token names, for a send that checks it under its lock; else None.

    A token found valid in this process within LAST_USED_EVERY gives its user at once,
    with only the id loaded and marked unconfirmed: the send's locking statement takes
    the lock only if the token is still valid, unexpired and its user active, and loads
    the fields ``token_user`` loads (``confirming_sql``, ``confirm``). Revoking a token,
    or deactivating its user, so refuses the next send at once, in every process. Any
    other token is looked up as ``token_user`` does (which also writes its last use).
    """
    if not _well_formed(raw):
        return None
    digest = _digest(raw)
    now = time.monotonic()
    known = _recent.get(digest)
    if known is not None and now - known[1] < LAST_USED_EVERY.total_seconds():
        user = User.from_db(connection.alias, ["id", "is_active"], [known[0], True])
        user._token_unconfirmed = digest
        return user
    user = _user_by_digest(digest)
    if user is not None:
        with _recent_lock:
            _recent.pop(digest, None)
            while len(_recent) >= RECENT_TOKENS:
                del _recent[next(iter(_recent))]
            _recent[digest] = (user.pk, now)
    return user


def unconfirmed(user) -> bool:
    """Whether ``user`` came from ``token_sender`` without a lookup, not confirmed yet."""
    return getattr(user, "_token_unconfirmed", None) is not None


# The fields ``confirm`` sets, read by ``confirming_sql``'s statement after the quota:
# the rest of what ``token_user`` loads.
CONFIRMED_FIELDS = tuple(name for name in _USER_SETTINGS if name != "quota_tokens_per_day")


def confirming_sql(user) -> tuple[str, str, list]:
    """For a user ``token_sender`` left unconfirmed: the columns and the condition (on
    the user row ``u``) that the send's locking statement adds, and the condition's
    parameters. ("", "", []) for any other user."""
    if not unconfirmed(user):
        return "", "", []
    digest = user._token_unconfirmed
    columns = "".join(f", u.{name}" for name in CONFIRMED_FIELDS)
    condition = f" AND EXISTS (SELECT 1 FROM {_TOKEN} t WHERE t.user_id = u.id AND {_VALID})"
    return columns, condition, [digest, connection.ops.adapt_datetimefield_value(timezone.now())]


def confirm(user, row) -> None:
    """Take the locking statement's row (``confirming_sql``): the user's fields after the
    quota; raise InvalidToken if it found none (the token is no longer valid)."""
    if not unconfirmed(user):
        return
    if row is None:
        raise InvalidToken()
    for name, value in zip(CONFIRMED_FIELDS, row[1:], strict=True):
        setattr(user, name, value)
    user.quota_tokens_per_day = row[0]
    del user._token_unconfirmed
