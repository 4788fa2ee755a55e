"""Create the demo login and a small, deterministic world to chat about.

Idempotent: running it again changes nothing but the demo password (reset to the one
given). Everything is written through the services, as a user would have written it.
"""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from chat import services
from chat.models import Context, Message
from models_app import services as model_services
from models_app.models import Model, Run

DEMO_USERNAME = "demo"
DEFAULT_PASSWORD = "parlor-demo"
ADMIN_USERNAME = "admin"
DEFAULT_ADMIN_PASSWORD = "parlor-admin"
# A person from support (SPEC 4.6): the operator role, no staff access.
OPERATOR_USERNAME = "support"
OPERATOR_DISPLAY_NAME = "Sam"
DEFAULT_OPERATOR_PASSWORD = "parlor-support"
# Fixed ids make the conversations idempotent through conversation_start's client UUID.
SEED_NAMESPACE = uuid.UUID("6f1d1c52-4b7e-4f0e-9a43-2f1c0c5d7a10")
RUN_START = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)

MODELS = [
    {
        "name": "Momentum Scalper",
        "description": "Fast intraday momentum on liquid US large caps.",
        "instructions": "Trade only the first two hours after the open. Prefer tight spreads.",
        "rules": "Risk at most 0.5% of equity per trade. Flat by the close.",
        "trading_mode": Model.TradingMode.PAPER,
        "trading_style": Model.TradingStyle.SCALPING,
        "instrument": "stocks",
        "margin_account": True,
        "buying_power": Decimal("100000.00"),
        "allow_shorting": True,
        "allow_options_strategies": False,
        "allow_hedging": False,
        "allowed_order_types": ["market", "limit", "stop"],
    },
    {
        "name": "Options Swing",
        "description": "Multi-day swings with defined-risk option spreads.",
        "instructions": "Hold three to ten days. Use spreads, never naked options.",
        "rules": "No more than 5% of the account in one position. No margin.",
        "trading_mode": Model.TradingMode.LIVE,
        "trading_style": Model.TradingStyle.SWING,
        "instrument": "options",
        "margin_account": False,
        "buying_power": Decimal("15000.00"),
        "allow_shorting": False,
        "allow_options_strategies": True,
        "allow_hedging": True,
        "allowed_order_types": ["limit"],
    },
]

# The demo run: the scalper's first morning, one position at a time, long only, every
# position closed within the first two hours after the open (9:30 ET is 14:30 UTC in
# January), no loss above the 0.5% risk rule ($125 of $25,000). Each round trip is
# (minutes after RUN_START it opens, minutes held, symbol, quantity, entry, exit).
STARTING_CAPITAL = Decimal("25000.00")
ROUND_TRIPS = [
    (0, 4, "NVDA", 20, "478.60", "482.10"),
    (6, 3, "AAPL", 50, "189.40", "190.10"),
    (12, 5, "TSLA", 30, "241.20", "239.10"),
    (19, 4, "AMD", 40, "149.20", "150.35"),
    (26, 3, "MSFT", 10, "409.50", "411.20"),
    (32, 4, "NVDA", 20, "481.50", "480.30"),
    (39, 5, "TSLA", 25, "238.80", "240.60"),
    (47, 3, "AAPL", 25, "190.80", "190.20"),
    (53, 4, "AMD", 40, "150.90", "150.40"),
    (60, 5, "NVDA", 25, "480.20", "483.40"),
    (68, 3, "MSFT", 20, "411.00", "410.40"),
    (74, 4, "TSLA", 30, "240.90", "239.70"),
    (81, 3, "AAPL", 50, "190.05", "190.95"),
    (88, 4, "AMD", 50, "150.10", "150.80"),
    (95, 5, "NVDA", 10, "483.00", "484.90"),
    (103, 4, "MSFT", 20, "410.10", "411.35"),
]

