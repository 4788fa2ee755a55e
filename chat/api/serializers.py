"""Request and response shapes of the conversation API.

Request serializers only parse and type-check; the rules (ownership, one active session,
message limits) live in chat.services and chat.selectors.
"""

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from chat import usage
from chat.models import ChatSession, Context, Feedback, Message
from chat.services import (
    CLIENT_ID_MAX_CHARS,
    FOLDER_NAME_MAX_CHARS,
    TAG_MAX_CHARS,
    TAGS_MAX,
    TITLE_MAX_CHARS,
)
from core.api import StrictBooleanField, StrictCharField, StrictIntegerField, StrictSerializer

TAG_RULES = (
    f"Stored lowercased, whitespace collapsed, each 1-{TAG_MAX_CHARS} characters, at most "
    f"{TAGS_MAX} per conversation; no control characters."
)


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": TAG_MAX_CHARS},
        "maxItems": TAGS_MAX,
    }
)
class TagListField(serializers.Field):
    """A list of tag names, handed as it is to chat.services.check_tags, the one place
    that reads and checks them (so the API, the admin and imports answer alike)."""

    def to_internal_value(self, data):
        return data

    def to_representation(self, value):
        return value


class SessionSerializer(serializers.ModelSerializer):
    """A conversation as listed in the sidebar."""

    context = serializers.CharField(
        read_only=True, help_text="general, model, run, or detached (model/run deleted)."
    )
    tags = serializers.ListField(
        child=serializers.CharField(),
        source="tag_names",
        read_only=True,
        help_text="The user's own labels, by name.",
    )
    llm = serializers.CharField(
        source="effective_llm",
        read_only=True,
        help_text=(
            "The LLM that answers: the one chosen for the conversation (on creation, PATCH "
            "or a send), else its model's LLM, else the server's LLM_MODEL. A general "
            "conversation starts with your `default_llm`."
        ),
    )

    class Meta:
        model = ChatSession
        fields = [
            "id",
            "title",
            "model",
            "run",
            "context",
            "is_active",
            "pinned",
            "archived",
            "created_at",
            "updated_at",
            "last_message_at",
            "message_count",
            "preview",
            "tags",
            "folder",
            "temporary",
            "llm",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "folder": {"help_text": "The folder of a general conversation (id), or null."},
            "temporary": {
                "help_text": "Never listed nor active; deleted TEMPORARY_CHAT_TTL after its "
                "last message."
            },
        }


class SessionListItemSerializer(SessionSerializer):
    snippet = serializers.CharField(
        read_only=True,
        allow_null=True,
        default=None,
        help_text="With q=: the matching text, matches between ** marks; else null.",
    )

    class Meta(SessionSerializer.Meta):
        fields = [*SessionSerializer.Meta.fields, "snippet"]
        read_only_fields = fields


class SessionDetailSerializer(SessionSerializer):
    class Meta(SessionSerializer.Meta):
        fields = [
            *SessionSerializer.Meta.fields,
            "summary",
            "detached_label",
            "prompt_tokens",
            "completion_tokens",
            "last_llm",
        ]
        read_only_fields = fields


class SessionPageSerializer(serializers.Serializer):
    results = SessionListItemSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class SessionCreateSerializer(StrictSerializer):
    id = serializers.UUIDField(
        required=False, help_text="Client-chosen UUID; the same id again is the same session."
    )
    model = StrictIntegerField(required=False, allow_null=True, min_value=1)
    run = StrictIntegerField(required=False, allow_null=True, min_value=1)
    title = StrictCharField(required=False, allow_blank=True, max_length=TITLE_MAX_CHARS)
    temporary = StrictBooleanField(
        required=False,
        default=False,
        help_text="A temporary conversation: never listed, searched or active, deleted "
        "TEMPORARY_CHAT_TTL after its last message.",
    )
    llm = StrictCharField(
        required=False,
        allow_blank=True,
        help_text="One of `GET /api/llms/`; absent or empty: the default (the model's LLM, "
        "else your `default_llm`). An unlisted one is 400 `unknown_llm`.",
    )


