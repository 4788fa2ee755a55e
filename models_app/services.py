"""Writes to models, runs and trades.

Deleting a model or a run announces it first (models_app.signals), in the same
transaction: chat keeps the conversations about it, read-only (invariant 5), without
models_app importing chat.
"""

from django.db import transaction

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


def _only(fields: dict, allowed: tuple[str, ...]) -> dict:
    unknown = set(fields) - set(allowed)
    if unknown:
        raise DomainError(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    return fields


def model_create(*, owner, **fields) -> Model:
    """Create a model for ``owner``; Django's validation errors propagate unchanged."""
    model = Model(owner=owner, **_only(fields, MODEL_FIELDS))
    model.full_clean()
    model.save()
    return model


def model_update(*, user, model_id, **fields) -> Model:
    """Change a model's fields; a model of another user is not found."""
    model = selectors.model_get(user=user, model_id=model_id)
    for name, value in _only(fields, MODEL_FIELDS).items():
        setattr(model, name, value)
    model.full_clean()
    model.save()
    return model


def run_create(*, user, model_id, trades: list[dict] = (), **fields) -> Run:
    """Create a run of one of the user's models, with its trades, in one transaction."""
    model = selectors.model_get(user=user, model_id=model_id)
    with transaction.atomic():
        run = Run(model=model, **_only(fields, RUN_FIELDS))
        run.full_clean()
        run.save()
        rows = []
        for trade_fields in trades:
            trade = Trade(run=run, **_only(dict(trade_fields), TRADE_FIELDS))
            trade.full_clean()
            rows.append(trade)
        Trade.objects.bulk_create(rows)
    return run


def run_update(*, user, run_id, **fields) -> Run:
    run = selectors.run_get(user=user, run_id=run_id)
    for name, value in _only(fields, RUN_FIELDS).items():
        setattr(run, name, value)
    run.full_clean()
    run.save()
    return run
