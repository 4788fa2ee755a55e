"""Every write to conversations and messages.

Views, viewsets, the WebSocket consumer, the SSE view, the admin, the management
commands and models_app's deletions (through chat/receivers.py) call these functions;
none of them writes a ChatSession or Message itself.

Locking: a function that changes which session of a context is active first locks the
owner's ``User`` row (``lock_user``), then the sessions it touches. One lock order for
every such function means switches of one user are serialised and never deadlock; users
do not wait on each other. On SQLite the IMMEDIATE transaction mode does the same job.
"""

import functools
import logging
import random
import secrets
import time
import unicodedata
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, OperationalError, transaction
from django.db.models import Exists, F, OuterRef
from django.db.models.functions import Greatest
from django.utils import timezone

from accounts import selectors as account_selectors
from accounts import services as account_services
from models_app.models import Model, Run

from . import metrics, prompting, selectors, signals, sql, usage
from .exceptions import (
    ClientIdTaken,
    ConversationNotFound,
    ConversationReadOnly,
    DomainError,
    EmptyMessage,
    FolderNotFound,
    GenerationInProgress,
    InvalidContext,
    MessageNotFound,
    MessageTooLong,
    OperatorPresent,
    ShareNotFound,
)
from .llm import available_llms
from .models import (
    ChatSession,
    Context,
    Feedback,
    Folder,
    Message,
    Participant,
    SessionTag,
    ShareLink,
)
from .text import clean_json, clean_text

logger = logging.getLogger(__name__)

PROVISIONAL_TITLE_CHARS = 50
PREVIEW_CHARS = 200
TITLE_MAX_CHARS = 200
DETACHED_LABEL_MAX_CHARS = ChatSession._meta.get_field("detached_label").max_length
CLIENT_ID_MAX_CHARS = 64
TAGS_MAX = 20
TAG_MAX_CHARS = selectors.TAG_MAX_CHARS
CONFLICT_ATTEMPTS = 8
# A streaming reply not written for REPLY_LEASE seconds has no live writer (its process
# died): any process may end it as interrupted. A live writer saves or renews its reply
# well within that (chat/streaming, HEARTBEAT_INTERVAL).
REPLY_LEASE = 6.0
SETTLE_BATCH = 500
TEMPORARY_BATCH = 500
# The one ending of a reply cut short by a shutdown or by the death of its writer.
INTERRUPTED = "interrupted"


