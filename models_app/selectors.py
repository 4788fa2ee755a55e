"""Reads of models and runs, scoped to their owner: another user's do not exist here."""

from django.db.models import Count, QuerySet

from core.ids import parse_int_id

from .exceptions import ModelNotFound, RunNotFound
from .models import Model, Run


def model_get(*, user, model_id) -> Model:
    """Return one of the user's models; any other id is not found."""
    model = Model.objects.for_user(user).filter(pk=parse_int_id(model_id, field="model")).first()
    if model is None:
        raise ModelNotFound()
    return model


def run_get(*, user, run_id) -> Run:
    """Return one of the user's runs, with its model; any other id is not found."""
    run = (
        Run.objects.for_user(user)
        .select_related("model")
        .filter(pk=parse_int_id(run_id, field="run"))
        .first()
    )
    if run is None:
        raise RunNotFound()
    return run


def model_list(*, user, with_run_count: bool = False) -> QuerySet[Model]:
    """Return the user's models by name; ``with_run_count`` adds each one's ``run_count``."""
    models = Model.objects.for_user(user).order_by("name", "id")
    if with_run_count:
        models = models.annotate(run_count=Count("runs", distinct=True))
    return models


def run_list(*, model: Model) -> QuerySet[Run]:
    """Return the runs of a model, newest first, with their trades."""
    return model.runs.order_by("-created_at", "-id").prefetch_related("trades")


def run_of_model(*, user, model_id, run_id) -> Run:
    """Return one of the user's runs as a run of ``model_id``; any other pair is not found."""
    run = run_get(user=user, run_id=run_id)
    if run.model_id != parse_int_id(model_id, field="model"):
        raise RunNotFound()
    return run


RUN_CONVERSATIONS_SHOWN = 50


def run_conversations(*, user, run: Run, limit: int = RUN_CONVERSATIONS_SHOWN) -> tuple[list, int]:
    """Return the user's conversations about ``run``, latest activity first, and how many
    there are in all (archived ones included).

    Read through the relation chat declares (``chat_sessions``), like
    ``model_conversation_count``: models_app does not import chat.
    """
    sessions = run.chat_sessions.filter(user=user)
    shown = list(
        sessions.only(
            "id",
            "model_id",
            "run_id",
            "title",
            "is_active",
            "archived",
            "detached_label",
            "created_at",
            "last_message_at",
            "activity_at",
            "message_count",
        ).order_by("-activity_at", "-id")[:limit]
    )
    total = len(shown) if len(shown) < limit else sessions.count()
    return shown, total


def model_conversation_count(*, model: Model) -> int:
    """Return how many conversations are about ``model``, its runs' included.

    Counted through the relation chat declares (``chat_sessions``): models_app does not
    import chat.
    """
    return model.chat_sessions.count()