class SessionUpdateSerializer(StrictSerializer):
    title = StrictCharField(required=False, max_length=TITLE_MAX_CHARS)
    pinned = StrictBooleanField(required=False)
    archived = StrictBooleanField(required=False)
    tags = TagListField(
        required=False,
        help_text=f"Replaces the conversation's tags whole ([] removes them). {TAG_RULES}",
    )
    folder = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=2**63 - 1,
        help_text="One of your folders (a general, kept conversation only), or null: none.",
    )
    llm = StrictCharField(
        required=False,
        allow_blank=True,
        help_text="One of `GET /api/llms/`: it answers the next replies. Empty: back to the "
        "default (the model's LLM, else your `default_llm`). Unlisted: 400 `unknown_llm`.",
    )


class TagCountSerializer(serializers.Serializer):
    name = serializers.CharField()
    count = serializers.IntegerField(help_text="How many of your conversations carry it.")


class TagListSerializer(serializers.Serializer):
    results = TagCountSerializer(many=True)


# ``archived=`` of the lists: the value session_list and tag_counts take, by query value.
ARCHIVED_FILTER = {"false": False, "true": True, "all": None}


def archived_field(help_text: str) -> serializers.ChoiceField:
    return serializers.ChoiceField(
        choices=list(ARCHIVED_FILTER), required=False, default="false", help_text=help_text
    )


class TagListQuerySerializer(StrictSerializer):
    archived = archived_field("Which conversations count: as in the list of conversations.")


DELETE_ALL_CONFIRMATION = "delete all"


class DeleteAllSerializer(StrictSerializer):
    confirm = StrictCharField(help_text=f'Must be exactly "{DELETE_ALL_CONFIRMATION}".')

    def validate_confirm(self, value):
        if value != DELETE_ALL_CONFIRMATION:
            raise serializers.ValidationError(
                f'Type "{DELETE_ALL_CONFIRMATION}" to delete every conversation.'
            )
        return value


class DeletedSerializer(serializers.Serializer):
    deleted = serializers.IntegerField()


class AuthorSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["user", "assistant", "operator"])
    name = serializers.CharField()


class MessageSerializer(serializers.ModelSerializer):
    """A message. ``selectors.message_details`` gives it its versions and the caller's
    rating first (else it shows none: one version, no rating)."""

    reply_to = serializers.IntegerField(
        source="reply_to_id",
        allow_null=True,
        read_only=True,
        help_text="The question an assistant reply answers (its parent); null otherwise.",
    )
    author = serializers.SerializerMethodField()
    sibling_index = serializers.SerializerMethodField(
        help_text="This version's place among the versions of its turn (1-based)."
    )
    sibling_count = serializers.SerializerMethodField()
    sibling_ids = serializers.SerializerMethodField(
        help_text="The ids of the turn's versions, in creation order."
    )
    feedback = serializers.SerializerMethodField(help_text="The caller's rating of a reply.")

    @extend_schema_field(AuthorSerializer)
    def get_author(self, message) -> dict:
        if message.role == Message.Role.USER:
            return {"kind": "user", "name": self.context.get("owner_name", "")}
        if message.role == Message.Role.OPERATOR:
            return {"kind": "operator", "name": message.author_name}
        return {"kind": "assistant", "name": message.llm or "Assistant"}

    def get_sibling_ids(self, message) -> list[int]:
        return list(getattr(message, "versions", [message.pk]))

    def get_sibling_index(self, message) -> int:
        return self.get_sibling_ids(message).index(message.pk) + 1

    def get_sibling_count(self, message) -> int:
        return len(self.get_sibling_ids(message))

    @extend_schema_field(serializers.ChoiceField(choices=["up", "down"], allow_null=True))
    def get_feedback(self, message) -> str | None:
        return getattr(message, "my_feedback", None)

    class Meta:
        model = Message
        fields = [
            "id",
            "session",
            "role",
            "content",
            "status",
            "error",
            "llm",
            "prompt_tokens",
            "completion_tokens",
            "tools_used",
            "client_id",
            "parent",
            "reply_to",
            "author",
            "sibling_index",
            "sibling_count",
            "sibling_ids",
            "feedback",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class MessagePageSerializer(serializers.Serializer):
    results = MessageSerializer(many=True)
    has_more = serializers.BooleanField()


class MessagePageQuerySerializer(StrictSerializer):
    before = serializers.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1, help_text="A message id."
    )
    limit = serializers.IntegerField(required=False, default=50, min_value=1, max_value=200)


