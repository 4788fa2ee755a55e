import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Context(models.TextChoices):
    """The kind of a conversation's context (SPEC 2): what the conversation is about."""

    GENERAL = "general", "General"
    MODEL = "model", "Model"
    RUN = "run", "Run"
    DETACHED = "detached", "Deleted model or run"


# The one rule of the kind of context, for queries; ``ChatSession.context`` is the same rule
# for one row (tests/chat/test_models.py holds them together). A conversation whose model or
# run was deleted is detached whatever ids it still holds (a deleted run's conversation keeps
# its model); the others are a run's, a model's or general by their ids.
ATTACHED = Q(detached_label="")
CONTEXT_FILTERS = {
    Context.GENERAL: ATTACHED & Q(model__isnull=True, run__isnull=True),
    Context.MODEL: ATTACHED & Q(model__isnull=False, run__isnull=True),
    Context.RUN: ATTACHED & Q(run__isnull=False),
    Context.DETACHED: ~ATTACHED,
}


# The attribute a selector prefetches a conversation's tags into (chat.selectors), a plain
# list: Django's own prefetch cache costs a queryset per conversation.
PREFETCHED_TAGS = "prefetched_tags"


class ChatSessionQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(user=user)

    def of_context(self, kind: str):
        """Filter to one kind of context: general, model, run or detached."""
        return self.filter(CONTEXT_FILTERS[kind])

    def in_context(self, *, model_id=None, run_id=None):
        """Filter to one context; general is (NULL, NULL), which ``=`` cannot match.

        A detached conversation is in none.
        """
        return self.filter(
            ATTACHED,
            Q(model_id=model_id) if model_id is not None else Q(model__isnull=True),
            Q(run_id=run_id) if run_id is not None else Q(run__isnull=True),
        )