# (context, title, [(user message, assistant reply), ...]); context is general, the
# index of a model in MODELS, or "run" (the first model's run).
CONVERSATIONS = [
    (
        "general",
        "Position sizing basics",
        [
            (
                "How should I size a position with a fixed risk per trade?",
                "Divide the amount you are willing to lose by the distance to your stop: "
                "risking $200 with a $2 stop means 100 shares.",
            ),
            (
                "And with a volatility-based stop?",
                "Use a multiple of the average true range as the stop distance, then size the "
                "same way; volatile names get smaller positions.",
            ),
        ],
    ),
    (
        "general",
        "Limit vs stop orders",
        [
            (
                "What is the difference between a limit and a stop order?",
                "A limit order fills at your price or better; a stop order becomes a market "
                "order once the stop price trades.",
            ),
        ],
    ),
    (
        0,
        "Scalper configuration",
        [
            (
                "What is this model configured for?",
                "Paper scalping of stocks on a margin account with $100,000 buying power; "
                "shorting is allowed; market, limit and stop orders.",
            ),
            (
                "Could it trade options?",
                "No: options strategies are not allowed in its configuration.",
            ),
        ],
    ),
    (
        0,
        "Tightening the risk rule",
        [
            (
                "Should the scalper risk less than 0.5% per trade?",
                "With dozens of trades a day, 0.25% keeps a losing streak shallow; the "
                "rule can be changed in the model's rules.",
            ),
        ],
    ),
    (
        1,
        "Spreads for the swing model",
        [
            (
                "Which spreads fit this model?",
                "Vertical debit and credit spreads: defined risk, no margin needed, and "
                "limit orders only as the configuration requires.",
            ),
            (
                "Can it hedge?",
                "Yes, hedging is allowed, for example a protective put on a long position.",
            ),
        ],
    ),
    (
        "run",
        "How did the run go?",
        [
            (
                "Summarize this run.",
                "32 trades (16 round trips) in five symbols, AAPL, AMD, MSFT, NVDA and TSLA, "
                "between 14:30 and 16:17 UTC on 2026-01-05. The realized P&L is +$247.00: "
                "equity went from $25,000.00 to $25,247.00.",
            ),
            (
                "Which symbol made the most?",
                "NVDA: +$145.00 over 4 round trips, the largest realized gain of the run. "
                "AAPL made +$65.00, AMD +$61.00 and MSFT +$30.00.",
            ),
            (
                "Any losing symbols?",
                "TSLA lost $54.00 over 3 round trips (one winner, two losers); its worst "
                "trade lost $63.00, within the 0.5% risk rule ($125.00 of $25,000.00). "
                "The other four symbols were positive.",
            ),
        ],
    ),
    (
        "run",
        "Open positions check",
        [
            (
                "Are there open positions left?",
                "No: each of the 16 buys was closed by a sell of the same quantity, so the "
                "run ended flat.",
            ),
        ],
    ),
]


def demo_trades() -> list[dict]:
    """Return the trades of the demo run (ROUND_TRIPS): each buy closed by a sell."""
    trades = []
    for minute, held, symbol, quantity, entry, exit_ in ROUND_TRIPS:
        quantity, entry, exit_ = Decimal(quantity), Decimal(entry), Decimal(exit_)
        opened = RUN_START + timedelta(minutes=minute)
        trades.append(
            {
                "symbol": symbol,
                "side": "buy",
                "quantity": quantity,
                "price": entry,
                "executed_at": opened,
                "realized_pnl": Decimal("0.00"),
            }
        )
        trades.append(
            {
                "symbol": symbol,
                "side": "sell",
                "quantity": quantity,
                "price": exit_,
                "executed_at": opened + timedelta(minutes=held),
                "realized_pnl": ((exit_ - entry) * quantity).quantize(Decimal("0.01")),
            }
        )
    return trades


