"""Staff views of conversations and messages; every change goes through chat.services."""

import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from . import exports, selectors, services
from .exceptions import DomainError
from .models import ChatSession, Context, Feedback, Message, SessionTag, UsageDay


class ContextFilter(admin.SimpleListFilter):
    title = "context"
    parameter_name = "context"

    def lookups(self, request, model_admin):
        return Context.choices

    def queryset(self, request, queryset):
        if self.value() in Context.values:
            return queryset.of_context(self.value())
        return queryset


class TagFilter(admin.SimpleListFilter):
    """Conversations carrying a tag; offers the most used names, takes any (``?tag=``)."""

    title = "tag"
    parameter_name = "tag"
    offered = 50

    def lookups(self, request, model_admin):
        rows = (
            SessionTag.objects.values("name")
            .annotate(uses=Count("id"))
            .order_by("-uses", "name")[: self.offered]
        )
        return [(row["name"], row["name"]) for row in rows]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(tags__name=self.value())
        return queryset


class MessageInline(admin.TabularInline):
    """The conversation's whole tree, in the order it was written: each message names the
    one it follows (``parent``); ``on_path`` marks the current path, the rest are other
    versions (edited questions, regenerated replies) and what follows them."""

    model = Message
    verbose_name_plural = "messages (the whole tree; on path = the current branch)"
    fields = (
        "id",
        "parent_id",
        "on_path",
        "created_at",
        "role",
        "status",
        "content",
        "llm",
        "prompt_tokens",
        "completion_tokens",
    )
    readonly_fields = fields
    ordering = ("id",)
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class HandoffFilter(admin.SimpleListFilter):
    title = "person asked for"
    parameter_name = "handoff"

    def lookups(self, request, model_admin):
        return [("waiting", "Waiting for an operator"), ("joined", "An operator is in")]

    def queryset(self, request, queryset):
        if self.value() == "waiting":
            return queryset.filter(handoff_requested_at__isnull=False, operators_present=0)
        if self.value() == "joined":
            return queryset.filter(operators_present__gt=0)
        return queryset


class ChatSessionForm(forms.ModelForm):
    class Meta:
        model = ChatSession
        fields = ("title", "pinned", "archived")

    def clean_title(self):
        title = " ".join(self.cleaned_data["title"].split())
        if "title" in self.changed_data and not title:
            raise forms.ValidationError("The title is empty.")
        return title


