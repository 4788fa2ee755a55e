from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone


class OwnedQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(owner=user)


class Model(models.Model):
    """A user's assistant profile: a trading model whose configuration the AI is told."""

    class TradingMode(models.TextChoices):
        PAPER = "paper", "Paper"
        LIVE = "live", "Live"

    class TradingStyle(models.TextChoices):
        SCALPING = "scalping", "Scalping"
        DAY = "day", "Day trading"
        SWING = "swing", "Swing trading"
        POSITION = "position", "Position trading"

    class OrderType(models.TextChoices):
        """The order types a model may be allowed (``allowed_order_types``): a fixed list."""

        MARKET = "market", "Market"
        LIMIT = "limit", "Limit"
        STOP = "stop", "Stop"
        STOP_LIMIT = "stop_limit", "Stop limit"
        TRAILING_STOP = "trailing_stop", "Trailing stop"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="trading_models"
    )
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    llm = models.CharField("LLM", max_length=120, blank=True, help_text="Empty: LLM_MODEL.")
    instructions = models.TextField(blank=True)
    rules = models.TextField(blank=True)
    trading_mode = models.CharField(
        max_length=10, choices=TradingMode.choices, default=TradingMode.PAPER
    )
    trading_style = models.CharField(
        max_length=10, choices=TradingStyle.choices, default=TradingStyle.DAY
    )
    instrument = models.CharField(max_length=60, blank=True, default="stocks")
    margin_account = models.BooleanField(default=False)
    buying_power = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    allow_shorting = models.BooleanField(default=False)
    allow_options_strategies = models.BooleanField(default=False)
    allow_hedging = models.BooleanField(default=False)
    allowed_order_types = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["owner", "name"], name="model_owner_name")]

    def __str__(self):
        return self.name

    @property
    def effective_llm(self) -> str:
        return self.llm or settings.LLM_MODEL


class RunQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(model__owner=user)


class Run(models.Model):
    """One run of a model, with the trades it made."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        STOPPED = "stopped", "Stopped"

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    starting_capital = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    ending_equity = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Run #{self.pk} of {self.model.name}"

    @property
    def pnl(self) -> Decimal | None:
        if self.ending_equity is None:
            return None
        return self.ending_equity - self.starting_capital


class Trade(models.Model):
    class Side(models.TextChoices):
        BUY = "buy", "Buy"
        SELL = "sell", "Sell"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="trades")
    symbol = models.CharField(max_length=20)
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.DecimalField(max_digits=14, decimal_places=4)
    price = models.DecimalField(max_digits=14, decimal_places=4)
    executed_at = models.DateTimeField(default=timezone.now)
    realized_pnl = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))

    class Meta:
        ordering = ["executed_at", "id"]
        indexes = [models.Index(fields=["run", "symbol", "executed_at"], name="trade_run_symbol")]

    def __str__(self):
        return f"{self.side} {self.quantity} {self.symbol} @ {self.price}"