def is_pool_timeout(exc: BaseException) -> bool:
    """Return whether ``exc`` is (or wraps) psycopg_pool's PoolTimeout.

    Waiting for a pooled connection again only makes the queue longer: not a conflict.
    """
    seen = 0
    while exc is not None and seen < 5:
        if type(exc).__name__ == "PoolTimeout":
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _retry_on_conflict(func):
    """Run ``func`` again when a concurrent transaction made it fail.

    The user-row lock already serialises switches; this is the belt to those braces:
    a deadlock, a serialisation failure, SQLite's "database is locked" or a constraint
    race is retried (the transaction was rolled back whole) and never reaches the caller.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return func(*args, **kwargs)
            except (IntegrityError, OperationalError) as exc:
                if (
                    attempt == CONFLICT_ATTEMPTS
                    or transaction.get_connection().in_atomic_block
                    or is_pool_timeout(exc)
                ):
                    raise
                logger.info("retrying %s after %s (attempt %d)", func.__name__, exc, attempt)
                time.sleep(random.uniform(0.005, 0.02) * attempt)
        raise AssertionError("unreachable")

    return wrapper


def lock_user(user) -> None:
    """Take the row lock that serialises context switches of ``user``."""
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk"))


def lock_sessions(sessions) -> list:
    """Take the row locks of the conversations ``sessions`` (a queryset), in key order;
    return their ids."""
    return list(sessions.order_by("pk").select_for_update().values_list("pk", flat=True))


def _deactivate_context(*, user, model_id, run_id, keep_id=None) -> None:
    """Deactivate the active session of a context (caller holds the user lock)."""
    sql.deactivate_context(user_id=user.pk, model_id=model_id, run_id=run_id, keep_id=keep_id)


def _activate(session: ChatSession) -> None:
    """Make ``session`` the active one of its context, without touching its timestamps."""
    if session.context == Context.DETACHED:
        raise ConversationReadOnly()
    _deactivate_context(
        user=session.user,
        model_id=session.model_id,
        run_id=session.run_id,
        keep_id=session.pk,
    )
    ChatSession.objects.filter(pk=session.pk).update(is_active=True, archived=False)
    session.is_active = True
    session.archived = False


def provisional_title(content: str) -> str:
    """Return the first ~50 characters of a message, cut at a word, as a title."""
    text = " ".join(content.split())
    if len(text) <= PROVISIONAL_TITLE_CHARS:
        return text
    cut = text[:PROVISIONAL_TITLE_CHARS]
    if " " in cut[20:]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:-") + "…"


def _preview(content: str) -> str:
    text = " ".join(content.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def check_message_content(content) -> str:
    """Return ``content`` if it is a sendable message, else raise a clear error."""
    if not isinstance(content, str):
        raise DomainError("content must be a string.", field="content")
    content = clean_text(content)
    if not content.strip():
        raise EmptyMessage(field="content")
    limit = settings.MAX_MESSAGE_CHARS
    if len(content) > limit:
        raise MessageTooLong(
            f"The message is {len(content):,} characters long; the limit is {limit:,}.",
            field="content",
        )
    return content


def _check_client_id(client_id) -> str | None:
    if client_id in (None, ""):
        return None
    if not isinstance(client_id, str) or len(client_id) > CLIENT_ID_MAX_CHARS:
        raise DomainError(
            f"client_id must be a string of at most {CLIENT_ID_MAX_CHARS} characters.",
            field="client_id",
        )
    return client_id


def _check_title(title) -> str:
    if not isinstance(title, str):
        raise DomainError("title must be a string.", field="title")
    title = " ".join(clean_text(title).split())
    if not title:
        raise DomainError("The title is empty.", field="title")
    if len(title) > TITLE_MAX_CHARS:
        raise DomainError(f"The title is longer than {TITLE_MAX_CHARS} characters.", field="title")
    return title


def _check_temporary(temporary) -> bool:
    if not isinstance(temporary, bool):
        raise DomainError("temporary must be true or false.", field="temporary")
    return temporary


def check_tags(tags) -> list[str]:
    """Return ``tags`` as a conversation stores them, or raise a clear error (field tags).

    A list of at most TAGS_MAX names, each read by ``selectors.parse_tag`` (lowercased,
    1-40 characters); names that read the same count once. Sorted by name.
    """
    if not isinstance(tags, list | tuple):
        raise DomainError("tags must be a list of names.", field="tags")
    names = {selectors.parse_tag(tag, field="tags") for tag in tags}
    if len(names) > TAGS_MAX:
        raise DomainError(
            f"A conversation has at most {TAGS_MAX} tags; these are {len(names)}.", field="tags"
        )
    return sorted(names)


def _replace_tags(*, session: ChatSession, names: list[str]) -> None:
    """Make ``names`` (as check_tags returns them) the tags of ``session``.

    The caller holds the session's row lock, or has just created the session. Each row
    carries the conversation's owner.
    """
    SessionTag.objects.filter(session=session).exclude(name__in=names).delete()
    SessionTag.objects.bulk_create(
        [SessionTag(user_id=session.user_id, session=session, name=name) for name in names],
        ignore_conflicts=True,
    )


def check_llm(value) -> str:
    """Return ``value`` if it names an LLM offered here (``llm.available_llms``), or ""
    (the default); else UnknownLLM (400 ``unknown_llm``, field ``llm``).

    The provider's list is cached (LLM_MODELS_CACHE): asking is a cache read, and only
    when an LLM is named.
    """
    return account_services.check_llm_name(value, llms=available_llms, field="llm")


def _default_llm(*, user, model) -> str:
    """Return the LLM a new conversation stores: none for a model's (it follows the
    model's), the owner's default LLM for a general one (kept as it was then).

    A user read with only its id (a bearer token's) gets its settings read in one query,
    which the system prompt's custom instructions then use too.
    """
    if model is not None:
        return ""
    if "default_llm" in user.get_deferred_fields():
        account_selectors.profile_get(user=user)
    return user.default_llm


def _create_session(
    *,
    user,
    model,
    run,
    session_id=None,
    title="",
    temporary: bool = False,
    llm: str = "",
    defer: bool = False,
) -> tuple[ChatSession, sql.Deferred | None]:
    """Create the active session of a context (caller holds the user lock); a
    ``temporary`` one is never active and leaves the context's active one as it is.
    Return it, and with ``defer`` (a send's: its turn follows in the same transaction)
    on PostgreSQL its statements, not sent yet: the turn's query sends them first.

    Its LLM is ``llm`` (checked by the caller), else ``_default_llm``'s.
    """
    session, deferred = sql.insert_session(
        session_id=session_id or uuid.uuid4(),
        user_id=user.pk,
        model_id=model.pk if model else None,
        run_id=run.pk if run else None,
        title=title,
        at=timezone.now(),
        temporary=temporary,
        llm=llm or _default_llm(user=user, model=model),
        deactivate=not temporary,
        defer=defer,
    )
    # The model and run were read to resolve the context: no query to read them again.
    session.user, session.model, session.run = user, model, run
    transaction.on_commit(
        lambda: logger.info(
            "conversation %s created: user %s, %s context", session.pk, user.pk, session.context
        )
    )
    return session, deferred


def _existing_for_client_uuid(*, user, session_id, model, run) -> ChatSession | None:
    """Return the session a client already created under ``session_id``, if any.

    The id is the client's idempotency key: the same id in the same context is the same
    conversation; someone else's id is "not found"; the id in another context is refused.
    """
    existing = ChatSession.objects.filter(pk=session_id).first()
    if existing is None:
        return None
    if existing.user_id != user.pk:
        raise ConversationNotFound()
    if (existing.model_id, existing.run_id) != (
        model.pk if model else None,
        run.pk if run else None,
    ) and existing.context != Context.DETACHED:
        raise InvalidContext(
            "A conversation with this id already exists in another context.", field="id"
        )
    return existing


@_retry_on_conflict
def conversation_start(
    *,
    user,
    model_id=None,
    run_id=None,
    session_id=None,
    title: str = "",
    temporary=False,
    llm=None,
) -> tuple[ChatSession, bool]:
    """Start a new active conversation in a context; return it and whether it is new.

    The context's previous active session becomes inactive in the same transaction.
    A ``temporary`` one is never active (the context's active one stays so), never
    listed, and deleted TEMPORARY_CHAT_TTL after its last message. ``llm`` (checked by
    ``check_llm``) is the LLM that answers; without it a model's conversation follows
    its model's, a general one takes the user's default LLM. With a client-supplied
    ``session_id`` the call is idempotent (an existing conversation is returned as it
    is). Takes the user lock.
    """
    temporary = _check_temporary(temporary)
    llm = check_llm(llm) if llm is not None else ""
    model, run = selectors.context_resolve(user=user, model_id=model_id, run_id=run_id)
    session_id = selectors.parse_id(session_id, field="id") if session_id else None
    title = _check_title(title) if title else ""
    with transaction.atomic():
        lock_user(user)
        if session_id is not None:
            existing = _existing_for_client_uuid(
                user=user, session_id=session_id, model=model, run=run
            )
            if existing is not None:
                return existing, False
        session, _ = _create_session(
            user=user,
            model=model,
            run=run,
            session_id=session_id,
            title=title,
            temporary=temporary,
            llm=llm,
        )
        return session, True


@_retry_on_conflict
def conversation_resume(*, user, session_id) -> ChatSession:
    """Make a conversation the active one of its context; return it.

    Switching is not activity: ``updated_at``, ``last_message_at`` and the sidebar order
    stay as they were. Resuming an archived conversation brings it back from the archive.
    A temporary conversation is only opened: it never becomes active. Takes the user
    lock, then the session's row.
    """
    session_id = selectors.parse_id(session_id, field="session")
    with transaction.atomic():
        lock_user(user)
        session = (
            ChatSession.objects.for_user(user).select_for_update().filter(pk=session_id).first()
        )
        if session is None:
            raise ConversationNotFound()
        switched = not session.temporary and (not session.is_active or session.archived)
        if switched:
            _activate(session)
    if switched:
        logger.info("conversation %s resumed: user %s", session_id, user.pk)
    return selectors.session_get(user=user, session_id=session_id)


# conversation_update's "leave it as it is", where None (no folder) is a value.
UNCHANGED = object()


@_retry_on_conflict
def conversation_update(
    *,
    user,
    session_id,
    title: str | None = None,
    pinned=None,
    archived=None,
    tags: Sequence[str] | None = None,
    folder=UNCHANGED,
    llm: str | None = None,
) -> ChatSession:
    """Rename, pin/unpin, archive/unarchive, tag, file a conversation or choose its LLM;
    return it.

    A rename is the user's: auto-titling never overwrites it. Archiving deactivates.
    ``tags`` replaces the conversation's tags whole (``[]`` removes them all). ``folder``
    (one of the user's folders' ids, or None: no folder) files a general conversation
    that is kept (not temporary); someone else's folder is not found. Every value is
    checked before anything is written: bad input changes nothing. Takes the session's
    row lock before it touches a tag: every writer of a conversation's tags, and its
    deletion, takes that lock first. ``llm`` (``check_llm``) answers its next replies; ""
    goes back to the default: the model's LLM, or the user's default LLM.
    """
    changes = {}
    llm = check_llm(llm) if llm is not None else None
    if title is not None:
        changes["title"] = _check_title(title)
        changes["title_source"] = ChatSession.TitleSource.USER
    for name, value in (("pinned", pinned), ("archived", archived)):
        if value is not None:
            if not isinstance(value, bool):
                raise DomainError(f"{name} must be true or false.", field=name)
            changes[name] = value
    if changes.get("archived"):
        changes["is_active"] = False
    names = check_tags(tags) if tags is not None else None
    if folder is not UNCHANGED:
        changes["folder_id"] = _check_folder(user=user, folder_id=folder)
    session = selectors.session_get(user=user, session_id=session_id)
    if changes.get("folder_id") is not None and (
        session.context != Context.GENERAL or session.temporary
    ):
        raise DomainError(
            "Only a general conversation that is kept (not temporary) can go in a folder.",
            field="folder",
        )
    if llm is not None:
        changes["llm"] = llm or _default_llm(user=user, model=session.model)
    if changes or names is not None:
        changes["updated_at"] = timezone.now()
        with transaction.atomic():
            # The session's row lock, taken first, orders two replacements of one
            # conversation's tags (the last one wins whole, never a mix of both) and a
            # replacement and a deletion: none of them holds a tag's lock while it waits.
            if not ChatSession.objects.filter(pk=session.pk).update(**changes):
                raise ConversationNotFound()  # deleted meanwhile
            if names is not None:
                _replace_tags(session=session, names=names)
    return selectors.session_get(user=user, session_id=session_id)


def _announce_deleted_on_commit(session_ids: list) -> None:
    """Once the deletion commits, tell the streaming engine (it stops their replies)."""
    if session_ids:
        ids = [str(pk) for pk in session_ids]
        transaction.on_commit(lambda: signals.conversations_deleted.send(None, session_ids=ids))


@_retry_on_conflict
def conversation_delete(*, user, session_id) -> None:
    """Delete a conversation and its messages, stopping a reply in flight.

    Retried when a row added meanwhile (a tag, a message) still refers to it at commit.
    """
    session = selectors.session_get(user=user, session_id=session_id)
    pk, count = session.pk, session.message_count
    with transaction.atomic():
        # The row lock first, as every writer of its tags takes it (conversation_update):
        # Django deletes the tags before the row, and would otherwise hold their locks
        # while it waits for the row's.
        lock_sessions(ChatSession.objects.filter(pk=pk))
        session.delete()
        _announce_deleted_on_commit([pk])
    logger.info("conversation %s deleted: user %s, %d messages", pk, user.pk, count)


@_retry_on_conflict
def conversation_delete_all(*, user) -> int:
    """Delete every conversation of ``user``; return how many there were (retried as
    conversation_delete is)."""
    with transaction.atomic():
        ids = lock_sessions(ChatSession.objects.for_user(user))
        ChatSession.objects.filter(pk__in=ids).delete()
        _announce_deleted_on_commit(ids)
    logger.info("conversations deleted: user %s, all %d", user.pk, len(ids))
    return len(ids)


def conversations_delete_empty(*, older_than: timedelta, dry_run: bool = False) -> int:
    """Delete every user's conversations without messages created before ``older_than`` ago.

    Return how many were (or, with ``dry_run``, would be) deleted. Rows another
    transaction holds locked are being written right now and are skipped (PostgreSQL),
    so a conversation that is receiving its first message is never deleted.
    """
    if not isinstance(older_than, timedelta) or older_than < timedelta(0):
        raise DomainError("older_than must be a non-negative duration.", field="older_than")
    cutoff = timezone.now() - older_than
    candidates = ChatSession.objects.filter(created_at__lt=cutoff, message_count=0).exclude(
        Exists(Message.objects.filter(session=OuterRef("pk")))
    )
    if dry_run:
        return candidates.count()
    with transaction.atomic():
        locked = candidates.select_for_update(skip_locked=True).order_by("pk")
        ids = list(locked.values_list("pk", flat=True))
        _, per_model = ChatSession.objects.filter(pk__in=ids, message_count=0).delete()
    return per_model.get(ChatSession._meta.label, 0)


def conversations_delete_expired_temporary(
    *, ttl: timedelta | None = None, dry_run: bool = False, limit: int | None = TEMPORARY_BATCH
) -> int:
    """Delete every user's temporary conversations whose last message (or creation) is
    older than ``ttl`` (default TEMPORARY_CHAT_TTL), with their messages; return how many
    were (or, with ``dry_run``, would be) deleted.

    At most ``limit`` a call (None: all), oldest first: the sweep takes the rest on its
    next round. Rows another transaction holds locked (a message being sent into one) are
    skipped. Their replies in flight stop and their watchers are told, as when a person
    deletes a conversation.
    """
    if ttl is None:
        ttl = timedelta(seconds=settings.TEMPORARY_CHAT_TTL)
    # session_temporary: the temporary conversations alone, by age.
    expired = ChatSession.objects.filter(
        temporary=True, activity_at__lt=timezone.now() - max(ttl, timedelta(0))
    )
    if dry_run:
        return expired.count()
    with transaction.atomic():
        locked = expired.select_for_update(skip_locked=True).order_by("activity_at", "pk")
        ids = list(locked.values_list("pk", flat=True)[:limit])
        if ids:
            ChatSession.objects.filter(pk__in=ids).delete()
            _announce_deleted_on_commit(ids)
    if ids:
        logger.info("deleted %d expired temporary conversations", len(ids))
    return len(ids)


def conversations_detach(*, user, model: Model | None = None, run: Run | None = None) -> int:
    """Keep the conversations about a model or run being deleted; return how many.

    They become inactive and read-only, labelled with what they were about (invariant 5).
    Called inside the transaction that deletes it, before its rows go (chat/receivers.py):
    the deletion then clears their model and run (a deleted run's keep their model).
    Takes the user lock, like every function that changes which session of a context is
    active.
    """
    if (model is None) == (run is None):
        raise ValueError("detach the conversations of a model or of a run")
    if run is not None:
        sessions = ChatSession.objects.filter(run=run)
        label = f"Run #{run.pk} of {run.model.name} (deleted run)"
    else:
        sessions = ChatSession.objects.filter(model=model)
        label = f"{model.name} (deleted model)"
    with transaction.atomic():
        lock_user(user)
        return sessions.update(is_active=False, detached_label=label[:DETACHED_LABEL_MAX_CHARS])


IMPORTED_MESSAGE_FIELDS = (
    "role",
    "content",
    "status",
    "error",
    "llm",
    "prompt_tokens",
    "completion_tokens",
    "tools_used",
)


def conversation_import(
    *,
    user,
    messages: Sequence[Mapping],
    title: str = "",
    summary: str = "",
    pinned: bool = False,
    created_at: datetime | None = None,
    tags: Sequence[str] = (),
    current_leaf=None,
    imported_from: str = "",
) -> ChatSession:
    """Create a new, inactive general conversation holding ``messages``; return it.

    ``messages`` are checked Message fields (IMPORTED_MESSAGE_FIELDS, and ``created_at``
    when known), parents before children, as ``exports.check_import`` returns them: each
    may name its ``key`` and its ``parent`` (the key of a message before it, or None for
    a first turn); without keys each follows the one before. The current path ends at
    the message keyed ``current_leaf`` (default: the last). Messages keep their order even
    when their times are missing or out of order; the conversation's counters, preview
    and place in the sidebar follow its path. An imported title is the user's (never
    auto-titled); its ``tags`` are checked as ``check_tags`` does. ``imported_from`` names
    where the conversation came from (``chatgpt:<id>``): a second conversation of the user
    from the same place raises IntegrityError (constraint ``session_imported_once``). One
    transaction: a failure writes nothing, and the context's active conversation stays the
    active one.
    """
    names = check_tags(tags)
    now = timezone.now()
    created_at = created_at or now
    previous = created_at
    rows, parents, keys = [], [], []
    for index, fields in enumerate(messages):
        at = fields.get("created_at") or previous
        at = max(at, previous + timedelta(microseconds=1 if rows else 0))
        previous = at
        row = {name: fields[name] for name in IMPORTED_MESSAGE_FIELDS if name in fields}
        for name in ("content", "error", "llm"):
            row[name] = clean_text(row.get(name) or "")
        row["tools_used"] = clean_json(row.get("tools_used") or [])
        rows.append(Message(**row, created_at=at, updated_at=at, on_path=False))
        keys.append(fields.get("key", index))
        parents.append(fields["parent"] if "key" in fields else (keys[-2] if index else None))
    by_key = dict(zip(keys, range(len(rows)), strict=True))
    at = by_key[current_leaf] if current_leaf is not None else len(rows) - 1
    while at is not None and at >= 0:
        rows[at].on_path = True
        at = by_key[parents[at]] if parents[at] is not None else None
    path = [m for m in rows if m.on_path]
    last = path[-1] if path else None
    title = " ".join(clean_text(title).split())[:TITLE_MAX_CHARS]
    with transaction.atomic():
        session = ChatSession.objects.create(
            id=uuid.uuid4(),
            user=user,
            title=title,
            title_source=(
                ChatSession.TitleSource.USER if title else ChatSession.TitleSource.PROVISIONAL
            ),
            is_active=False,
            pinned=pinned,
            summary=clean_text(summary),
            preview=_preview(next((m.content for m in reversed(path) if m.content), "")),
            created_at=created_at,
            updated_at=now,
            last_message_at=last.created_at if last else None,
            activity_at=last.created_at if last else created_at,
            message_count=len(path),
            prompt_tokens=sum(m.prompt_tokens or 0 for m in rows),
            completion_tokens=sum(m.completion_tokens or 0 for m in rows),
            imported_from=imported_from,
        )
        for message in rows:
            message.session = session
        Message.objects.bulk_create(rows, batch_size=500)
        # The ids exist now: link each message to its parent.
        for message, parent in zip(rows, parents, strict=True):
            message.parent_id = rows[by_key[parent]].pk if parent is not None else None
        Message.objects.bulk_update(
            [m for m in rows if m.parent_id is not None], ["parent"], batch_size=500
        )
        _replace_tags(session=session, names=names)
    return session


@dataclass
class ImportResult:
    """What an import did: conversations imported, skipped (imported before), and those
    that could not be, each ``{"conversation": its title or id, "error": why}``."""

    imported: int = 0
    skipped: int = 0
    errors: list[dict] = field(default_factory=list)


def import_chatgpt(*, user, file, progress=None) -> ImportResult:
    """Import the conversations of a ChatGPT data export for ``user``; return what it did.

    ``file`` is ``conversations.json`` or the export zip, as bytes or a seekable binary
    file; chat.chatgpt reads it one conversation at a time and says what is kept of each
    (``progress`` as its ``read_export`` says). Each conversation becomes an inactive
    general conversation (``conversation_import``) remembering its ChatGPT id
    (``imported_from``): one the user imported before is skipped, also when a concurrent
    import wrote it first (its insert waits for that transaction on the unique index and
    fails; that conversation's savepoint is rolled back and it counts as skipped).

    One transaction for the file: one that is not a ChatGPT export raises DomainError
    and writes nothing, wherever it turns out not to be; a conversation that cannot be
    read (a cycle, a parent that is not in it, no id) is left out and named in ``errors``.
    """
    # chat.chatgpt reads the limits of chat.exports, which imports this module.
    from . import chatgpt

    result = ImportResult()
    with transaction.atomic():
        imported_before = set(
            ChatSession.objects.filter(
                user=user, imported_from__startswith=chatgpt.SOURCE
            ).values_list("imported_from", flat=True)
        )
        for raw in chatgpt.read_export(file, progress=progress):
            try:
                source = chatgpt.conversation_source(raw)
                if source in imported_before:
                    result.skipped += 1
                    continue
                fields = chatgpt.conversation_fields(raw)
            except chatgpt.BrokenConversation as exc:
                label = chatgpt.conversation_label(raw)
                result.errors.append({"conversation": label, "error": str(exc)})
                continue
            try:
                conversation_import(user=user, imported_from=source, **fields)
            except IntegrityError:
                if not ChatSession.objects.filter(user=user, imported_from=source).exists():
                    raise
                result.skipped += 1
            else:
                result.imported += 1
            imported_before.add(source)
    return result


def conversation_set_auto_title(*, session_id, title: str) -> str | None:
    """Store a generated title unless the user renamed the conversation.

    Return the title as stored, or None when nothing was stored.
    """
    title = " ".join(clean_text(str(title)).split()).strip("\"'")[:TITLE_MAX_CHARS]
    if not title:
        return None
    return title if sql.set_auto_title(session_id=session_id, title=title) else None


def conversation_set_summary(
    *, session_id, summary: str, until_message_id: int, message_count: int
) -> None:
    """Store the rolling summary of everything up to ``until_message_id``."""
    ChatSession.objects.filter(pk=session_id).update(
        summary=clean_text(summary),
        summary_until_id=until_message_id,
        summary_message_count=message_count,
    )


@dataclass(frozen=True)
class Reply:
    """What ``reply_start`` stored: the user's message and the assistant's placeholder."""

    session: ChatSession
    user_message: Message
    assistant_message: Message | None
    session_created: bool
    duplicate: bool
    first_message: bool
    # Replies abandoned by a dead writer that this send ended as interrupted.
    interrupted: tuple[int, ...] = ()
    # The messages the reply's context reads, when the send read them (prompting).
    recent: list[tuple[str, str]] | None = None


@_retry_on_conflict
def reply_start(
    *,
    user,
    content,
    session_id=None,
    model_id=None,
    run_id=None,
    client_id=None,
    writing: Collection[int] = (),
    temporary=False,
    llm=None,
    stored: Callable[[Reply], None] | None = None,
) -> Reply:
    """Store a user message and an empty ``streaming`` assistant reply to it.

    Without ``session_id`` the message goes to the context's active session (created if
    there is none); with an unknown ``session_id`` that id becomes a new conversation
    (the ephemeral chat's first message). ``temporary`` makes a conversation this send
    creates a temporary one (without ``session_id``: always a new one, the active one
    left alone); sending into an existing conversation ignores it. Sending into an
    inactive conversation makes it active, unless it is temporary (never active). The
    message follows the current leaf. The same ``client_id`` again returns
    the stored messages (``duplicate``). A reply still streaming in the conversation
    refuses the send, unless its writer is gone (not written for REPLY_LEASE seconds and
    not in ``writing``, the replies the caller's process is writing): then it is ended as
    interrupted first. ``llm`` (``check_llm``; None or "": unchanged) answers this reply
    and becomes the conversation's LLM. A spent daily quota refuses the send
    (``usage.check_quota``).

    One short transaction: the user lock (which serialises every send and context switch
    of ``user``), the session with its streaming reply and current leaf, two inserts and
    one update (on PostgreSQL two round trips: ``sql.lock_and_read``, ``sql.insert_turn``).
    The caller starts the generation once this returns (the transaction has committed).
    ``stored`` is called with the reply once it is stored, before the transaction
    commits (the streaming engine asks the LLM while it commits: streaming.prepare).
    """
    content = check_message_content(content)
    client_id = _check_client_id(client_id)
    temporary = _check_temporary(temporary)
    llm = check_llm(llm) if llm else None
    model, run = selectors.context_resolve(user=user, model_id=model_id, run_id=run_id)
    session_id = selectors.parse_id(session_id, field="session") if session_id else None
    lease_cutoff = timezone.now() - timedelta(seconds=REPLY_LEASE)
    try:
        return _reply_start(
            user=user,
            content=content,
            session_id=session_id,
            model=model,
            run=run,
            client_id=client_id,
            writing=writing,
            temporary=temporary,
            llm=llm,
            lease_cutoff=lease_cutoff,
            stored=stored,
        )
    except _AnotherOwner:
        # Someone else's conversation: an operator who joined it writes in person.
        return operator_message(
            user=user, session_id=session_id, content=content, client_id=client_id
        )


class _AnotherOwner(Exception):
    """The conversation a send names is not the sender's (``reply_start``)."""


def _reply_start(
    *,
    user,
    content,
    session_id,
    model,
    run,
    client_id,
    writing,
    temporary,
    llm,
    lease_cutoff,
    stored=None,
) -> Reply:
    model_pk, run_pk = (model.pk if model else None), (run.pk if run else None)
    with transaction.atomic():
        if session_id is None and temporary:
            own_quota, target = sql.lock_sender(user), None
        else:
            # The conversation named, else the context's active one.
            own_quota, target = sql.lock_and_read(
                user,
                session_id=session_id,
                model_id=model_pk,
                run_id=run_pk,
                lease_cutoff=lease_cutoff,
                client_id=client_id,
            )
        if session_id is not None:
            if target is not None and target.session.user_id != user.pk:
                raise _AnotherOwner()
            if target is not None and (
                (model and target.session.model_id != model_pk)
                or (run and target.session.run_id != run_pk)
            ):
                raise InvalidContext(
                    "That conversation belongs to another context.", field="session"
                )
        created = target is None
        deferred = None
        if created:
            session, deferred = _create_session(
                user=user,
                model=model,
                run=run,
                session_id=session_id,
                temporary=temporary,
                llm=llm or "",
                defer=True,
            )
            target = sql.SendTarget(session, None, False)
        reply = _store_turn(
            user=user,
            target=target,
            content=content,
            client_id=client_id,
            created=created,
            writing=writing,
            own_quota=own_quota,
            llm=llm,
            before=deferred,
        )
        if stored is not None:
            stored(reply)
        return reply


@_retry_on_conflict
def reply_edit(
    *, user, message_id, content, client_id=None, writing: Collection[int] = ()
) -> Reply:
    """Edit a user message: store a sibling with ``content`` and a reply to it.

    The sibling takes the edited message's place on the current path (the old branch
    stays, one version back); otherwise as ``reply_start`` (one generation at a time,
    the inactive conversation activated, ``client_id`` idempotent).
    """
    content = check_message_content(content)
    client_id = _check_client_id(client_id)
    with transaction.atomic():
        own_quota = sql.lock_sender(user)
        original, target = _turn_target(user=user, message_id=message_id)
        if original.role != Message.Role.USER:
            raise DomainError("Only a message you wrote can be edited.", field="message")
        return _store_turn(
            user=user,
            target=target,
            content=content,
            client_id=client_id,
            edited=original,
            writing=writing,
            own_quota=own_quota,
        )


@_retry_on_conflict
def reply_regenerate(*, user, message_id, writing: Collection[int] = ()) -> Reply:
    """Regenerate an assistant reply: store a sibling placeholder answering its question.

    The new reply takes the old one's place on the current path (the old one stays, one
    version back); one generation at a time, as ``reply_start``.
    """
    with transaction.atomic():
        own_quota = sql.lock_sender(user)
        original, target = _turn_target(user=user, message_id=message_id)
        if original.role != Message.Role.ASSISTANT:
            raise DomainError("Only an assistant reply can be regenerated.", field="message")
        question = (
            Message.objects.filter(pk=original.parent_id, role=Message.Role.USER).first()
            if original.parent_id is not None
            else None
        )
        if question is None:
            raise DomainError("This reply answers no question to ask again.", field="message")
        return _store_turn(
            user=user, target=target, question=question, writing=writing, own_quota=own_quota
        )


def _turn_target(*, user, message_id) -> tuple[Message, sql.SendTarget]:
    """Return one of ``user``'s messages and its conversation as a send reads it.

    Someone else's message is not found; the caller holds the user lock.
    """
    pk = selectors.parse_int_id(message_id, field="message")
    original = Message.objects.filter(pk=pk, session__user=user).first()
    if original is None:
        raise MessageNotFound()
    lease_cutoff = timezone.now() - timedelta(seconds=REPLY_LEASE)
    target = sql.session_by_id(original.session_id, lease_cutoff=lease_cutoff)
    return original, target


def _store_turn(
    *,
    user,
    target: sql.SendTarget,
    content: str | None = None,
    client_id: str | None = None,
    edited: Message | None = None,
    question: Message | None = None,
    created: bool = False,
    writing: Collection[int] = (),
    own_quota: int | None = None,
    llm: str | None = None,
    before: sql.Deferred | None = None,
) -> Reply:
    """Store a turn in a conversation whose user lock the caller holds: the three sends.

    A new question (``content``) follows the current leaf, or is a new version of
    ``edited`` (its sibling); with ``question`` only a new reply to it is stored (a
    regeneration). The current path moves to the new messages. The user's daily quota
    (their own, ``own_quota``, else the setting's) must not be spent (QuotaExceeded);
    ``llm`` (checked) becomes the conversation's LLM. The reply is written by the
    conversation's LLM (``ChatSession.effective_llm``). ``before``: the statements
    that create the conversation, sent with the turn's (``_create_session``'s defer).
    """
    session = target.session
    if session.user_id == user.pk:
        # The sender is the owner: the reply's prompt reads their custom instructions
        # from here, not from another query.
        session.user = user
    if session.detached_label:
        raise ConversationReadOnly()
    if client_id is not None and not created:
        if target.client_checked:  # read with the lock: a query only for a duplicate
            found = target.client_message_id
            previous = Message.objects.get(pk=found) if found is not None else None
        else:
            previous = Message.objects.filter(session=session, client_id=client_id).first()
        if previous is not None and previous.role != Message.Role.USER:
            raise ClientIdTaken(field="client_id")
        if previous is not None:
            reply = previous.children.filter(role=Message.Role.ASSISTANT).order_by("-pk").first()
            return Reply(session, previous, reply, False, True, False)
    # An operator is in the conversation: the owner's messages go to them, unanswered by
    # the assistant (SPEC 4.6); nothing asks the assistant for a new reply meanwhile.
    in_person = session.operators_present > 0
    if in_person and question is not None:
        raise OperatorPresent()
    interrupted: tuple[int, ...] = ()
    # (A reply still streaming when an operator joined does not hold the owner's words
    # back: they start no generation.)
    if target.streaming_id is not None and not in_person:
        if target.streaming_id in writing or not target.streaming_abandoned:
            metrics.REFUSALS.labels(GenerationInProgress.code).inc()
            raise GenerationInProgress()
        if reply_interrupt(message_id=target.streaming_id):
            interrupted = (target.streaming_id,)
    if not in_person:
        usage.check_quota(user_id=user.pk, own_limit=own_quota)
    chosen = llm if llm and llm != session.llm else None
    if chosen:
        session.llm = chosen
    # A temporary conversation is never active: the context's active one stays so.
    activate = not session.temporary and (not session.is_active or session.archived)
    if activate:
        _deactivate_context(
            user=user, model_id=session.model_id, run_id=session.run_id, keep_id=session.pk
        )
    branching = question is not None or edited is not None
    if branching:
        # The new version's parent becomes the leaf; the new messages follow it.
        _path_to(session=session, leaf_id=question.pk if question else edited.parent_id)
    # The counter says whether it is empty; rows made outside the services (fixtures)
    # keep no counter, so an empty one is checked (an index probe, LIMIT 1).
    first_message = not branching and (
        created
        or (
            session.message_count == 0
            and not Message.objects.filter(session=session, role=Message.Role.USER).exists()
        )
    )
    answering = session.effective_llm
    now = timezone.now()
    replied_at = now + timedelta(microseconds=1)
    if in_person:
        replied_at = now
    added = (1 if question is None else 0) + (0 if in_person else 1)
    asked = question.content if question is not None else content
    title = None if session.title else provisional_title(asked)
    preview = _preview(asked)
    if question is not None:
        parent_id = question.pk
    else:
        parent_id = edited.parent_id if edited else target.leaf_id
    user_message, assistant_message, recent = sql.insert_turn(
        session_id=session.pk,
        question=content if question is None else None,
        client_id=client_id,
        parent_id=parent_id,
        reply_llm=answering,
        at=now,
        replied_at=replied_at,
        preview=preview,
        title=title,
        activate=activate,
        llm=chosen,
        # The reply's context reads no message when this is the first question.
        recent=None if first_message or in_person else prompting.recent_read(session),
        reply=not in_person,
        before=before,
    )
    user_message = user_message or question
    if in_person:
        _announce_on_commit(session.pk, message=user_message, name=user.shown_name)
    session.message_count += added
    session.last_message_at = session.activity_at = replied_at
    session.updated_at = now
    session.preview = preview
    session.title = title or session.title
    if activate:
        session.is_active, session.archived = True, False
    return Reply(
        session,
        user_message,
        assistant_message,
        created,
        False,
        first_message,
        interrupted,
        recent,
    )


def _path_to(*, session: ChatSession, leaf_id: int | None) -> None:
    """Make the current path of ``session`` end at ``leaf_id`` (None: an empty path).

    The messages after the deepest one the old and new paths share leave the path, the
    new branch's messages join it, and the path's counter follows. A rolling summary
    that covered a message of the old branch is dropped: the next replies read the path,
    and a new summary of it is made when due. The caller holds the user lock.
    """
    shared, joining = None, []
    if leaf_id is not None:
        climb = sql.climb_to_path(leaf_id)
        shared = climb[-1][0] if climb[-1][1] else None
        joining = [pk for pk, on_path in climb if not on_path]
    leaving = Message.objects.filter(session_id=session.pk, on_path=True)
    if shared is not None:
        leaving = leaving.filter(pk__gt=shared)  # ids grow along a path
    if not leaving.update(on_path=False) and not joining:
        return
    Message.objects.filter(pk__in=joining).update(on_path=True)
    fields = {"message_count": Message.objects.filter(session_id=session.pk, on_path=True).count()}
    if session.summary_until_id is not None and (
        shared is None or session.summary_until_id > shared
    ):
        fields.update(summary="", summary_until_id=None, summary_message_count=0)
    ChatSession.objects.filter(pk=session.pk).update(**fields)
    for name, value in fields.items():
        setattr(session, name, value)


@_retry_on_conflict
def conversation_branch(*, user, session_id, message_id) -> ChatSession:
    """Move a conversation's current path through ``message_id`` to its newest leaf.

    Refused while a reply is being written in the conversation (the version switcher
    waits for it, as a send does). Takes the user lock.
    """
    session_id = selectors.parse_id(session_id, field="session")
    with transaction.atomic():
        lock_user(user)
        session = ChatSession.objects.for_user(user).filter(pk=session_id).first()
        if session is None:
            raise ConversationNotFound()
        message = selectors.message_get(session=session, message_id=message_id)
        if Message.objects.filter(session=session, status=Message.Status.STREAMING).exists():
            metrics.REFUSALS.labels(GenerationInProgress.code).inc()
            raise GenerationInProgress()
        leaf = Message.objects.get(pk=sql.newest_descendant(message.pk))
        _path_to(session=session, leaf_id=leaf.pk)
        if leaf.content:
            session.preview = _preview(leaf.content)
            ChatSession.objects.filter(pk=session.pk).update(preview=session.preview)
    return session


FEEDBACK_NOTE_MAX_CHARS = Feedback._meta.get_field("note").max_length


@_retry_on_conflict
def feedback_set(*, user, message_id, rating, note="") -> Feedback | None:
    """Store ``user``'s rating (``up``/``down``) of an assistant reply; None clears it."""
    pk = selectors.parse_int_id(message_id, field="message")
    message = Message.objects.filter(pk=pk, session__user=user).only("pk", "role").first()
    if message is None:
        raise MessageNotFound()
    if message.role != Message.Role.ASSISTANT:
        raise DomainError("Only an assistant reply can be rated.", field="message")
    if rating is None:
        Feedback.objects.filter(user=user, message=message).delete()
        return None
    if rating not in Feedback.Rating.values:
        raise DomainError('rating must be "up", "down" or null.', field="rating")
    if note is None:
        note = ""
    if not isinstance(note, str):
        raise DomainError("note must be a string.", field="note")
    note = clean_text(note).strip()
    if len(note) > FEEDBACK_NOTE_MAX_CHARS:
        raise DomainError(
            f"The note is longer than {FEEDBACK_NOTE_MAX_CHARS:,} characters.", field="note"
        )
    feedback, _ = Feedback.objects.update_or_create(
        user=user,
        message=message,
        defaults={"rating": rating, "note": note, "updated_at": timezone.now()},
    )
    return feedback


# People in the loop (SPEC 4.6, "Operators") -------------------------------------------
#
# The owner asks for a person (``handoff_request``); an operator (permission
# chat.operate_conversations) joins, writes in person and leaves. Each takes the owner's
# user lock, as the owner's sends do: a send sees an operator in the conversation or not,
# never half of a join. Their news reaches the conversation's watchers once committed.


def _announce_on_commit(
    session_id, *, message: Message | None = None, name: str = "", participant=None
):
    """Once the transaction commits, tell the conversation's watchers (the engine): a
    ``message`` a person wrote (``name``: theirs), or a ``participant`` change."""
    transaction.on_commit(
        lambda: signals.conversation_news.send(
            None, session_id=str(session_id), message=message, name=name, participant=participant
        )
    )


def _log_operator(*, operator, session: ChatSession, text: str) -> None:
    """Record an operator's act in the admin log (django.contrib.admin's LogEntry)."""
    from django.contrib.admin.models import CHANGE, LogEntry

    LogEntry.objects.log_actions(
        user_id=operator.pk,
        queryset=[session],
        action_flag=CHANGE,
        change_message=text,
        single_object=True,
    )


def operator_role_set(*, user, granted: bool) -> None:
    """Give ``user`` the operator role (the permission chat.operate_conversations), or
    take it back. An operator who loses it leaves the conversations they are in."""
    from django.contrib.auth.models import Permission

    app_label, codename = selectors.OPERATE.split(".")
    permission = Permission.objects.get(content_type__app_label=app_label, codename=codename)
    if granted:
        user.user_permissions.add(permission)
        return
    user.user_permissions.remove(permission)
    for session_id in Participant.objects.filter(user=user, left_at__isnull=True).values_list(
        "session_id", flat=True
    ):
        _leave(user=user, session_id=session_id)


@_retry_on_conflict
def handoff_request(*, user, session_id) -> ChatSession:
    """The owner asks for a person: the conversation joins the operator queue.

    Asking again while waiting, or while an operator is in, changes nothing (no second
    announcement). The assistant goes on answering until an operator joins.
    """
    session = selectors.session_get(user=user, session_id=session_id)
    if session.detached_label:
        raise ConversationReadOnly()
    with transaction.atomic():
        lock_user(user)
        session = ChatSession.objects.get(pk=session.pk)
        if session.handoff_requested_at is None and session.operators_present == 0:
            session.handoff_requested_at = timezone.now()
            ChatSession.objects.filter(pk=session.pk).update(
                handoff_requested_at=session.handoff_requested_at
            )
            _announce_on_commit(
                session.pk, participant={"action": "requested", "name": user.shown_name}
            )
    logger.info("conversation %s: a person asked for by user %s", session.pk, user.pk)
    return session


@_retry_on_conflict
def operator_join(*, user, session_id) -> ChatSession:
    """An operator joins a conversation: the assistant steps back until they leave.

    Joining again while in it changes nothing. Someone without the permission finds no
    conversation (404); one's own conversation cannot be joined.
    """
    session = selectors.session_for_operator(user=user, session_id=session_id)
    if session.user_id == user.pk:
        raise DomainError("This is your own conversation.", field="session")
    if session.detached_label:
        raise ConversationReadOnly()
    with transaction.atomic():
        sql.lock_user(session.user_id)
        _, joined = Participant.objects.get_or_create(
            session_id=session.pk, user=user, left_at=None
        )
        if joined:
            ChatSession.objects.filter(pk=session.pk).update(
                operators_present=F("operators_present") + 1
            )
            _announce_on_commit(
                session.pk, participant={"action": "joined", "name": user.shown_name}
            )
            _log_operator(operator=user, session=session, text="Joined the conversation.")
    if joined:
        logger.info("conversation %s: operator %s joined", session.pk, user.pk)
    session.refresh_from_db(fields=["operators_present", "handoff_requested_at"])
    return session


@_retry_on_conflict
def operator_leave(*, user, session_id) -> ChatSession:
    """An operator leaves: with the last one gone the assistant answers again, and the
    request for a person is done. Leaving a conversation one is not in changes nothing."""
    session = selectors.session_for_operator(user=user, session_id=session_id)
    left = _leave(user=user, session_id=session.pk)
    if left:
        logger.info("conversation %s: operator %s left", session.pk, user.pk)
    session.refresh_from_db(fields=["operators_present", "handoff_requested_at"])
    return session


def _leave(*, user, session_id) -> bool:
    """End ``user``'s visit of a conversation, if they are in it; return whether they were."""
    session = ChatSession.objects.filter(pk=session_id).first()
    if session is None:
        return False
    with transaction.atomic():
        sql.lock_user(session.user_id)
        left = Participant.objects.filter(
            session_id=session.pk, user=user, left_at__isnull=True
        ).update(left_at=timezone.now())
        if left:
            ChatSession.objects.filter(pk=session.pk).update(
                operators_present=Greatest(F("operators_present") - 1, 0)
            )
            ChatSession.objects.filter(pk=session.pk, operators_present=0).update(
                handoff_requested_at=None
            )
            # ``user``: whose sockets stop following the conversation (never sent out).
            _announce_on_commit(
                session.pk,
                participant={"action": "left", "name": user.shown_name, "user": user.pk},
            )
            _log_operator(operator=user, session=session, text="Left the conversation.")
    return bool(left)


@_retry_on_conflict
def operator_message(*, user, session_id, content, client_id=None) -> Reply:
    """Store a message an operator wrote in a conversation they joined; no reply follows.

    It follows the current leaf, as any new message; its author is the operator, shown by
    their name. The same ``client_id`` again returns the stored message. Someone not in
    the conversation (or without the permission) finds no conversation.
    """
    content = check_message_content(content)
    client_id = _check_client_id(client_id)
    session = selectors.session_readable(user=user, session_id=session_id)
    if session.user_id == user.pk:
        raise DomainError("This is your own conversation.", field="session")
    with transaction.atomic():
        sql.lock_user(session.user_id)
        if not Participant.objects.filter(
            session_id=session.pk, user=user, left_at__isnull=True
        ).exists():
            raise ConversationNotFound()  # left meanwhile
        if client_id is not None:
            previous = Message.objects.filter(session=session, client_id=client_id).first()
            if previous is not None and previous.author_id != user.pk:
                raise ClientIdTaken(field="client_id")
            if previous is not None:
                return Reply(session, previous, None, False, True, False)
        leaf = (
            Message.objects.filter(session=session, on_path=True)
            .order_by("-created_at", "-id")
            .values_list("pk", flat=True)
            .first()
        )
        now = timezone.now()
        message = Message.objects.create(
            session=session,
            role=Message.Role.OPERATOR,
            content=content,
            client_id=client_id,
            parent_id=leaf,
            author=user,
            author_name=user.shown_name,
            created_at=now,
            updated_at=now,
        )
        sql.session_after_send(
            session_id=session.pk,
            added=1,
            at=now,
            written_at=now,
            preview=_preview(content),
            title=None,
            activate=False,
        )
        _announce_on_commit(session.pk, message=message, name=message.author_name)
        _log_operator(operator=user, session=session, text=f"Wrote message {message.pk}.")
    logger.info("conversation %s: operator %s wrote message %s", session.pk, user.pk, message.pk)
    return Reply(session, message, None, False, False, False)


def replies_save_progress(*, contents: dict[int, str], alive: Collection[int] = ()) -> None:
    """Save the text so far of replies still streaming, and renew the lease of the rest.

    ``contents`` maps reply ids to their text; ``alive`` lists replies whose text did not
    change: their ``updated_at`` is the heartbeat that tells others a writer is alive.
    A reply that is no longer streaming is left as it is.
    """
    now = timezone.now()
    with transaction.atomic():
        for message_id, content in contents.items():
            sql.save_progress(message_id=message_id, content=clean_text(content), at=now)
        if alive:
            sql.renew(message_ids=list(alive), at=now)


def reply_finish(
    *,
    message_id: int,
    status: str,
    content: str | None = None,
    error: str = "",
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    tools_used: list | None = None,
) -> bool:
    """Store a reply's final status (and content); return False if it was already final.

    ``content=None`` keeps the text saved so far. The conversation's token totals, its
    last LLM and its preview follow the reply, and its tokens are added to the owner's
    usage of today (UTC) with its LLM (chat.usage), atomically: on PostgreSQL one
    statement, with no transaction of its own (``sql.finish_reply``).
    """
    if status == Message.Status.STREAMING:
        raise ValueError("a finished reply cannot be streaming")
    fields = {"status": status, "error": clean_text(error), "updated_at": timezone.now()}
    if content is not None:
        fields["content"] = content = clean_text(content)
    if prompt_tokens is not None or completion_tokens is not None:
        fields.update(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    if tools_used is not None:
        fields["tools_used"] = tools_used
    finish = functools.partial(
        sql.finish_reply,
        message_id=message_id,
        fields=fields,
        prompt_tokens=prompt_tokens or 0,
        completion_tokens=completion_tokens or 0,
        preview=_preview(content) if content else None,
        day=usage.today(),
    )
    if sql.finish_is_one_statement():
        return finish()
    with transaction.atomic():
        return finish()


def reply_interrupt(*, message_id: int) -> bool:
    """End a streaming reply as interrupted, keeping the text saved so far.

    The one ending of a reply whose writer is gone or that a shutdown cut short: status
    ``error``, error ``interrupted``. Return False if the reply was already final.
    """
    return reply_finish(message_id=message_id, status=Message.Status.ERROR, error=INTERRUPTED)


def replies_settle_abandoned(
    *, writing: Collection[int] = (), session_id=None
) -> list[tuple[int, str]]:
    """End as interrupted every streaming reply whose writer is gone; return them.

    A live writer renews its reply at least every REPLY_LEASE / 3 seconds, so a reply not
    written for REPLY_LEASE has none (its process died). ``writing`` lists the replies the
    caller's own process is writing; ``session_id`` limits it to one conversation.
    Returns (message id, session id) pairs, at most SETTLE_BATCH a call.
    """
    cutoff = timezone.now() - timedelta(seconds=REPLY_LEASE)
    rows = Message.objects.filter(status=Message.Status.STREAMING, updated_at__lt=cutoff)
    if session_id is not None:
        rows = rows.filter(session_id=session_id)
    rows = list(
        rows.exclude(pk__in=list(writing))
        .order_by("pk")
        .values_list("pk", "session_id")[:SETTLE_BATCH]
    )
    return [(pk, str(session)) for pk, session in rows if reply_interrupt(message_id=pk)]


# Share links (SPEC 4.6) -----------------------------------------------------------------

SHARE_TOKEN_BYTES = 32


@_retry_on_conflict
def share_create(*, user, session_id) -> tuple[str, ShareLink]:
    """Share a snapshot of one of ``user``'s conversations; return the link's token (to
    show once) and the link.

    The snapshot is the conversation as it is now (``selectors.share_snapshot``: the
    current path's questions and replies, nothing else). Sharing a shared conversation
    again takes a new snapshot under a new token, and the old link stops working: only a
    token's SHA-256 digest is stored, so the old one could not be shown again. A
    temporary conversation cannot be shared.
    """
    session = selectors.session_get(user=user, session_id=session_id)
    if session.temporary:
        raise DomainError("A temporary conversation cannot be shared.")
    token = secrets.token_urlsafe(SHARE_TOKEN_BYTES)
    with transaction.atomic():
        snapshot = selectors.share_snapshot(session=session)
        link, _ = ShareLink.objects.update_or_create(
            session=session,
            defaults={
                "user": user,
                "digest": selectors.share_digest(token),
                "title": session.title,
                "snapshot": snapshot,
                "created_at": timezone.now(),
            },
        )
    logger.info("conversation %s shared: user %s, %d messages", session.pk, user.pk, len(snapshot))
    return token, link


def share_revoke(*, user, session_id) -> None:
    """Revoke the share link of one of ``user``'s conversations: it answers 404 from now.

    A conversation that has none (or is someone else's) is not found.
    """
    session = selectors.session_get(user=user, session_id=session_id)
    deleted, _ = ShareLink.objects.filter(session=session).delete()
    if not deleted:
        raise ShareNotFound()
    logger.info("conversation %s unshared: user %s", session.pk, user.pk)


# Folders (SPEC 4.6) ---------------------------------------------------------------------

FOLDER_NAME_MAX_CHARS = Folder._meta.get_field("name").max_length
# The sidebar shows each folder's first conversations: a bound on folders bounds it.
FOLDERS_MAX = 100


def _check_folder_name(name) -> str:
    """Return a folder's name as stored (one line, whitespace collapsed), or raise."""
    if not isinstance(name, str):
        raise DomainError("name must be a string.", field="name")
    name = " ".join(clean_text(name).split())
    if not name:
        raise DomainError("The folder name is empty.", field="name")
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise DomainError("A folder name cannot hold control characters.", field="name")
    if len(name) > FOLDER_NAME_MAX_CHARS:
        raise DomainError(
            f"A folder name is at most {FOLDER_NAME_MAX_CHARS} characters.", field="name"
        )
    return name


def _check_folder(*, user, folder_id) -> int | None:
    """Return the id of one of ``user``'s folders (None: no folder); another is not found."""
    if folder_id is None:
        return None
    pk = selectors.parse_int_id(folder_id, field="folder")
    if not Folder.objects.filter(pk=pk, user=user).exists():
        raise FolderNotFound()
    return pk


def folder_create(*, user, name) -> Folder:
    """Create a folder of ``user``'s; at most FOLDERS_MAX each. Takes the user lock (the
    count and the insert of two concurrent creations are serialised)."""
    name = _check_folder_name(name)
    with transaction.atomic():
        lock_user(user)
        if Folder.objects.filter(user=user).count() >= FOLDERS_MAX:
            raise DomainError(f"You can have at most {FOLDERS_MAX} folders.", field="name")
        return Folder.objects.create(user=user, name=name)


def folder_rename(*, user, folder_id, name) -> Folder:
    """Rename one of ``user``'s folders; another's is not found."""
    name = _check_folder_name(name)
    pk = selectors.parse_int_id(folder_id, field="folder")
    if not Folder.objects.filter(pk=pk, user=user).update(name=name):
        raise FolderNotFound()
    return Folder.objects.get(pk=pk)


def folder_delete(*, user, folder_id) -> None:
    """Delete one of ``user``'s folders; its conversations are kept, in no folder."""
    pk = selectors.parse_int_id(folder_id, field="folder")
    deleted, _ = Folder.objects.filter(pk=pk, user=user).delete()
    if not deleted:
        raise FolderNotFound()