@admin.register(ChatSession)
class ChatSessionAdmin(admin.ModelAdmin):
    list_display = (
        "title_display",
        "user",
        "context_display",
        "model",
        "run",
        "is_active",
        "pinned",
        "archived",
        "tags_display",
        "message_count",
        "last_message_at",
    )
    list_filter = ("is_active", ContextFilter, HandoffFilter, "user", "archived", TagFilter)
    search_fields = ("title", "user__username")
    list_select_related = ("user", "model", "run__model")
    readonly_fields = (
        "id",
        "user",
        "model",
        "run",
        "is_active",
        "detached_label",
        "title_source",
        "summary_until_id",
        "summary_message_count",
        "preview",
        "created_at",
        "updated_at",
        "last_message_at",
        "activity_at",
        "message_count",
        "prompt_tokens",
        "completion_tokens",
        "llm",
        "last_llm",
        "tags_display",
        "summary",
        "imported_from",
        "handoff_requested_at",
        "operators_present",
        "operators_display",
    )
    fields = ("title", "pinned", "archived", *readonly_fields)
    form = ChatSessionForm
    inlines = [MessageInline]
    actions = ["make_active", "summarize_now", "export", "join_as_operator"]
    ordering = ("-activity_at", "-id")

    @admin.display(description="title", ordering="title")
    def title_display(self, obj):
        return str(obj)

    @admin.display(description="context")
    def context_display(self, obj):
        return obj.detached_label if obj.context == Context.DETACHED else obj.context

    @admin.display(description="tags")
    def tags_display(self, obj):
        return ", ".join(obj.tag_names())

    def get_queryset(self, request):
        # The tags of a page of conversations in one query, not one per row.
        return super().get_queryset(request).prefetch_related(selectors.tags_prefetch())

    def save_model(self, request, obj, form, change):
        """Save title/pin/archive through the service, so its rules apply here too."""
        changes = {name: getattr(obj, name) for name in ("title", "pinned", "archived")}
        services.conversation_update(
            user=obj.user,
            session_id=obj.pk,
            **{name: value for name, value in changes.items() if name in form.changed_data},
        )

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # Messages cannot be deleted one by one here, but they go with their conversation.
        perms_needed.discard(str(Message._meta.verbose_name))
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj):
        services.conversation_delete(user=obj.user, session_id=obj.pk)

    def delete_queryset(self, request, queryset):
        for session in queryset.select_related("user"):
            services.conversation_delete(user=session.user, session_id=session.pk)

    def has_add_permission(self, request):
        return False

    @admin.action(description="Make active (resume) the selected conversations")
    def make_active(self, request, queryset):
        done = 0
        for session in queryset.select_related("user").order_by("activity_at", "id"):
            try:
                services.conversation_resume(user=session.user, session_id=session.pk)
            except DomainError as exc:
                self.message_user(request, f"{session}: {exc.message}", messages.WARNING)
            else:
                done += 1
        self.message_user(
            request,
            f"{done} conversation(s) made active; in each context the last one selected wins.",
            messages.SUCCESS,
        )

    @admin.display(description="operators (joined, left)")
    def operators_display(self, obj):
        """Every operator's visits, in order (their acts are in the History page too)."""
        visits = obj.participants.select_related("user").order_by("joined_at", "pk")
        lines = [
            format_html(
                "{}: {} – {}",
                visit.user.shown_name,
                f"{visit.joined_at:%Y-%m-%d %H:%M:%S}",
                f"{visit.left_at:%Y-%m-%d %H:%M:%S}" if visit.left_at else "in it now",
            )
            for visit in visits
        ]
        return format_html_join("", "<div>{}</div>", ((line,) for line in lines)) or "—"

    @admin.action(description="Join as an operator (answer in person)")
    def join_as_operator(self, request, queryset):
        """Join the one selected conversation and open it as an operator (SPEC 4.6)."""
        if not selectors.can_operate(request.user):
            self.message_user(
                request, "Joining needs the permission to operate conversations.", messages.ERROR
            )
            return None
        if queryset.count() != 1:
            self.message_user(request, "Select one conversation to join.", messages.WARNING)
            return None
        session = queryset.get()
        try:
            services.operator_join(user=request.user, session_id=session.pk)
        except DomainError as exc:
            self.message_user(request, f"{session}: {exc.message}", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("chat:operator_session", args=[session.pk]))

    @admin.action(description="Summarize now")
    def summarize_now(self, request, queryset):
        # Imported here: the streaming engine pulls in the LLM client, which the rest of
        # the admin does not need.
        from . import streaming

        sessions = list(queryset.values_list("pk", flat=True))
        changed = sum(streaming.summarize_sync(session_id=pk, force=True) for pk in sessions)
        self.message_user(
            request,
            f"Summaries updated: {changed} of {len(sessions)}. A conversation needs one only "
            f"past {settings.SUMMARY_THRESHOLD} messages, and only when new messages arrived "
            "since its last summary (or the LLM did not answer).",
            messages.SUCCESS if changed else messages.WARNING,
        )

    @admin.action(description="Export the selected conversations (JSON)")
    def export(self, request, queryset):
        sessions = list(queryset.select_related("model", "run"))
        if len(sessions) == 1:
            data = exports.export_json(session=sessions[0])
            filename = exports.export_filename(session=sessions[0], fmt="json")
        else:
            data = [exports.export_json(session=session) for session in sessions]
            filename = f"parlor-conversations-{timezone.now().date().isoformat()}.json"
        response = HttpResponse(
            json.dumps(data, indent=2, ensure_ascii=False),
            content_type="application/json; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class ReadOnlyAdmin(admin.ModelAdmin):
    """A list and pages to read: what is there was written by the services."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class FeedbackInline(admin.TabularInline):
    model = Feedback
    fields = ("user", "rating", "note", "updated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyAdmin):
    """Users' ratings of replies, newest first, by rating and by LLM."""

    list_display = ("id", "rating", "short_note", "message_link", "llm", "user", "updated_at")
    list_filter = ("rating", "message__llm")
    search_fields = ("note", "user__username")
    list_select_related = ("user", "message")
    ordering = ("-updated_at", "-id")
    readonly_fields = ("user", "message", "rating", "note", "created_at", "updated_at")

    @admin.display(description="note")
    def short_note(self, obj):
        return obj.note[:80]

    @admin.display(description="LLM")
    def llm(self, obj):
        return obj.message.llm

    @admin.display(description="reply")
    def message_link(self, obj):
        url = reverse("admin:chat_message_change", args=[obj.message_id])
        return format_html('<a href="{}">{}</a>', url, obj.message.content[:60] or obj.message_id)


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "session",
        "role",
        "author_name",
        "status",
        "short_content",
        "llm",
        "created_at",
    )
    list_filter = ("role", "status")
    readonly_fields = ("parent", "on_path")
    inlines = [FeedbackInline]
    search_fields = ("content",)
    list_select_related = ("session",)
    ordering = ("-created_at", "-id")
    show_full_result_count = False

    @admin.display(description="content")
    def short_content(self, obj):
        return obj.content[:80]


@admin.register(UsageDay)
class UsageDayAdmin(ReadOnlyAdmin):
    """Every user's tokens per UTC day and LLM (chat.usage), newest first; read-only.

    A user's daily quota is set on the user (accounts' admin: daily token quota).
    """

    list_display = ("date", "user", "llm", "prompt_tokens", "completion_tokens", "total_tokens")
    list_filter = (("date", admin.DateFieldListFilter), "llm", "user")
    search_fields = ("user__username", "llm")
    date_hierarchy = "date"
    list_select_related = ("user",)
    ordering = ("-date", "user", "llm")
    readonly_fields = ("user", "date", "llm", "prompt_tokens", "completion_tokens")

    @admin.display(description="total tokens")
    def total_tokens(self, obj):
        return obj.prompt_tokens + obj.completion_tokens
