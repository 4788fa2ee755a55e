"""Pages to list, create, edit and delete models, and to see their runs, trades and the
conversations about a run."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from core.exceptions import DomainError

from . import selectors, services
from .forms import ModelForm


def _model_or_404(user, model_id):
    """Return the user's model; unknown, foreign or out-of-range ids are the 404 page."""
    try:
        return selectors.model_get(user=user, model_id=model_id)
    except DomainError:
        # NotFound, or an id past bigint: the <int:> converter accepts any size.
        raise Http404("Model not found.")


def _run_or_404(user, model_id, run_id):
    """Return the user's run of that model; any other pair is the 404 page."""
    try:
        return selectors.run_of_model(user=user, model_id=model_id, run_id=run_id)
    except DomainError:
        raise Http404("Run not found.")


def _save(form, save):
    """Call a service with the form's data; map its validation errors onto the form."""
    try:
        return save(**form.cleaned_data)
    except ValidationError as exc:
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    return None


@login_required
@require_GET
def model_list(request):
    models = selectors.model_list(user=request.user, with_run_count=True)
    return render(request, "models_app/model_list.html", {"models": models})


@login_required
@require_http_methods(["GET", "POST"])
def model_create(request):
    form = ModelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        model = _save(form, lambda **data: services.model_create(owner=request.user, **data))
        if model is not None:
            messages.success(request, f"Model “{model.name}” created.")
            return redirect("models_app:detail", model.pk)
    return render(request, "models_app/model_form.html", {"form": form, "model": None})


@login_required
@require_GET
def model_detail(request, model_id):
    model = _model_or_404(request.user, model_id)
    runs = selectors.run_list(model=model)
    return render(request, "models_app/model_detail.html", {"model": model, "runs": runs})


@login_required
@require_http_methods(["GET", "POST"])
def model_edit(request, model_id):
    model = _model_or_404(request.user, model_id)
    form = ModelForm(request.POST or None, instance=model)
    if request.method == "POST" and form.is_valid():
        saved = _save(
            form,
            lambda **data: services.model_update(user=request.user, model_id=model.pk, **data),
        )
        if saved is not None:
            messages.success(request, f"Model “{saved.name}” saved.")
            return redirect("models_app:detail", saved.pk)
    return render(request, "models_app/model_form.html", {"form": form, "model": model})


@login_required
@require_http_methods(["GET", "POST"])
def model_delete(request, model_id):
    """GET asks for confirmation; POST deletes, keeping the model's conversations read-only."""
    model = _model_or_404(request.user, model_id)
    if request.method == "POST":
        kept = services.model_delete(user=request.user, model_id=model.pk)
        note = f" {kept} conversation{'s' if kept != 1 else ''} kept, read-only." if kept else ""
        messages.success(request, f"Model “{model.name}” deleted.{note}")
        return redirect("models_app:list")
    return render(
        request,
        "models_app/model_confirm_delete.html",
        {"model": model, "conversation_count": selectors.model_conversation_count(model=model)},
    )


@login_required
@require_GET
def run_detail(request, model_id, run_id):
    """A run: its facts and trades, a way to start a new conversation about it, and the
    user's conversations about it."""
    run = _run_or_404(request.user, model_id, run_id)
    conversations, conversation_total = selectors.run_conversations(user=request.user, run=run)
    return render(
        request,
        "models_app/run_detail.html",
        {
            "model": run.model,
            "run": run,
            "trades": run.trades.all(),
            "conversations": conversations,
            "conversation_total": conversation_total,
        },
    )