class Command(BaseCommand):
    help = (
        "Create the demo user (demo / parlor-demo), two models, a run with trades and a few "
        "conversations in every context. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--password", default=DEFAULT_PASSWORD, help="demo user password")
        parser.add_argument(
            "--admin", action="store_true", help="also create a staff superuser 'admin'"
        )
        parser.add_argument("--admin-password", default=DEFAULT_ADMIN_PASSWORD)
        parser.add_argument(
            "--operator-password",
            default=DEFAULT_OPERATOR_PASSWORD,
            help=f"password of the operator login '{OPERATOR_USERNAME}'",
        )

    def handle(self, *args, password, admin, admin_password, operator_password, **options):
        user = self._user(DEMO_USERNAME, password)
        models = [self._model(user, fields) for fields in MODELS]
        run = self._run(user, models[0])
        created = sum(self._conversation(user, models, run, *spec) for spec in CONVERSATIONS)
        self.stdout.write(
            f"Seeded {len(models)} models, 1 run with {run.trades.count()} trades, "
            f"{len(CONVERSATIONS)} conversations ({created} new)."
        )
        self.stdout.write(self.style.SUCCESS(f"Demo login: {DEMO_USERNAME} / {password}"))
        operator = self._user(OPERATOR_USERNAME, operator_password)
        if not operator.display_name:
            operator.display_name = OPERATOR_DISPLAY_NAME
            operator.save(update_fields=["display_name"])
        services.operator_role_set(user=operator, granted=True)
        self.stdout.write(
            f"Operator login (answers at /operator/): {OPERATOR_USERNAME} / {operator_password}"
        )
        if admin:
            self._user(ADMIN_USERNAME, admin_password, staff=True)
            self.stdout.write(
                self.style.SUCCESS(f"Admin login: {ADMIN_USERNAME} / {admin_password}")
            )

    def _user(self, username: str, password: str, *, staff: bool = False):
        user, _ = get_user_model().objects.get_or_create(username=username)
        user.set_password(password)
        if staff:
            user.is_staff = user.is_superuser = True
        user.save()
        return user

    def _model(self, user, fields: dict) -> Model:
        model = Model.objects.for_user(user).filter(name=fields["name"]).first()
        return model or model_services.model_create(owner=user, **fields)

    def _run(self, user, model: Model) -> Run:
        run = model.runs.order_by("id").first()
        if run is not None:
            return run
        trades = demo_trades()
        pnl = sum(trade["realized_pnl"] for trade in trades)
        return model_services.run_create(
            user=user,
            model_id=model.pk,
            trades=trades,
            status=Run.Status.COMPLETED,
            started_at=RUN_START,
            ended_at=trades[-1]["executed_at"],
            starting_capital=STARTING_CAPITAL,
            ending_equity=STARTING_CAPITAL + pnl,
        )

    def _conversation(self, user, models, run, context, title, exchanges) -> bool:
        """Create one conversation and its messages unless they exist; return if new."""
        if context == "general":
            key = {}
        elif context == "run":
            key = {"run_id": run.pk}
        else:
            key = {"model_id": models[context].pk}
        session_id = uuid.uuid5(SEED_NAMESPACE, f"{user.pk}:{title}")
        session, created = services.conversation_start(user=user, session_id=session_id, **key)
        if session.context == Context.DETACHED:
            return False
        for number, (question, answer) in enumerate(exchanges):
            # The client_id makes a second run find the stored messages instead of adding.
            reply = services.reply_start(
                user=user, content=question, session_id=session.pk, client_id=f"seed-{number}"
            )
            assistant = reply.assistant_message
            if assistant is not None and assistant.status == Message.Status.STREAMING:
                services.reply_finish(
                    message_id=assistant.pk,
                    content=answer,
                    status=Message.Status.COMPLETE,
                    prompt_tokens=120 + 40 * number + len(question),
                    completion_tokens=len(answer.split()) * 2,
                )
        services.conversation_set_auto_title(session_id=session.pk, title=title)
        return created
