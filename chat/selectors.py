"""Reads. Every selector is scoped to a user: another user's rows do not exist here.

The exceptions, at the end, are the streaming engine's reads of a conversation whose
access its caller has already checked, the public page of a share link (found by its
token), and the operators' reads across every user (chat/reports.py has the health and
usage figures).
"""

import hashlib
import re
import unicodedata
import uuid
from collections.abc import Sequence
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import (
    Case,
    Count,
    F,
    FloatField,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
    Window,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, RowNumber

from core.ids import parse_int_id
from models_app import selectors as model_selectors
from models_app.models import Model, Run

from .exceptions import ConversationNotFound, DomainError, FolderNotFound, MessageNotFound
from .models import (
    ATTACHED,
    CONTEXT_FILTERS,
    PREFETCHED_TAGS,
    ChatSession,
    Context,
    Feedback,
    Folder,
    Message,
    Participant,
    SessionTag,
    ShareLink,
)
from .text import REPLACEMENT, clean_text

MESSAGE_PAGE_MAX = 200
TAG_MAX_CHARS = SessionTag._meta.get_field("name").max_length
# Longer than any name that normalises to TAG_MAX_CHARS: refused before it is read.
TAG_INPUT_MAX_CHARS = 1000


def parse_id(value, *, field: str = "id", kind: str = "conversation") -> uuid.UUID:
    """Return ``value`` as a UUID, or raise a clear error naming the field."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        raise DomainError(f"'{value}' is not a valid {kind} id.", field=field) from None


def parse_tag(value, *, field: str = "tag") -> str:
    """Return ``value`` as a tag name is stored, or raise a clear error naming the field.

    A name is NFKC-normalised, lowercased, its runs of whitespace made one space, and then
    1 to TAG_MAX_CHARS characters long. Control characters, lone surrogates and U+FFFD
    (what the API's parser makes of NUL and lone surrogates) are refused, not replaced:
    a label with a hole in it is not one anybody typed.
    """
    if not isinstance(value, str):
        raise DomainError("A tag must be a string.", field=field)
    if len(value) > TAG_INPUT_MAX_CHARS:
        raise DomainError(f"A tag is longer than {TAG_MAX_CHARS} characters.", field=field)
    for char in value:
        if char == REPLACEMENT or (
            unicodedata.category(char) in ("Cc", "Cs") and not char.isspace()
        ):
            raise DomainError("A tag cannot contain control characters or U+FFFD.", field=field)
    name = " ".join(unicodedata.normalize("NFKC", value).lower().split())
    if not name:
        raise DomainError("A tag is empty.", field=field)
    if len(name) > TAG_MAX_CHARS:
        raise DomainError(f"A tag is longer than {TAG_MAX_CHARS} characters.", field=field)
    return name


def context_resolve(*, user, model_id=None, run_id=None) -> tuple[Model | None, Run | None]:
    """Return the (model, run) of a context, checked for ownership and consistency.

    A run without a model implies the run's model; a run of another model is refused.
    """
    model = (
        model_selectors.model_get(user=user, model_id=model_id)
        if model_id not in (None, "")
        else None
    )
    run = model_selectors.run_get(user=user, run_id=run_id) if run_id not in (None, "") else None
    if run is not None:
        if model is None:
            model = run.model
        elif run.model_id != model.id:
            raise DomainError("That run does not belong to that model.", field="run")
    return model, run


def tags_prefetch() -> Prefetch:
    """Return the prefetch of sessions' tags that ``ChatSession.tag_names`` reads."""
    return Prefetch("tags", queryset=SessionTag.objects.order_by("name"), to_attr=PREFETCHED_TAGS)


def session_get(*, user, session_id) -> ChatSession:
    session = (
        ChatSession.objects.for_user(user)
        .select_related("model", "run")
        .filter(pk=parse_id(session_id, field="session"))
        .first()
    )
    if session is None:
        raise ConversationNotFound()
    return session


# People in the loop (SPEC 4.6, "Operators") ---------------------------------------------

OPERATE = "chat.operate_conversations"
QUEUE_LIMIT = 100


def can_operate(user) -> bool:
    """Whether ``user`` may join other people's conversations (the permission; a
    superuser has every one)."""
    return bool(
        user is not None and user.is_authenticated and user.is_active and user.has_perm(OPERATE)
    )


def session_for_operator(*, user, session_id) -> ChatSession:
    """Return any conversation for an operator to join; 404 for anyone without the
    permission, staff included."""
    if not can_operate(user):
        raise ConversationNotFound()
    session = (
        ChatSession.objects.select_related("user")
        .filter(pk=parse_id(session_id, field="session"))
        .first()
    )
    if session is None:
        raise ConversationNotFound()
    return session


def session_readable(*, user, session_id) -> ChatSession:
    """Return a conversation ``user`` may read and write in: their own, or one they joined
    as an operator (with the permission). Anyone else gets 404."""
    pk = parse_id(session_id, field="session")
    session = ChatSession.objects.select_related("model", "run", "user").filter(pk=pk).first()
    if session is None:
        raise ConversationNotFound()
    if session.user_id == user.pk:
        return session
    if (
        session.operators_present
        and Participant.objects.filter(session=session, user=user, left_at__isnull=True).exists()
        and can_operate(user)
    ):
        return session
    raise ConversationNotFound()


def operator_queue(*, query: str = "", limit: int = QUEUE_LIMIT) -> list[ChatSession]:
    """Return the conversations whose owner asked for a person, newest request first,
    each with its owner and ``operators`` (the operators in it now); ``query`` matches
    the owner's username or display name."""
    sessions = ChatSession.objects.filter(handoff_requested_at__isnull=False).select_related("user")
    query = query.strip()
    if query:
        sessions = sessions.filter(
            Q(user__username__icontains=query) | Q(user__display_name__icontains=query)
        )
    sessions = list(sessions.order_by("-handoff_requested_at", "-pk")[:limit])
    present = operators_in([s.pk for s in sessions])
    for session in sessions:
        session.operators = present.get(session.pk, [])
    return sessions


def queue_waiting() -> int:
    """How many conversations wait for a person (asked, and no operator in them yet)."""
    return ChatSession.objects.filter(
        handoff_requested_at__isnull=False, operators_present=0
    ).count()


def operators_in(session_ids) -> dict:
    """Return, for each conversation, the operators in it now (users, by joining time)."""
    present: dict = {}
    for row in _present(session_ids):
        present.setdefault(row.session_id, []).append(row.user)
    return present


def _present(session_ids):
    """The open visits of operators to these conversations, with their users, by joining
    time."""
    return (
        Participant.objects.filter(session_id__in=list(session_ids), left_at__isnull=True)
        .select_related("user")
        .order_by("joined_at", "pk")
    )


def participants(*, session: ChatSession) -> list[dict]:
    """Return who takes part in a conversation: its owner, the assistant, and each
    operator in it now (``kind``, ``name``; an operator with ``joined_at``)."""
    people = [
        {"kind": "user", "name": session.user.shown_name},
        {"kind": "assistant", "name": "Assistant"},
    ]
    people += [
        {"kind": "operator", "name": row.user.shown_name, "joined_at": row.joined_at}
        for row in _present([session.pk])
    ]
    return people


def session_active(*, user, model_id=None, run_id=None) -> ChatSession | None:
    """Return the active session of a context, or None."""
    return (
        ChatSession.objects.for_user(user)
        .in_context(model_id=model_id, run_id=run_id)
        .filter(is_active=True)
        .select_related("model", "run")
        .first()
    )


def session_list(
    *,
    user,
    context: str | None = None,
    model_id=None,
    run_id=None,
    archived: bool | None = False,
    tag: str | None = None,
    with_tags: bool = False,
) -> QuerySet[ChatSession]:
    """Return the user's sessions, pinned first, then by most recent activity.

    Temporary conversations are never listed (nor searched, counted or exported in bulk:
    everything that lists goes through here). ``context`` is general, model, run or
    detached (the model or run was deleted);
    ``archived=None`` lists both archived and not; ``tag`` keeps those carrying that tag
    (any case: it is read as parse_tag stores it). ``with_tags`` prefetches every
    session's tags: one more query, however many sessions (``iterator()`` then needs a
    ``chunk_size``).
    """
    qs = ChatSession.objects.for_user(user).filter(temporary=False).select_related("model", "run")
    if with_tags:
        qs = qs.prefetch_related(tags_prefetch())
    if tag not in (None, ""):
        tagged = SessionTag.objects.filter(user=user, name=parse_tag(tag))
        qs = qs.filter(pk__in=tagged.values("session_id"))
    if archived is not None:
        # "archived = %s", not the "NOT archived" Django writes for False: SQLite reads an
        # index column only from a comparison, and without it sorts all the user's sessions
        # instead of reading session_sidebar (or a group's index) in order.
        qs = qs.filter(archived=Value(archived))
    if context is not None:
        if context not in Context.values:
            raise DomainError(
                f"context must be one of {', '.join(Context.values)}.", field="context"
            )
        qs = qs.of_context(context)
    if model_id not in (None, ""):
        qs = qs.filter(model_id=parse_int_id(model_id, field="model"))
    if run_id not in (None, ""):
        qs = qs.filter(run_id=parse_int_id(run_id, field="run"))
    return qs.order_by("-pinned", "-activity_at", "-id")


def message_page(
    *, session: ChatSession, before_id=None, limit: int = 50
) -> tuple[list[Message], bool]:
    """Return up to ``limit`` messages of the current path before ``before_id``, oldest
    first, and has_more.

    Keyset pagination over (created_at, id) on the path's index: constant cost however
    deep the page or the tree.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise DomainError("limit must be a positive integer.", field="limit")
    limit = min(limit, MESSAGE_PAGE_MAX)
    qs = Message.objects.filter(session=session, on_path=True)
    if before_id not in (None, ""):
        anchor = (
            Message.objects.filter(session=session, pk=parse_int_id(before_id, field="before"))
            .values("created_at", "id")
            .first()
        )
        if anchor is None:
            raise DomainError("before is not a message of this conversation.", field="before")
        qs = qs.filter(created_at__lte=anchor["created_at"]).exclude(
            created_at=anchor["created_at"], id__gte=anchor["id"]
        )
    rows = list(qs.order_by("-created_at", "-id")[: limit + 1])
    has_more = len(rows) > limit
    return rows[:limit][::-1], has_more


def message_list(*, session: ChatSession, path_only: bool = False) -> QuerySet[Message]:
    """Return every message of ``session`` (the whole tree, or its current path), in order.

    In id order: a message comes after its parent.
    """
    qs = Message.objects.filter(session=session)
    if path_only:
        qs = qs.filter(on_path=True)
    return qs.order_by("id")


def message_details(messages: Sequence[Message], *, user) -> None:
    """Give each of ``messages`` (one conversation's) what its API object and the page
    show beyond its fields: ``versions`` (its siblings' ids, itself included, in creation
    order), ``version_index`` (1-based), ``version_prev`` and ``version_next`` (the ids of
    the versions beside it, or None) and ``my_feedback`` (``user``'s rating, or None).
    Two queries, however many messages.
    """
    versions = message_versions(messages)
    ratings = dict(
        Feedback.objects.filter(user=user, message__in=[m.pk for m in messages]).values_list(
            "message_id", "rating"
        )
    )
    for message in messages:
        ids = versions.get(message.pk, [message.pk])
        index = ids.index(message.pk)
        message.versions = ids
        message.version_index = index + 1
        message.version_prev = ids[index - 1] if index > 0 else None
        message.version_next = ids[index + 1] if index + 1 < len(ids) else None
        message.my_feedback = ratings.get(message.pk)


def message_versions(messages: Sequence[Message]) -> dict[int, list[int]]:
    """Return, for each of ``messages`` (one conversation's), the ids of its versions.

    The versions of a message are its siblings and itself (the children of its parent),
    in creation order. One query, on the parent index (and the first turns' index).
    """
    if not messages:
        return {}
    session_id = messages[0].session_id
    parents = {m.parent_id for m in messages}
    children: dict[int | None, list[int]] = {}
    siblings = Q(parent_id__in=[p for p in parents if p is not None])
    if None in parents:
        siblings |= Q(session_id=session_id, parent__isnull=True)
    found = Message.objects.filter(siblings).order_by().values_list("pk", "parent_id")
    for pk, parent_id in sorted(found):
        children.setdefault(parent_id, []).append(pk)
    return {m.pk: children.get(m.parent_id, [m.pk]) for m in messages}


def message_get(*, session: ChatSession, message_id) -> Message:
    """Return one message of ``session``; any other id is not found."""
    message = Message.objects.filter(
        session=session, pk=parse_int_id(message_id, field="message")
    ).first()
    if message is None:
        raise MessageNotFound()
    return message


SIDEBAR_PAGE = 30
# Far past any real sidebar, and small enough for every database's OFFSET.
SIDEBAR_OFFSET_MAX = 1_000_000


# A sidebar group by its key: general, each model with its run conversations (the model's
# id), detached (the conversations of deleted models and runs).
GROUP_GENERAL = 0
GROUP_DETACHED = -1

# The first sessions of one sidebar group: its conversations in sidebar order, with
# ``{group}`` their condition and ``{lead}`` a column constant in the group (or nothing).
# Temporary conversations are in none.
_SIDEBAR_GROUP_FIRST = (
    f"SELECT s.id FROM {ChatSession._meta.db_table} s"
    " WHERE s.user_id = %s AND s.archived = %s AND s.temporary = %s AND {group}"
    " ORDER BY {lead}s.pinned DESC, s.activity_at DESC, s.id DESC LIMIT %s"
)


def _sidebar_group_key():
    """Return the expression of a session's sidebar group key (GROUP_*, or its model's id)."""
    return Case(
        When(CONTEXT_FILTERS[Context.DETACHED], then=Value(GROUP_DETACHED)),
        When(CONTEXT_FILTERS[Context.GENERAL], then=Value(GROUP_GENERAL)),
        default=F("model_id"),
        output_field=IntegerField(),
    )


def _sidebar_first_ids(*, user, per_group: int, archived: bool) -> RawSQL:
    """Return the ids of the first ``per_group`` sessions of every sidebar group, as SQL.

    One branch per group, each reading its group in sidebar order off an index and
    stopping after ``per_group`` rows: the cost is the page's, however many conversations
    the user has. General (outside folders) and each folder read session_sidebar_folder
    (general conversations by folder), the models' groups session_sidebar_group (attached
    conversations by model), detached session_sidebar_detached. The models and folders
    are the user's (a conversation's model or folder is its owner's: context_resolve,
    services.conversation_update); PostgreSQL reads each one's first sessions in a
    LATERAL join, SQLite, which has none, in a correlated ``IN`` that it runs once per
    model or folder.
    """
    # Attached without a model is general (a run implies its model: session_run_implies_model).
    # folder_id, constant in the group, leads its order so that only the group's index reads
    # it in order: the planner, from the whole table's statistics, might otherwise walk
    # session_sidebar through every other group's conversations to find this one's.
    general = _SIDEBAR_GROUP_FIRST.format(
        group="s.detached_label = '' AND s.model_id IS NULL AND s.folder_id IS NULL",
        lead="s.folder_id, ",
    )
    detached = _SIDEBAR_GROUP_FIRST.format(group="NOT (s.detached_label = '')", lead="")
    of_model = _SIDEBAR_GROUP_FIRST.format(
        group="s.detached_label = '' AND s.model_id = m.id", lead=""
    )
    of_folder = _SIDEBAR_GROUP_FIRST.format(
        group="s.detached_label = '' AND s.model_id IS NULL AND s.folder_id = f.id", lead=""
    )
    table = ChatSession._meta.db_table
    if connection.vendor == "postgresql":
        per_model = f"CROSS JOIN LATERAL ({of_model}) p"
        per_folder = f"CROSS JOIN LATERAL ({of_folder}) q"
    else:
        per_model = f"JOIN {table} p ON p.id IN ({of_model})"
        per_folder = f"JOIN {table} q ON q.id IN ({of_folder})"
    sql = (
        f"SELECT id FROM ({general}) general"
        f" UNION ALL SELECT id FROM ({detached}) detached"
        f" UNION ALL SELECT p.id FROM {Model._meta.db_table} m {per_model} WHERE m.owner_id = %s"
        f" UNION ALL SELECT q.id FROM {Folder._meta.db_table} f {per_folder} WHERE f.user_id = %s"
    )
    group = [user.pk, archived, False, per_group]
    return RawSQL(sql, [*group, *group, *group, user.pk, *group, user.pk])


def sidebar_sessions(
    *, user, per_group: int = SIDEBAR_PAGE, archived: bool = False, tag: str | None = None
) -> list:
    """Return the first ``per_group`` sessions of every sidebar group, in two queries.

    Groups: general, each folder, each model (its run conversations included), detached;
    each session carries ``group_key`` and its tags (prefetched: the second query). A
    general conversation in a folder is in its folder's group (its ``folder_id``; its
    ``group_key`` is general's), not in general. The list is in
    sidebar order, pinned first, then most recent activity, and so is each group.
    Without ``tag``, each group's first sessions are read off an index
    (``_sidebar_first_ids``): as many rows read as shown. With ``tag``, the sessions
    carrying it (found by session_tag_by_user, as many as there are) are ranked in their
    groups and the first of each kept.
    """
    per_group = max(per_group, 0)
    if tag in (None, ""):
        first = _sidebar_first_ids(user=user, per_group=per_group, archived=bool(archived))
        # By primary key alone: with the user's filters beside it, the database may read
        # every one of the user's conversations to find these.
        qs = (
            ChatSession.objects.filter(pk__in=first)
            .select_related("model", "run")
            .prefetch_related(tags_prefetch())
            .order_by("-pinned", "-activity_at", "-id")
            .annotate(group_key=_sidebar_group_key())
        )
    else:
        qs = session_list(user=user, archived=archived, tag=tag, with_tags=True).annotate(
            group_key=_sidebar_group_key(),
            group_rank=Window(
                RowNumber(),
                partition_by=[_sidebar_group_key(), F("folder_id")],
                order_by=[F("pinned").desc(), F("activity_at").desc(), F("id").desc()],
            ),
        )
        qs = qs.filter(group_rank__lte=per_group)
    return list(qs)


def sidebar_group_page(
    *,
    user,
    group: str,
    offset: int,
    limit: int = SIDEBAR_PAGE,
    archived: bool = False,
    tag: str | None = None,
) -> tuple[list, bool]:
    """Return one further page of a sidebar group (general, detached, model-<id> or
    folder-<id>).

    In sidebar order, read off the group's index (session_sidebar_folder,
    session_sidebar_group or session_sidebar_detached). With ``tag``, of the group's
    sessions carrying that tag; each session's tags are prefetched.
    """
    filters = {"user": user, "archived": archived, "tag": tag, "with_tags": True}
    if (
        isinstance(offset, bool)
        or not isinstance(offset, int)
        or not 0 <= offset <= SIDEBAR_OFFSET_MAX
    ):
        raise DomainError(
            f"offset must be an integer from 0 to {SIDEBAR_OFFSET_MAX}.", field="offset"
        )
    if group == Context.GENERAL or group.startswith("folder-"):
        folder = (
            None
            if group == Context.GENERAL
            else parse_int_id(group.removeprefix("folder-"), field="group")
        )
        # folder_id, constant in the group, leads the order as in _sidebar_first_ids: the
        # page is read off session_sidebar_folder, never found among other groups' sessions.
        qs = session_list(context=Context.GENERAL, **filters).filter(folder_id=folder)
        qs = qs.order_by("folder_id", "-pinned", "-activity_at", "-id")
    elif group == Context.DETACHED:
        qs = session_list(context=group, **filters)
    elif group.startswith("model-"):
        qs = session_list(model_id=group.removeprefix("model-"), **filters)
        qs = qs.filter(ATTACHED)
    else:
        raise DomainError("Unknown sidebar group.", field="group")
    rows = list(qs[offset : offset + limit + 1])
    return rows[:limit], len(rows) > limit


def tag_counts(*, user, archived: bool | None = False) -> list[dict]:
    """Return the user's tags, by name, each with how many of their sessions carry it.

    ``archived`` is session_list's: each count is what ``session_list(tag=name)`` with the
    same ``archived`` lists. Another user's tags are not counted nor listed.
    """
    qs = SessionTag.objects.filter(user=user, session__temporary=False)
    if archived is not None:
        qs = qs.filter(session__archived=archived)
    return list(qs.values("name").annotate(count=Count("id")).order_by("name"))


def folder_list(*, user) -> list[Folder]:
    """Return the user's folders, by name."""
    return list(Folder.objects.filter(user=user).order_by("name", "id"))


def folder_get(*, user, folder_id) -> Folder:
    """Return one of the user's folders; any other id is not found."""
    folder = Folder.objects.filter(user=user, pk=parse_int_id(folder_id, field="folder")).first()
    if folder is None:
        raise FolderNotFound()
    return folder


def share_list(*, user) -> list[ShareLink]:
    """Return the user's share links, newest first: each one's conversation (``session_id``),
    title when shared and time (never a token: only their digests are stored)."""
    return list(
        ShareLink.objects.filter(user=user)
        .order_by("-created_at", "-id")
        .only("session_id", "title", "created_at")
    )


def share_get(*, session: ChatSession) -> ShareLink | None:
    """Return the share link of one of the user's conversations, if it has one."""
    return ShareLink.objects.filter(session=session).only("created_at").first()


def share_snapshot(*, session: ChatSession) -> list[dict]:
    """Return what a share link of ``session`` shows: its current path's questions and
    replies with text (a reply being written is left out), each ``{"role", "content",
    "created_at"}`` (ISO 8601), in order. No other branch, no tool call, no error text."""
    rows = (
        Message.objects.filter(
            session=session,
            on_path=True,
            role__in=[Message.Role.USER, Message.Role.ASSISTANT],
        )
        .exclude(content="")
        .exclude(status=Message.Status.STREAMING)
        .order_by("created_at", "id")
        .values_list("role", "content", "created_at")
    )
    return [
        {"role": role, "content": content, "created_at": at.isoformat()}
        for role, content, at in rows
    ]


SEARCH_QUERY_MAX_CHARS = 200
SNIPPET_CHARS = 160
SNIPPET_MARK = "**"


def _snippet_around(text: str, query: str) -> str:
    """Return ~SNIPPET_CHARS of ``text`` around the first match of ``query``, marked."""
    text = " ".join(text.split())
    at = text.lower().find(query.lower())
    if at < 0:
        return text[:SNIPPET_CHARS]
    start = max(0, at - (SNIPPET_CHARS - len(query)) // 2)
    end = min(len(text), start + SNIPPET_CHARS)
    match_end = at + len(query)
    marked = text[start:at] + SNIPPET_MARK + text[at:match_end] + SNIPPET_MARK + text[match_end:end]
    return ("…" if start else "") + marked + ("…" if end < len(text) else "")


# Web-search syntax (a quoted phrase, "or", a leading "-"): the query is read as such.
_WEBSEARCH_SYNTAX = re.compile(r'"|\bor\b|(^|\s)-', re.IGNORECASE)
_WORD = re.compile(r"\w+")


def _search_query(query: str):
    """Return the PostgreSQL query for ``query``: its last word matches as a prefix.

    People search as they type: "xyloph" finds "xylophone". A query written in web-search
    syntax (phrases, "or", exclusions) keeps that syntax and whole words. Either way it is
    a tsquery over the GIN index.
    """
    from django.contrib.postgres.search import SearchQuery

    words = _WORD.findall(query)
    if not words or _WEBSEARCH_SYNTAX.search(query):
        return SearchQuery(query, config="english", search_type="websearch")
    terms = [f"'{word}'" for word in words[:-1]] + [f"'{words[-1]}':*"]
    return SearchQuery(" & ".join(terms), config="english", search_type="raw")


def session_search(
    *,
    user,
    query: str,
    context: str | None = None,
    model_id=None,
    run_id=None,
    archived: bool | None = False,
    tag: str | None = None,
    offset: int = 0,
    limit: int = 30,
) -> tuple[list[ChatSession], bool]:
    """Return a page of sessions whose title or messages match ``query``, and has_more.

    The filters are session_list's. Each session carries ``snippet`` (the matching text,
    matches between ``**``), ``rank`` and its tags (prefetched). PostgreSQL: full-text
    search in English (websearch syntax) ranked by ``SearchRank`` over the GIN indexes
    of migration 0002, snippet by ``ts_headline``. SQLite: a case-insensitive match,
    title matches first, then recent activity.
    """
    if not isinstance(query, str):
        raise DomainError("q must be a string.", field="q")
    # PostgreSQL refuses NUL anywhere in a query: it becomes U+FFFD, like stored text.
    query = " ".join(clean_text(query).split())
    if not query:
        raise DomainError("q is empty.", field="q")
    if len(query) > SEARCH_QUERY_MAX_CHARS:
        raise DomainError(f"q is longer than {SEARCH_QUERY_MAX_CHARS} characters.", field="q")
    base = session_list(
        user=user,
        context=context,
        model_id=model_id,
        run_id=run_id,
        archived=archived,
        tag=tag,
        with_tags=True,
    )
    roles = [Message.Role.USER, Message.Role.ASSISTANT]
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import (
            SearchHeadline,
            SearchRank,
            SearchVector,
        )

        search = _search_query(query)
        matching = Message.objects.annotate(
            document=SearchVector("content", config="english")
        ).filter(document=search, role__in=roles)
        # The best match on the current path first, then on other branches.
        best = (
            matching.filter(session=OuterRef("pk"))
            .annotate(score=SearchRank(F("document"), search))
            .order_by("-on_path", "-score", "-id")
        )
        headline = {"start_sel": SNIPPET_MARK, "stop_sel": SNIPPET_MARK, "config": "english"}
        qs = (
            base.annotate(title_document=SearchVector("title", config="english"))
            .filter(
                Q(title_document=search)
                | Q(pk__in=matching.filter(session__user=user).values("session_id"))
            )
            .annotate(
                rank=Coalesce(
                    SearchRank(F("title_document"), search), Value(0.0), output_field=FloatField()
                )
                * 2
                + Coalesce(
                    Subquery(best.values("score")[:1]), Value(0.0), output_field=FloatField()
                ),
                message_snippet=Subquery(
                    best.annotate(
                        headline=SearchHeadline(
                            "content", search, max_words=25, min_words=8, **headline
                        )
                    ).values("headline")[:1]
                ),
                title_snippet=SearchHeadline("title", search, **headline),
            )
            .order_by("-rank", "-activity_at", "-id")
        )
        rows = list(qs[offset : offset + limit + 1])
        for session in rows:
            session.snippet = session.message_snippet or session.title_snippet
    else:
        matching = Message.objects.filter(
            session__user=user, content__icontains=query, role__in=roles
        )
        qs = (
            base.filter(Q(title__icontains=query) | Q(pk__in=matching.values("session_id")))
            .annotate(
                rank=Case(
                    When(title__icontains=query, then=Value(1)),
                    default=Value(0),
                    output_field=IntegerField(),
                )
            )
            .order_by("-rank", "-activity_at", "-id")
        )
        rows = list(qs[offset : offset + limit + 1])
        found = {}
        for message in matching.filter(session__in=[s.pk for s in rows[:limit]]).order_by(
            "-on_path", "-created_at", "-id"
        ):
            found.setdefault(message.session_id, message.content)
        for session in rows:
            text = found.get(session.pk) or session.title
            session.snippet = _snippet_around(text, query)
    return rows[:limit], len(rows) > limit


# The engine's reads of a conversation's latest reply; callers have checked access.


def reply_streaming(*, session_id) -> tuple[int, datetime] | None:
    """Return (id, last written) of the reply streaming in a conversation, if any."""
    return (
        Message.objects.filter(session_id=session_id, status=Message.Status.STREAMING)
        .values_list("pk", "updated_at")
        .first()
    )


def reply_state(*, session_id) -> dict | None:
    """Return the latest reply of a conversation's current path as stored: message,
    content, status, error."""
    return (
        Message.objects.filter(session_id=session_id, role=Message.Role.ASSISTANT, on_path=True)
        .order_by("-created_at", "-id")
        .values("pk", "content", "status", "error")
        .first()
    )


# The public page of a share link: anyone's, found by its token.

SHARE_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,100}")


def share_digest(token: str) -> str:
    """Return the digest a share link's token is stored as (SHA-256, hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def share_by_token(token) -> ShareLink | None:
    """Return the share link whose token is ``token``, or None (what cannot be a token is
    refused without a query)."""
    if not isinstance(token, str) or not SHARE_TOKEN.fullmatch(token):
        return None
    return (
        ShareLink.objects.filter(digest=share_digest(token))
        .only("title", "snapshot", "created_at")
        .first()
    )


# Reads across every user, for operators' commands.


def sessions_past_summary_threshold(*, session_ids=()) -> list[uuid.UUID]:
    """Return the ids of every user's conversations past SUMMARY_THRESHOLD messages.

    ``session_ids`` limits them to those (each a conversation id); ordered by id.
    """
    qs = ChatSession.objects.filter(message_count__gt=settings.SUMMARY_THRESHOLD)
    if session_ids:
        qs = qs.filter(pk__in=[parse_id(pk, field="session") for pk in session_ids])
    return list(qs.order_by("pk").values_list("pk", flat=True))
