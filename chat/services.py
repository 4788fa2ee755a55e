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
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, OperationalError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from models_app.models import Model, Run

from . import metrics, selectors, signals, sql
from .exceptions import (
    ConversationNotFound,
    ConversationReadOnly,
    DomainError,
    EmptyMessage,
    GenerationInProgress,
    InvalidContext,
    MessageNotFound,
    MessageTooLong,
)
from .models import ChatSession, Context, Feedback, Message, SessionTag
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


def _create_session(*, user, model, run, session_id=None, title="") -> ChatSession:
    """Create the active session of a context (caller holds the user lock)."""
    _deactivate_context(
        user=user, model_id=model.pk if model else None, run_id=run.pk if run else None
    )
    session = sql.insert_session(
        session_id=session_id or uuid.uuid4(),
        user_id=user.pk,
        model_id=model.pk if model else None,
        run_id=run.pk if run else None,
        title=title,
        at=timezone.now(),
    )
    # The model and run were read to resolve the context: no query to read them again.
    session.user, session.model, session.run = user, model, run
    transaction.on_commit(
        lambda: logger.info(
            "conversation %s created: user %s, %s context", session.pk, user.pk, session.context
        )
    )
    return session


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
    *, user, model_id=None, run_id=None, session_id=None, title: str = ""
) -> tuple[ChatSession, bool]:
    """Start a new active conversation in a context; return it and whether it is new.

    The context's previous active session becomes inactive in the same transaction.
    With a client-supplied ``session_id`` the call is idempotent. Takes the user lock.
    """
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
        return _create_session(
            user=user, model=model, run=run, session_id=session_id, title=title
        ), True


@_retry_on_conflict
def conversation_resume(*, user, session_id) -> ChatSession:
    """Make a conversation the active one of its context; return it.

    Switching is not activity: ``updated_at``, ``last_message_at`` and the sidebar order
    stay as they were. Resuming an archived conversation brings it back from the archive.
    Takes the user lock, then the session's row.
    """
    session_id = selectors.parse_id(session_id, field="session")
    with transaction.atomic():
        lock_user(user)
        session = (
            ChatSession.objects.for_user(user).select_for_update().filter(pk=session_id).first()
        )
        if session is None:
            raise ConversationNotFound()
        switched = not session.is_active or session.archived
        if switched:
            _activate(session)
    if switched:
        logger.info("conversation %s resumed: user %s", session_id, user.pk)
    return selectors.session_get(user=user, session_id=session_id)


@_retry_on_conflict
def conversation_update(
    *,
    user,
    session_id,
    title: str | None = None,
    pinned=None,
    archived=None,
    tags: Sequence[str] | None = None,
) -> ChatSession:
    """Rename, pin/unpin, archive/unarchive or tag a conversation; return it.

    A rename is the user's: auto-titling never overwrites it. Archiving deactivates.
    ``tags`` replaces the conversation's tags whole (``[]`` removes them all). Every
    value is checked before anything is written: bad input changes nothing. Takes the
    row locks of the conversation's tags (when ``tags`` is given), then the session's:
    the order in which deleting a conversation takes them.
    """
    changes = {}
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
    session = selectors.session_get(user=user, session_id=session_id)
    if changes or names is not None:
        changes["updated_at"] = timezone.now()
        with transaction.atomic():
            if names is not None:
                # Django deletes a conversation's tags before its row: locking them first
                # too means a deletion and a retag wait for each other, never deadlock.
                list(
                    SessionTag.objects.filter(session=session).select_for_update().values_list("pk")
                )
            # The session's row lock orders two replacements of one conversation's tags:
            # the last one wins whole, never a mix of both.
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
        session.delete()
        _announce_deleted_on_commit([pk])
    logger.info("conversation %s deleted: user %s, %d messages", pk, user.pk, count)