class ChatSession(models.Model):
    """A conversation: general, about one of the user's models, or about one run."""

    class TitleSource(models.TextChoices):
        PROVISIONAL = "provisional", "From the first message"
        AUTO = "auto", "Generated"
        USER = "user", "Set by the user"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_sessions"
    )
    model = models.ForeignKey(
        "models_app.Model",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="chat_sessions",
    )
    run = models.ForeignKey(
        "models_app.Run",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="chat_sessions",
    )
    title = models.CharField(max_length=200, blank=True)
    title_source = models.CharField(
        max_length=12, choices=TitleSource.choices, default=TitleSource.PROVISIONAL
    )
    is_active = models.BooleanField(default=True)
    pinned = models.BooleanField(default=False)
    archived = models.BooleanField(default=False)
    # Set when the model or run this conversation was about is deleted (invariant 5):
    # the conversation is kept, read-only and never active again.
    detached_label = models.CharField(max_length=200, blank=True)
    summary = models.TextField(blank=True)
    summary_until_id = models.BigIntegerField(
        null=True, blank=True, help_text="Id of the last message the summary covers."
    )
    summary_message_count = models.PositiveIntegerField(default=0)
    preview = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    last_message_at = models.DateTimeField(null=True, blank=True)
    # Sort key of the sidebar: the last message's time, or the creation time before one.
    activity_at = models.DateTimeField(default=timezone.now)
    message_count = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    last_llm = models.CharField(max_length=120, blank=True)
    # Where an imported conversation came from, e.g. ``chatgpt:<its id>`` (chat.chatgpt):
    # the same conversation imported again by the same user is recognised and skipped.
    imported_from = models.CharField(max_length=100, blank=True)
    # The LLM that answers (SPEC 4.6); empty: the model's, else LLM_MODEL.
    llm = models.CharField(max_length=120, blank=True)
    # Never listed, searched or exported, never active; deleted after TEMPORARY_CHAT_TTL.
    temporary = models.BooleanField(default=False)
    folder = models.ForeignKey(
        "Folder", on_delete=models.SET_NULL, null=True, blank=True, related_name="sessions"
    )
    # People in the loop (SPEC 4.6, "Operators"): when the owner asked for a person (the
    # operator queue lists these), and how many operators are in the conversation now. A
    # send reads the count with the conversation: while it is not 0 the assistant does
    # not answer (the owner's messages go to the operators).
    handoff_requested_at = models.DateTimeField(null=True, blank=True)
    operators_present = models.PositiveSmallIntegerField(default=0, db_default=0)

    objects = ChatSessionQuerySet.as_manager()

    class Meta:
        ordering = ["-pinned", "-activity_at", "-id"]
        permissions = [
            (
                "operate_conversations",
                "Can join users' conversations as an operator and answer in person",
            )
        ]
        constraints = [
            # Invariant 1, one constraint per context shape: NULLs are distinct in an
            # ordinary unique index, so the general context needs its own.
            models.UniqueConstraint(
                fields=["user"],
                condition=Q(is_active=True, model__isnull=True, run__isnull=True),
                name="one_active_general_session",
            ),
            models.UniqueConstraint(
                fields=["user", "model"],
                condition=Q(is_active=True, model__isnull=False, run__isnull=True),
                name="one_active_model_session",
            ),
            models.UniqueConstraint(
                fields=["user", "model", "run"],
                condition=Q(is_active=True, model__isnull=False, run__isnull=False),
                name="one_active_run_session",
            ),
            models.CheckConstraint(
                condition=Q(run__isnull=True) | Q(model__isnull=False),
                name="session_run_implies_model",
            ),
            models.CheckConstraint(
                condition=Q(is_active=False) | Q(detached_label=""),
                name="session_detached_is_inactive",
            ),
            models.UniqueConstraint(
                fields=["user", "imported_from"],
                condition=~Q(imported_from=""),
                name="session_imported_once",
            ),
            models.CheckConstraint(
                condition=Q(temporary=False) | Q(is_active=False),
                name="session_temporary_is_inactive",
            ),
        ]
        indexes = [
            models.Index(
                fields=["user", "archived", "-pinned", "-activity_at", "-id"],
                name="session_sidebar",
            ),
            models.Index(fields=["user", "model", "run", "-activity_at"], name="session_context"),
            # The first sessions of each sidebar group, read in order and no further
            # (chat.selectors.sidebar_sessions): general and each model's by model, the
            # detached on their own, so that a group with few conversations is not looked
            # for among all of them.
            models.Index(
                fields=["user", "archived", "model", "-pinned", "-activity_at", "-id"],
                condition=ATTACHED,
                name="session_sidebar_group",
            ),
            models.Index(
                fields=["user", "archived", "-pinned", "-activity_at", "-id"],
                condition=~ATTACHED,
                name="session_sidebar_detached",
            ),
            # General conversations by folder: the first of general (no folder) and of each
            # folder, read in order (chat.selectors.sidebar_sessions).
            models.Index(
                fields=["user", "archived", "folder", "-pinned", "-activity_at", "-id"],
                condition=ATTACHED & Q(model__isnull=True),
                name="session_sidebar_folder",
            ),
            # The temporary conversations past TEMPORARY_CHAT_TTL, oldest first (the sweep).
            models.Index(
                fields=["activity_at"], condition=Q(temporary=True), name="session_temporary"
            ),
            # The operator queue: the conversations whose owner asked for a person, newest
            # first (chat.selectors.operator_queue).
            models.Index(
                fields=["-handoff_requested_at"],
                condition=Q(handoff_requested_at__isnull=False),
                name="session_handoff_queue",
            ),
        ]

    def __str__(self):
        return self.title or "New conversation"

    def get_absolute_url(self):
        if self.context == Context.MODEL:
            return f"/m/{self.model_id}/c/{self.id}"
        return f"/c/{self.id}"

    def tag_names(self) -> list[str]:
        """Return the names of this conversation's tags, in order.

        Read with the conversation when a selector prefetched them (``PREFETCHED_TAGS``),
        else in one query.
        """
        tags = getattr(self, PREFETCHED_TAGS, None)
        if tags is None:
            tags = self.tags.all()
        return [tag.name for tag in tags]

    @property
    def effective_llm(self) -> str:
        """Return the LLM that answers in this conversation: the one chosen for it (a
        general conversation stores its owner's default LLM when it is created), else
        its model's, else LLM_MODEL. Reads the model when the conversation has one and
        no LLM of its own, and the model was not loaded with it."""
        if self.llm:
            return self.llm
        if self.model_id:
            return self.model.effective_llm
        return settings.LLM_MODEL

    @property
    def context(self) -> Context:
        """Return the kind of this conversation's context (the rule of CONTEXT_FILTERS)."""
        if self.detached_label:
            return Context.DETACHED
        if self.run_id:
            return Context.RUN
        if self.model_id:
            return Context.MODEL
        return Context.GENERAL


class Folder(models.Model):
    """A user's named folder of general conversations; deleting it keeps them."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_folders"
    )
    name = models.CharField(max_length=80)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(name=""), name="folder_name_not_empty"),
        ]

    def __str__(self):
        return self.name


class ShareLink(models.Model):
    """A read-only snapshot of a conversation at ``/s/<token>``; only the token's
    SHA-256 digest is stored. Refreshing takes a new snapshot; revoking deletes the row;
    deleting the conversation deletes it."""

    session = models.OneToOneField(ChatSession, on_delete=models.CASCADE, related_name="share")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="share_links"
    )
    digest = models.CharField(max_length=64, unique=True)
    title = models.CharField(max_length=200, blank=True)
    # The current path at sharing time: [{"role", "content", "created_at"}, ...].
    snapshot = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"share of {self.session_id}"


class UsageDay(models.Model):
    """Tokens a user spent in one day (UTC) with one LLM: the usage chart and the quota."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_days"
    )
    date = models.DateField()
    llm = models.CharField(max_length=120)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["date", "llm"]
        constraints = [
            models.UniqueConstraint(fields=["user", "date", "llm"], name="usage_day_unique"),
        ]

    def __str__(self):
        return f"{self.user_id} {self.date} {self.llm}"


