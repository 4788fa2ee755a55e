"""The settings page (SPEC 4.6, /settings/): small forms, each posting to its own URL and
coming back to the page with a message, or with its errors.

It lives in chat, the app on top: it gathers accounts' parts (profile, theme, custom
instructions, API tokens) and chat's (the LLMs on offer, the export, deleting every
conversation). Every write goes through its app's services; /api/me/ and /api/tokens/
do the same through the same services.
"""

from asgiref.sync import sync_to_async
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, Http404, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST

from accounts import selectors as account_selectors
from accounts import services as account_services
from accounts.forms import AppearanceForm, DefaultLLMForm, InstructionsForm, ProfileForm, TokenForm

from . import archive, llm, selectors, services, usage
from .api.serializers import DELETE_ALL_CONFIRMATION
from .exceptions import DomainError, NotFound

CHUNK_BYTES = 64 * 1024


class DeleteAllForm(forms.Form):
    confirm = forms.CharField(
        label=f"Type “{DELETE_ALL_CONFIRMATION}” to confirm",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def clean_confirm(self):
        if self.cleaned_data["confirm"] != DELETE_ALL_CONFIRMATION:
            raise forms.ValidationError(
                f"Type “{DELETE_ALL_CONFIRMATION}” exactly to delete every conversation."
            )
        return self.cleaned_data["confirm"]


def _back(section: str):
    return redirect(reverse("settings:page") + f"#{section}")


def _refused(form: forms.Form, exc: DomainError) -> None:
    """Show a service's refusal on the form, by its field when the form has it."""
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


def _page(request, *, status: int = 200, new_token=None, **bound):
    """Render the page: each form with the user's values, or the one ``bound`` as posted."""
    user = account_selectors.profile_get(user=request.user)
    forms_ = {
        "profile_form": ProfileForm(initial={"display_name": user.display_name}),
        "appearance_form": AppearanceForm(initial={"theme": user.theme}),
        "instructions_form": InstructionsForm(
            initial={"about_me": user.about_me, "response_style": user.response_style}
        ),
        "token_form": TokenForm(),
        "delete_form": DeleteAllForm(),
        **bound,
    }
    if "llm_form" not in forms_:
        forms_["llm_form"] = DefaultLLMForm(
            initial={"default_llm": user.default_llm}, llms=llm.available_llms()
        )
    context = {
        **forms_,
        "tokens": account_selectors.token_list(user=user),
        "new_token": new_token,
        "conversation_count": selectors.session_list(user=user, archived=None).count(),
        "usage": usage.usage_chart(user=user),
        "share_links": selectors.share_list(user=user),
    }
    response = render(request, "settings/settings.html", context, status=status)
    # The page holds a token's value once, and the person's instructions: kept by no cache.
    add_never_cache_headers(response)
    return response


# The sections saved through accounts.services.profile_update: their form, its name in
# the page's context, and what the page says once it is saved.
PROFILE_SECTIONS = {
    "profile": (ProfileForm, "profile_form", "Your display name was saved."),
    "appearance": (AppearanceForm, "appearance_form", "Your theme was saved."),
    "instructions": (
        InstructionsForm,
        "instructions_form",
        "Your custom instructions were saved; your next replies follow them.",
    ),
    "llm": (DefaultLLMForm, "llm_form", "Your default LLM was saved."),
}


@login_required
@require_GET
def settings_page(request):
    """Show every section of the settings."""
    return _page(request)


@login_required
@require_POST
def profile_section(request, section: str):
    """Save one section of the profile; its errors, the service's too, go back on its form."""
    form_class, name, done = PROFILE_SECTIONS[section]
    extra = {"llms": llm.available_llms()} if form_class is DefaultLLMForm else {}
    form = form_class(request.POST, **extra)
    if form.is_valid():
        try:
            account_services.profile_update(
                user=request.user, llms=llm.available_llms, **form.cleaned_data
            )
        except DomainError as exc:
            _refused(form, exc)
        else:
            messages.success(request, done)
            return _back(section)
    return _page(request, status=400, **{name: form})


@login_required
@require_POST
def token_create(request):
    """Create a token and show its value, this once (the page is not redirected to)."""
    form = TokenForm(request.POST)
    if form.is_valid():
        try:
            raw, token = account_services.token_create(
                user=request.user, name=form.cleaned_data["name"]
            )
        except DomainError as exc:
            _refused(form, exc)
        else:
            return _page(request, new_token={"value": raw, "record": token})
    return _page(request, status=400, token_form=form)


@login_required
@require_POST
def token_revoke(request, token_id: int):
    try:
        account_services.token_revoke(user=request.user, token_id=token_id)
    except NotFound:
        raise Http404("No such token.") from None
    messages.success(request, "The token was revoked: it no longer works.")
    return _back("tokens")


async def _chunks(file):
    """Yield a file's bytes in chunks, reading in a thread: the server's loop never waits
    on the disk, and never holds more than a chunk."""
    try:
        while chunk := await sync_to_async(file.read, thread_sensitive=False)(CHUNK_BYTES):
            yield chunk
    finally:
        await sync_to_async(file.close, thread_sensitive=False)()


@login_required
@require_GET
def export_all(request):
    """Download a zip of every conversation (JSON and Markdown) and the settings."""
    spool = archive.export_archive(user=request.user)
    filename = archive.archive_filename()
    if isinstance(request, ASGIRequest):
        # Under ASGI Django reads a synchronous iterator whole into memory before sending
        # it; an asynchronous one is sent as it is read.
        response = StreamingHttpResponse(_chunks(spool), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    else:
        response = FileResponse(
            spool, as_attachment=True, filename=filename, content_type="application/zip"
        )
    add_never_cache_headers(response)
    return response


@login_required
@require_POST
def delete_all(request):
    """Delete every conversation of the user, once they typed the confirmation."""
    form = DeleteAllForm(request.POST)
    if not form.is_valid():
        return _page(request, status=400, delete_form=form)
    deleted = services.conversation_delete_all(user=request.user)
    messages.success(request, f"{deleted} conversation(s) deleted.")
    return _back("data")
