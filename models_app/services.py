"""Writes to models, runs and trades, and the rules their values keep.

Every door (the pages' form, the API's serializers, the admin, seed_demo) writes through
these functions, or checks with ``model_problems``/``run_problems``/``trade_problems``,
so a rule is written once: Django's field checks first (``full_clean``), then the rules
of the domain, all of a request's problems at once, by field, and nothing stored.

Deleting a model or a run announces it first (models_app.signals), in the same
transaction: chat keeps the conversations about it, read-only (invariant 5), without
models_app importing chat.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Min

from core.exceptions import DomainError

from . import selectors, signals
from .models import Model, Run, Trade


def _kept(answers: list) -> int:
    """Return how many rows the receivers of a deletion signal kept."""
    return sum(kept for _, kept in answers if isinstance(kept, int))


def model_delete(*, user, model_id) -> int:
    """Delete a model and its runs; return how many conversations were kept.

    Its conversations are kept, inactive and read-only: chat detaches them when
    ``model_deleting`` is sent (taking the user lock), before the rows go.
    """
    with transaction.atomic():
        model = selectors.model_get(user=user, model_id=model_id)
        kept = _kept(signals.model_deleting.send(Model, user=user, model=model))
        model.delete()
    return kept


def run_delete(*, user, run_id) -> int:
    """Delete a run and its trades; return how many conversations were kept.

    Its conversations are kept, inactive and read-only (``run_deleting``), as for a model.
    """
    with transaction.atomic():
        run = selectors.run_get(user=user, run_id=run_id)
        kept = _kept(signals.run_deleting.send(Run, user=user, run=run))
        run.delete()
    return kept


MODEL_FIELDS = (
    "name",
    "description",
    "llm",
    "instructions",
    "rules",
    "trading_mode",
    "trading_style",
    "instrument",
    "margin_account",
    "buying_power",
    "allow_shorting",
    "allow_options_strategies",
    "allow_hedging",
    "allowed_order_types",
)
RUN_FIELDS = ("status", "started_at", "ended_at", "starting_capital", "ending_equity")
TRADE_FIELDS = ("symbol", "side", "quantity", "price", "executed_at", "realized_pnl")


Problems = dict[str, list[str]]

ORDER_TYPES = tuple(Model.OrderType.values)


def _moment(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def unknown_order_type_message(value: str) -> str:
    """Return the error for an order type that is not in the fixed list (the form's too)."""
    return f"“{value}” is not an order type: choose from {', '.join(ORDER_TYPES)}."


def _add(problems: Problems, field: str, message: str) -> None:
    problems.setdefault(field, []).append(message)


def model_problems(values: Mapping) -> Problems:
    """Return what is wrong with a model's trading configuration, by field.

    ``values`` holds the model's fields as Python values; a field that is absent (it
    failed Django's own checks) is not looked at.
    """
    problems: Problems = {}
    name = values.get("name")
    if isinstance(name, str) and not name.strip():
        _add(problems, "name", "The name cannot be blank.")
    buying_power = values.get("buying_power")
    if isinstance(buying_power, Decimal) and buying_power < 0:
        _add(problems, "buying_power", "Buying power cannot be negative.")
    if "allowed_order_types" in values:
        order_types = values["allowed_order_types"]
        if not isinstance(order_types, list) or not all(isinstance(v, str) for v in order_types):
            _add(
                problems,
                "allowed_order_types",
                f"Allowed order types must be a list of order types ({', '.join(ORDER_TYPES)}).",
            )
        else:
            for value in dict.fromkeys(order_types):
                if value not in ORDER_TYPES:
                    _add(problems, "allowed_order_types", unknown_order_type_message(value))
                elif order_types.count(value) > 1:
                    _add(problems, "allowed_order_types", f"“{value}” is listed more than once.")
    return problems


# A run has not ended while it is pending or running.
UNENDED = (Run.Status.PENDING, Run.Status.RUNNING)


def run_problems(values: Mapping, *, trades_span: tuple | None = None) -> Problems:
    """Return what is wrong with a run's values, by field.

    ``trades_span`` is (first, last) ``executed_at`` of the trades it already has: its
    times must cover them. Ending equity may be below zero (a margin account can owe
    more than it holds); starting capital may not.
    """
    problems: Problems = {}
    capital = values.get("starting_capital")
    if isinstance(capital, Decimal) and capital < 0:
        _add(problems, "starting_capital", "Starting capital cannot be negative.")
    started, ended = values.get("started_at"), values.get("ended_at")
    if ended is not None and "ended_at" in values:
        if "started_at" in values and started is None:
            _add(problems, "started_at", "A run that has ended needs its start time too.")
        elif started is not None and ended < started:
            _add(
                problems,
                "ended_at",
                f"The run cannot end ({_moment(ended)}) before it starts ({_moment(started)}).",
            )
        status = values.get("status")
        if status in UNENDED:
            label = Run.Status(status).label.lower()
            _add(
                problems,
                "ended_at",
                f"A {label} run has not ended: leave the end time empty, or set the status "
                "to completed, failed or stopped.",
            )
    if trades_span and trades_span[0] is not None:
        first, last = trades_span
        if started is not None and started > first:
            _add(
                problems,
                "started_at",
                f"The run cannot start after its first trade ({_moment(first)}).",
            )
        if ended is not None and ended < last:
            _add(
                problems,
                "ended_at",
                f"The run cannot end before its last trade ({_moment(last)}).",
            )
    return problems


def trades_span(run: Run) -> tuple | None:
    """Return the (first, last) ``executed_at`` of a stored run's trades (None, None
    without trades), or None for a run not stored yet."""
    if run.pk is None:
        return None
    span = run.trades.aggregate(first=Min("executed_at"), last=Max("executed_at"))
    return span["first"], span["last"]


def trade_problems(values: Mapping, *, run: Mapping) -> Problems:
    """Return what is wrong with a trade's values, by field; ``run`` holds its run's times."""
    problems: Problems = {}
    symbol = values.get("symbol")
    if isinstance(symbol, str) and not symbol.strip():
        _add(problems, "symbol", "The symbol cannot be blank.")
    quantity = values.get("quantity")
    if isinstance(quantity, Decimal) and quantity <= 0:
        _add(problems, "quantity", "The quantity must be more than zero.")
    price = values.get("price")
    if isinstance(price, Decimal) and price <= 0:
        _add(problems, "price", "The price must be more than zero.")
    at = values.get("executed_at")
    started, ended = run.get("started_at"), run.get("ended_at")
    if at is not None:
        if started is not None and at < started:
            _add(
                problems,
                "executed_at",
                f"The trade ({_moment(at)}) is before its run starts ({_moment(started)}).",
            )
        elif ended is not None and at > ended:
            _add(
                problems,
                "executed_at",
                f"The trade ({_moment(at)}) is after its run ends ({_moment(ended)}).",
            )
    return problems


def _checked(instance, fields: tuple[str, ...], rules, *, exclude=(), **context) -> Problems:
    """Return the problems of ``instance``: Django's field checks, then ``rules``.

    The rules see only the fields that passed Django's checks, as Python values.
    """
    problems: Problems = {}
    try:
        instance.full_clean(exclude=exclude)
    except ValidationError as exc:
        problems = {name: list(messages) for name, messages in exc.message_dict.items()}
    values = {name: getattr(instance, name) for name in fields if name not in problems}
    for name, messages in rules(values, **context).items():
        problems.setdefault(name, []).extend(messages)
    return problems


def _only(fields: dict, allowed: tuple[str, ...]) -> dict:
    unknown = set(fields) - set(allowed)
    if unknown:
        raise DomainError(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    return fields


def model_create(*, owner, **fields) -> Model:
    """Create a model for ``owner``; invalid values raise one ValidationError, by field."""
    model = Model(owner=owner, **_only(fields, MODEL_FIELDS))
    if problems := _checked(model, MODEL_FIELDS, model_problems):
        raise ValidationError(problems)
    model.save()
    return model


def model_update(*, user, model_id, **fields) -> Model:
    """Change a model's fields; a model of another user is not found."""
    model = selectors.model_get(user=user, model_id=model_id)
    for name, value in _only(fields, MODEL_FIELDS).items():
        setattr(model, name, value)
    if problems := _checked(model, MODEL_FIELDS, model_problems):
        raise ValidationError(problems)
    model.save()
    return model


def run_create(*, user, model_id, trades: list[dict] = (), **fields) -> Run:
    """Create a run of one of the user's models, with its trades, in one transaction.

    A trade's problems are named ``trades.<index>.<field>``, as the API names them.
    """
    model = selectors.model_get(user=user, model_id=model_id)
    run = Run(model=model, **_only(fields, RUN_FIELDS))
    problems = _checked(run, RUN_FIELDS, run_problems)
    times = {
        name: getattr(run, name) for name in ("started_at", "ended_at") if name not in problems
    }
    rows = []
    for index, trade_fields in enumerate(trades):
        trade = Trade(run=run, **_only(dict(trade_fields), TRADE_FIELDS))
        found = _checked(trade, TRADE_FIELDS, trade_problems, exclude=["run"], run=times)
        for name, messages in found.items():
            suffix = "" if name == "__all__" else f".{name}"
            problems.setdefault(f"trades.{index}{suffix}", []).extend(messages)
        rows.append(trade)
    if problems:
        raise ValidationError(problems)
    with transaction.atomic():
        run.save()
        Trade.objects.bulk_create(rows)
    return run


def run_update(*, user, run_id, **fields) -> Run:
    """Change a run's fields (not its trades); its times must still cover its trades."""
    run = selectors.run_get(user=user, run_id=run_id)
    for name, value in _only(fields, RUN_FIELDS).items():
        setattr(run, name, value)
    problems = _checked(run, RUN_FIELDS, run_problems, trades_span=trades_span(run))
    if problems:
        raise ValidationError(problems)
    run.save()
    return run