@_retry_on_conflict
def conversation_delete_all(*, user) -> int:
    """Delete every conversation of ``user``; return how many there were (retried as
    conversation_delete is)."""
    with transaction.atomic():
        ids = list(ChatSession.objects.for_user(user).values_list("pk", flat=True))
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
) -> ChatSession:
    """Create a new, inactive general conversation holding ``messages``; return it.

    ``messages`` are checked Message fields (IMPORTED_MESSAGE_FIELDS, and ``created_at``
    when known), parents before children, as ``exports.check_import`` returns them: each
    may name its ``key`` and its ``parent`` (the key of a message before it, or None for
    a first turn); without keys each follows the one before. The current path ends at
    the message keyed ``current_leaf`` (default: the last). Messages keep their order even
    when their times are missing or out of order; the conversation's counters, preview
    and place in the sidebar follow its path. An imported title is the user's (never
    auto-titled); its ``tags`` are checked as ``check_tags`` does. One transaction: a
    failure writes nothing, and the context's active conversation stays the active one.
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
) -> Reply:
    """Store a user message and an empty ``streaming`` assistant reply to it.

    Without ``session_id`` the message goes to the context's active session (created if
    there is none); with an unknown ``session_id`` that id becomes a new conversation
    (the ephemeral chat's first message). Sending into an inactive conversation makes it
    active. The message follows the current leaf. The same ``client_id`` again returns
    the stored messages (``duplicate``). A reply still streaming in the conversation
    refuses the send, unless its writer is gone (not written for REPLY_LEASE seconds and
    not in ``writing``, the replies the caller's process is writing): then it is ended as
    interrupted first.

    One short transaction: the user lock (which serialises every send and context switch
    of ``user``), the session with its streaming reply, two inserts and one update.
    The caller starts the generation once this returns (the transaction has committed).
    """
    content = check_message_content(content)
    client_id = _check_client_id(client_id)
    model, run = selectors.context_resolve(user=user, model_id=model_id, run_id=run_id)
    session_id = selectors.parse_id(session_id, field="session") if session_id else None
    model_pk, run_pk = (model.pk if model else None), (run.pk if run else None)
    lease_cutoff = timezone.now() - timedelta(seconds=REPLY_LEASE)
    with transaction.atomic():
        sql.lock_user(user.pk)
        if session_id is not None:
            target = sql.session_by_id(session_id, lease_cutoff=lease_cutoff)
            if target is not None and target.session.user_id != user.pk:
                raise ConversationNotFound()
            if target is not None and (
                (model and target.session.model_id != model_pk)
                or (run and target.session.run_id != run_pk)
            ):
                raise InvalidContext(
                    "That conversation belongs to another context.", field="session"
                )
        else:
            target = sql.session_active(
                user_id=user.pk, model_id=model_pk, run_id=run_pk, lease_cutoff=lease_cutoff
            )
        created = target is None
        if created:
            session = _create_session(user=user, model=model, run=run, session_id=session_id)
            target = sql.SendTarget(session, None, False)
        return _store_turn(
            user=user,
            target=target,
            content=content,
            client_id=client_id,
            created=created,
            writing=writing,
        )


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
        sql.lock_user(user.pk)
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
        )


@_retry_on_conflict
def reply_regenerate(*, user, message_id, writing: Collection[int] = ()) -> Reply:
    """Regenerate an assistant reply: store a sibling placeholder answering its question.

    The new reply takes the old one's place on the current path (the old one stays, one
    version back); one generation at a time, as ``reply_start``.
    """
    with transaction.atomic():
        sql.lock_user(user.pk)
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
        return _store_turn(user=user, target=target, question=question, writing=writing)


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
) -> Reply:
    """Store a turn in a conversation whose user lock the caller holds: the three sends.

    A new question (``content``) follows the current leaf, or is a new version of
    ``edited`` (its sibling); with ``question`` only a new reply to it is stored (a
    regeneration). The current path moves to the new messages.
    """
    session = target.session
    if session.detached_label:
        raise ConversationReadOnly()
    if client_id is not None and not created:
        previous = Message.objects.filter(
            session=session, client_id=client_id, role=Message.Role.USER
        ).first()
        if previous is not None:
            reply = previous.children.filter(role=Message.Role.ASSISTANT).order_by("-pk").first()
            return Reply(session, previous, reply, False, True, False)
    interrupted: tuple[int, ...] = ()
    if target.streaming_id is not None:
        if target.streaming_id in writing or not target.streaming_abandoned:
            metrics.REFUSALS.labels(GenerationInProgress.code).inc()
            raise GenerationInProgress()
        if reply_interrupt(message_id=target.streaming_id):
            interrupted = (target.streaming_id,)
    activate = not session.is_active or session.archived
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
    llm = session.model.effective_llm if session.model_id else settings.LLM_MODEL
    now = timezone.now()
    replied_at = now + timedelta(microseconds=1)
    if question is None:
        user_message = sql.insert_message(
            session_id=session.pk,
            role=Message.Role.USER,
            content=content,
            status=Message.Status.COMPLETE,
            client_id=client_id,
            parent_id=edited.parent_id if edited else None,
            after_leaf=edited is None,
            at=now,
        )
    else:
        user_message = question
    assistant_message = sql.insert_message(
        session_id=session.pk,
        role=Message.Role.ASSISTANT,
        content="",
        status=Message.Status.STREAMING,
        llm=llm,
        parent_id=user_message.pk,
        at=replied_at,
        written_at=now,
    )
    added = 1 if question is not None else 2
    title = None if session.title else provisional_title(user_message.content)
    preview = _preview(user_message.content)
    sql.session_after_send(
        session_id=session.pk,
        added=added,
        at=replied_at,
        written_at=now,
        preview=preview,
        title=title,
        activate=activate,
    )
    session.message_count += added
    session.last_message_at = session.activity_at = replied_at
    session.updated_at = now
    session.preview = preview
    session.title = title or session.title
    session.is_active, session.archived = True, False
    return Reply(
        session, user_message, assistant_message, created, False, first_message, interrupted
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
    last LLM and its preview follow the reply.
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
    with transaction.atomic():
        if not sql.finish_message(message_id=message_id, fields=fields):
            return False
        if prompt_tokens or completion_tokens or content:
            sql.session_after_finish(
                message_id=message_id,
                prompt_tokens=prompt_tokens or 0,
                completion_tokens=completion_tokens or 0,
                preview=_preview(content) if content else None,
            )
    return True


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
