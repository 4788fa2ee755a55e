"""How chat answers what the apps below it announce (they do not import chat)."""

from django.dispatch import receiver

from models_app.signals import model_deleting, run_deleting

from . import services


@receiver(model_deleting, dispatch_uid="chat.keep_model_conversations")
def keep_model_conversations(sender, *, user, model, **kwargs) -> int:
    """Keep a deleted model's conversations, read-only; return how many."""
    return services.conversations_detach(user=user, model=model)


@receiver(run_deleting, dispatch_uid="chat.keep_run_conversations")
def keep_run_conversations(sender, *, user, run, **kwargs) -> int:
    """Keep a deleted run's conversations, read-only; return how many."""
    return services.conversations_detach(user=user, run=run)
