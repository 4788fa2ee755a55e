"""Staff views of models, runs and trades.

Deleting a model or a run goes through models_app.services so that its conversations are
kept, inactive and readable (invariant 5), exactly as when its owner deletes it.

A model's owner and a run's model are fixed once they exist, here as in the API and the
pages: the conversations about them belong to that owner, and moving a model or a run to
someone else would show its configuration and trades in another user's conversations
(invariant 6).

The change pages keep the rules of models_app.services too (``model_problems``,
``run_problems``, ``trade_problems``): staff cannot store what a form or the API refuses.
"""

from django import forms
from django.contrib import admin
from django.db.models import Count

from . import services
from .models import Model, Run, Trade


class RulesForm(forms.ModelForm):
    """A change form that adds the service's problems of its values to its errors."""

    rule_fields: tuple[str, ...] = ()

    def problems(self, values: dict) -> dict[str, list[str]]:
        raise NotImplementedError

    def clean(self):
        cleaned = super().clean()
        # The instance's values for what the form does not show, the form's for the rest;
        # a field that failed its own checks is left out, as the service leaves it out.
        values = {name: getattr(self.instance, name) for name in self.rule_fields}
        values = {name: value for name, value in values.items() if name not in self.fields}
        values |= {name: cleaned[name] for name in self.rule_fields if name in cleaned}
        for field, messages in self.problems(values).items():
            self.add_error(field if field in self.fields else None, messages)
        return cleaned


class ModelAdminForm(RulesForm):
    rule_fields = services.MODEL_FIELDS

    def problems(self, values):
        return services.model_problems(values)


class RunAdminForm(RulesForm):
    """A run on its own page: its trades are checked against its new times by TradeInline."""

    rule_fields = services.RUN_FIELDS

    def problems(self, values):
        return services.run_problems(values)


class RunInlineForm(RulesForm):
    """A run on its model's page, where its trades are not edited: they bound its times."""

    rule_fields = services.RUN_FIELDS

    def problems(self, values):
        return services.run_problems(values, trades_span=services.trades_span(self.instance))


class TradeAdminForm(RulesForm):
    rule_fields = services.TRADE_FIELDS

    def problems(self, values):
        run = self.cleaned_data.get("run") or getattr(self.instance, "run", None)
        times = {"started_at": run.started_at, "ended_at": run.ended_at} if run else {}
        return services.trade_problems(values, run=times)


class RunInline(admin.TabularInline):
    model = Run
    form = RunInlineForm
    fields = ("status", "started_at", "ended_at", "starting_capital", "ending_equity")
    extra = 0
    show_change_link = True
    # Deleting through an inline would bypass run_delete; delete on the run's own page.
    can_delete = False


class TradeInline(admin.TabularInline):
    model = Trade
    form = TradeAdminForm
    fields = ("executed_at", "symbol", "side", "quantity", "price", "realized_pnl")
    ordering = ("executed_at", "id")
    extra = 0


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    form = ModelAdminForm
    list_display = (
        "name",
        "owner",
        "trading_mode",
        "trading_style",
        "instrument",
        "margin_account",
        "buying_power",
        "updated_at",
    )
    list_filter = ("trading_mode", "trading_style")
    search_fields = ("name", "owner__username")
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    inlines = [RunInline]

    def get_readonly_fields(self, request, obj=None):
        return ("owner",) if obj is not None else ()

    def delete_model(self, request, obj):
        services.model_delete(user=obj.owner, model_id=obj.pk)

    def delete_queryset(self, request, queryset):
        for model in queryset.select_related("owner"):
            services.model_delete(user=model.owner, model_id=model.pk)


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    form = RunAdminForm
    list_display = (
        "__str__",
        "model",
        "status",
        "started_at",
        "ended_at",
        "starting_capital",
        "ending_equity",
        "trade_count",
    )
    list_filter = ("status",)
    search_fields = ("model__name", "model__owner__username")
    list_select_related = ("model",)
    raw_id_fields = ("model",)
    inlines = [TradeInline]

    @admin.display(description="trades", ordering="trade_count")
    def trade_count(self, obj):
        return obj.trade_count

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(trade_count=Count("trades"))

    def get_readonly_fields(self, request, obj=None):
        return ("model",) if obj is not None else ()

    def delete_model(self, request, obj):
        services.run_delete(user=obj.model.owner, run_id=obj.pk)

    def delete_queryset(self, request, queryset):
        for run in queryset.select_related("model__owner"):
            services.run_delete(user=run.model.owner, run_id=run.pk)


@admin.register(Trade)
class TradeAdmin(admin.ModelAdmin):
    form = TradeAdminForm
    list_display = (
        "id",
        "run",
        "symbol",
        "side",
        "quantity",
        "price",
        "realized_pnl",
        "executed_at",
    )
    list_filter = ("side",)
    search_fields = ("symbol",)
    list_select_related = ("run__model",)
    raw_id_fields = ("run",)
    ordering = ("-executed_at", "-id")
