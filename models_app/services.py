"""Writes to models and runs that touch conversations (invariant 5)."""

from django.db import transaction

from chat import selectors
from chat.models import ChatSession
from chat.services import lock_user


def model_delete(*, user, model_id) -> int:
    """Delete a model and its runs; keep its conversations, inactive and read-only.

    Returns how many conversations were kept. Takes the user lock, like every function
    that changes which session of a context is active.
    """
    with transaction.atomic():
        lock_user(user)
        model = selectors.model_get(user=user, model_id=model_id)
        kept = ChatSession.objects.filter(model=model).update(
            is_active=False, detached_label=f"{model.name} (deleted model)"[:200]
        )
        model.delete()
    return kept


def run_delete(*, user, run_id) -> int:
    """Delete a run and its trades; keep its conversations, inactive and read-only."""
    with transaction.atomic():
        lock_user(user)
        run = selectors.run_get(user=user, run_id=run_id)
        kept = ChatSession.objects.filter(run=run).update(
            is_active=False, detached_label=f"Run #{run.pk} of {run.model.name} (deleted run)"[:200]
        )
        run.delete()
    return kept
