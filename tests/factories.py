"""factory_boy factories for every model; tests build data only through these."""

from datetime import timedelta
from decimal import Decimal

import factory
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from chat.models import ChatSession, Message, UsageDay
from chat.services import PREVIEW_CHARS, provisional_title
from chat.usage import today
from models_app.models import Model, Run, Trade


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-for-tests-123")


class ModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Model

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"Model {n}")
    description = "A test trading model."
    instructions = "Prefer liquid large caps."
    rules = "Never risk more than 1% per trade."
    trading_mode = Model.TradingMode.PAPER
    trading_style = Model.TradingStyle.SWING
    instrument = "stocks"
    margin_account = True
    buying_power = Decimal("25000.00")
    allow_shorting = True
    allowed_order_types = factory.LazyFunction(lambda: ["market", "limit"])


class RunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Run

    model = factory.SubFactory(ModelFactory)
    status = Run.Status.COMPLETED
    started_at = factory.LazyFunction(lambda: timezone.now() - timezone.timedelta(days=1))
    ended_at = factory.LazyFunction(timezone.now)
    starting_capital = Decimal("10000.00")
    ending_equity = Decimal("10450.00")


class TradeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Trade

    run = factory.SubFactory(RunFactory)
    symbol = factory.Iterator(["AAPL", "MSFT", "NVDA"])
    side = Trade.Side.BUY
    quantity = Decimal("10")
    price = Decimal("100.50")
    realized_pnl = Decimal("0")


class ChatSessionFactory(factory.django.DjangoModelFactory):
    """A session row made directly; use the services when the invariant matters."""

    class Meta:
        model = ChatSession

    user = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"Conversation {n}")
    is_active = False


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    session = factory.SubFactory(ChatSessionFactory)
    role = Message.Role.USER
    content = factory.Sequence(lambda n: f"Message number {n}")
    # A new message follows the conversation's current leaf, as a send's does.
    parent = factory.LazyAttribute(
        lambda o: Message.objects.filter(session=o.session, on_path=True).order_by("-id").first()
    )


def append_message(session, content, role=Message.Role.USER, at=None) -> Message:
    """Add a message row to ``session`` and keep the session's counters, as a send would.

    Test data only (no reply, no generation); the rules of sending are chat.services'.
    """
    at = at or timezone.now()
    message = MessageFactory(
        session=session, role=role, content=content, created_at=at, updated_at=at
    )
    changes = {
        "message_count": F("message_count") + 1,
        "last_message_at": at,
        "activity_at": at,
        "updated_at": at,
    }
    if content:
        changes["preview"] = " ".join(content.split())[:PREVIEW_CHARS]
    if role == Message.Role.USER and not session.title:
        changes["title"] = session.title = provisional_title(content)
    ChatSession.objects.filter(pk=session.pk).update(**changes)
    return message


class UsageDayFactory(factory.django.DjangoModelFactory):
    """A user's tokens of one UTC day with one LLM (``days_ago``: 0 is today)."""

    class Meta:
        model = UsageDay
        exclude = ("days_ago",)

    user = factory.SubFactory(UserFactory)
    days_ago = 0
    date = factory.LazyAttribute(lambda o: today() - timedelta(days=o.days_ago))
    llm = "parlor-dev"
    prompt_tokens = 0
    completion_tokens = 0


def spent(user, tokens: int, *, days_ago: int = 0, llm: str = "parlor-dev") -> UsageDay:
    """Record ``tokens`` of ``user``'s usage ``days_ago`` UTC days ago, half of them prompt."""
    return UsageDayFactory(
        user=user,
        days_ago=days_ago,
        llm=llm,
        prompt_tokens=tokens // 2,
        completion_tokens=tokens - tokens // 2,
    )