class SessionTag(models.Model):
    """One of the user's own labels on one of their conversations (SPEC 4.6).

    A tag is a name on a conversation, not a row of its own: the user's tags are the
    names on their conversations, and a name goes away with the last conversation that
    carries it. ``user`` is the conversation's owner, copied (a conversation never changes
    hands) so that the user's tags are found by name without reading their conversations.
    The rules of a name (lowercased, 1-40 characters, at most 20 per conversation) are
    chat.services.check_tags's, which writes every row.
    """

    # No indexes of their own: the two below start with them.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    session = models.ForeignKey(
        ChatSession, on_delete=models.CASCADE, related_name="tags", db_index=False
    )
    name = models.CharField(max_length=40)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["session", "name"], name="session_tag_unique"),
            models.CheckConstraint(condition=~Q(name=""), name="session_tag_not_empty"),
        ]
        indexes = [
            # The user's conversations carrying a name (?tag=), and their names (counts):
            # as many rows read as there are matches, however many conversations.
            models.Index(fields=["user", "name", "session"], name="session_tag_by_user"),
        ]

    def __str__(self):
        return self.name


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system", "System"
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"
        TOOL = "tool", "Tool"
        # A person on the platform's side who joined the conversation (``author``).
        OPERATOR = "operator", "Operator"

    class Status(models.TextChoices):
        COMPLETE = "complete", "Complete"
        STREAMING = "streaming", "Streaming"
        STOPPED = "stopped", "Stopped"
        ERROR = "error", "Error"

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPLETE)
    error = models.TextField(blank=True)
    llm = models.CharField(max_length=120, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    # [{"name": ..., "arguments": {...}, "result": "short text"}]
    tools_used = models.JSONField(default=list, blank=True)
    client_id = models.CharField(max_length=64, null=True, blank=True)
    # A conversation's messages form a tree (SPEC 4.6): a message answers or follows its
    # parent, and the children of one parent are versions of one turn (an edited question,
    # a regenerated reply), numbered in creation order. ``on_path`` marks the current path,
    # root to current leaf: what the page shows, the LLM is sent and the counters count.
    # Along a path ids grow (a child is written after its parent), so the path in id order
    # is the conversation in order, and the current leaf is its newest message.
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children"
    )
    on_path = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    # Who wrote an operator's message, and the name shown for them when they wrote it (kept
    # if the account goes). Empty for the owner's messages and the assistant's.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # (A database default: the reply path's statements insert messages without it, chat.sql.)
    author_name = models.CharField(max_length=150, blank=True, default="", db_default="")

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "client_id"],
                condition=Q(client_id__isnull=False),
                name="message_client_id_unique_per_session",
            ),
        ]
        indexes = [
            # The current path in order (the page, the context window, the summary).
            models.Index(fields=["session", "on_path", "created_at", "id"], name="message_path"),
            # The first turn's versions (the children of no message).
            models.Index(
                fields=["session"], condition=Q(parent__isnull=True), name="message_roots"
            ),
            # The replies being written, by conversation: a send checks its conversation's,
            # the sweep reads them all; small whatever the number of messages.
            models.Index(
                fields=["session"],
                condition=Q(status="streaming"),
                name="message_streaming_session",
            ),
        ]

    def __str__(self):
        return f"{self.role}: {self.content[:40]}"

    @property
    def reply_to_id(self) -> int | None:
        """The question a reply answers (its parent); None for any other message."""
        return self.parent_id if self.role == self.Role.ASSISTANT else None


class Participant(models.Model):
    """An operator's time in a conversation: from joining to leaving (SPEC 4.6).

    The owner and the assistant take part in every conversation and have no row; an
    operator has one row per visit, and at most one open (``left_at`` null) at a time.
    ``ChatSession.operators_present`` counts the open ones.
    """

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="participants")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="participations"
    )
    joined_at = models.DateTimeField(default=timezone.now)
    left_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["joined_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "user"],
                condition=Q(left_at__isnull=True),
                name="participant_present_once",
            ),
        ]
        indexes = [
            models.Index(
                fields=["user", "session"],
                condition=Q(left_at__isnull=True),
                name="participant_present",
            ),
        ]

    def __str__(self):
        return f"{self.user} in {self.session_id}"

    @property
    def present(self) -> bool:
        return self.left_at is None


class Feedback(models.Model):
    """A user's rating of an assistant reply, with an optional note (SPEC 4.6)."""

    class Rating(models.TextChoices):
        UP = "up", "Good reply"
        DOWN = "down", "Bad reply"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    rating = models.CharField(max_length=4, choices=Rating.choices)
    note = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "feedback"
        constraints = [
            models.UniqueConstraint(fields=["user", "message"], name="feedback_once_per_user"),
        ]

    def __str__(self):
        return f"{self.rating} on message {self.message_id}"