class MessageCreateSerializer(StrictSerializer):
    # Emptiness and the length limit are checked by chat.services with clear messages.
    content = StrictCharField(
        allow_blank=True,
        trim_whitespace=False,
        help_text=f"The message; at most MAX_MESSAGE_CHARS ({settings.MAX_MESSAGE_CHARS:,}).",
    )
    client_id = StrictCharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=CLIENT_ID_MAX_CHARS,
        help_text="Idempotency key: the same client_id again returns the same messages.",
    )


class BranchSerializer(StrictSerializer):
    message = StrictIntegerField(
        min_value=1,
        max_value=2**63 - 1,
        help_text="A message of the conversation: the path runs through it to its newest leaf.",
    )


class FeedbackSerializer(StrictSerializer):
    rating = serializers.ChoiceField(
        choices=Feedback.Rating.choices, allow_null=True, help_text="null clears the rating."
    )
    note = StrictCharField(
        required=False, allow_blank=True, allow_null=True, trim_whitespace=True, max_length=2000
    )


class FeedbackResultSerializer(serializers.Serializer):
    rating = serializers.ChoiceField(choices=Feedback.Rating.choices, allow_null=True)
    note = serializers.CharField()


class ReplySerializer(serializers.Serializer):
    user_message = MessageSerializer()
    assistant_message = MessageSerializer(allow_null=True)


class RegenerateSerializer(serializers.Serializer):
    assistant_message = MessageSerializer()


class ParticipantSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["user", "assistant", "operator"])
    name = serializers.CharField(help_text="The person's display name, else username.")
    joined_at = serializers.DateTimeField(required=False, help_text="Operators only.")


class ParticipantListSerializer(serializers.Serializer):
    results = ParticipantSerializer(many=True)
    handoff_requested_at = serializers.DateTimeField(
        allow_null=True, help_text="When the owner asked for a person (null: not waiting)."
    )


class QueueQuerySerializer(StrictSerializer):
    q = serializers.CharField(
        required=False, allow_blank=True, max_length=150, help_text="Part of a username."
    )


class QueueItemSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    user = serializers.CharField(help_text="The owner's display name, else username.")
    username = serializers.CharField()
    handoff_requested_at = serializers.DateTimeField()
    operators = serializers.ListField(child=serializers.CharField())
    message_count = serializers.IntegerField()
    last_message_at = serializers.DateTimeField(allow_null=True)
    preview = serializers.CharField()


class QueueSerializer(serializers.Serializer):
    results = QueueItemSerializer(many=True)
    waiting = serializers.IntegerField(help_text="Conversations no operator has joined yet.")


class StopSerializer(serializers.Serializer):
    stopped = serializers.BooleanField(help_text="Whether a generation was in flight.")


class SessionListQuerySerializer(StrictSerializer):
    context = serializers.ChoiceField(choices=Context.values, required=False)
    model = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    run = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    q = serializers.CharField(required=False, max_length=200)
    tag = serializers.CharField(
        required=False,
        help_text="Only conversations carrying this tag (read as tags are stored: any case).",
    )
    archived = archived_field("false (default) hides archived conversations; all lists both.")
    cursor = serializers.CharField(required=False, max_length=1000)
    limit = serializers.IntegerField(required=False, default=30, min_value=1, max_value=100)


class ActiveQuerySerializer(StrictSerializer):
    model = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    run = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)


class ExportQuerySerializer(StrictSerializer):
    format = serializers.ChoiceField(choices=["markdown", "json"], default="markdown")


class TokenRequestSerializer(StrictSerializer):
    username = StrictCharField(max_length=150)
    password = StrictCharField(max_length=1024, trim_whitespace=False)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()


class ChatGPTImportSerializer(StrictSerializer):
    """A ChatGPT data export, uploaded."""

    file = serializers.FileField(
        help_text="`conversations.json` of a ChatGPT data export, or the export's zip."
    )


class ImportErrorSerializer(serializers.Serializer):
    conversation = serializers.CharField(help_text="Its title, else its ChatGPT id.")
    error = serializers.CharField(help_text="Why it was not imported.")


class ChatGPTImportResultSerializer(serializers.Serializer):
    imported = serializers.IntegerField(min_value=0)
    skipped = serializers.IntegerField(
        min_value=0, help_text="Conversations this user imported before (same ChatGPT id)."
    )
    errors = ImportErrorSerializer(many=True, help_text="Conversations that could not be read.")


class ShareCreatedSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="The public read-only page: /s/<token>.")
    token = serializers.CharField(help_text="Shown in this answer only: the server keeps a hash.")
    created_at = serializers.DateTimeField(help_text="When the snapshot was taken.")


class ShareSerializer(serializers.Serializer):
    session = serializers.UUIDField(source="session_id", help_text="The shared conversation.")
    title = serializers.CharField(help_text="Its title when shared.")
    created_at = serializers.DateTimeField(help_text="When the snapshot was taken.")


class ShareListSerializer(serializers.Serializer):
    results = ShareSerializer(many=True)


class FolderSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)


class FolderListSerializer(serializers.Serializer):
    results = FolderSerializer(many=True)


class FolderWriteSerializer(StrictSerializer):
    # Emptiness, control characters and the length are checked by chat.services.
    name = StrictCharField(
        trim_whitespace=False,
        help_text=f"1 to {FOLDER_NAME_MAX_CHARS} characters, one line.",
    )


class LLMSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The LLM's name, as the provider lists it.")


class LLMListSerializer(serializers.Serializer):
    results = LLMSerializer(many=True)
    default = serializers.CharField(
        help_text="The LLM of your new general conversations: your `default_llm`, else the "
        "server's LLM_MODEL."
    )


class UsageQuerySerializer(StrictSerializer):
    days = serializers.IntegerField(
        required=False,
        default=usage.CHART_DAYS,
        min_value=1,
        max_value=usage.DAYS_MAX,
        help_text="How many UTC days, today included.",
    )


class UsageDaySerializer(serializers.Serializer):
    date = serializers.DateField(help_text="A UTC day.")
    llm = serializers.CharField()
    prompt_tokens = serializers.IntegerField(min_value=0)
    completion_tokens = serializers.IntegerField(min_value=0)


class QuotaSerializer(serializers.Serializer):
    tokens_per_day = serializers.IntegerField(
        min_value=0, help_text="Your limit: your own, else QUOTA_TOKENS_PER_DAY."
    )
    used_today = serializers.IntegerField(
        min_value=0, help_text="Prompt and completion tokens of today (UTC), every LLM."
    )
    resets_at = serializers.DateTimeField(help_text="The next UTC midnight.")


class UsageReportSerializer(serializers.Serializer):
    days = UsageDaySerializer(
        many=True,
        help_text="One row per day and LLM that used tokens, oldest first (a day without "
        "usage has no row).",
    )
    quota = QuotaSerializer(allow_null=True, help_text="null: no daily limit applies to you.")
