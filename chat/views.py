"""Pages and htmx partials of the chat UI.

Thin: every read goes through ``chat.selectors`` and every write through ``chat.services``.
A foreign or unknown id is a 404 page, the same as a missing one (invariant 6).
"""

import functools
import json
import re
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from models_app import selectors as model_selectors
from models_app.models import Model

from . import llm, rendering, selectors, services
from .exceptions import ConversationReadOnly, DomainError, NotFound
from .models import Context, Message
from .text import clean_text

MESSAGE_PAGE = 50
SEARCH_RESULTS = 20
# The event an htmx answer to a signed-out person triggers in the page (static/js/app.js
# shows the notice; static/js/chat.js stops its socket). chat.js raises it too.
SIGNED_OUT_EVENT = "parlor:signed-out"


def _page_path(request) -> str:
    """Return the path (and query) of the page a request comes from: the page itself, or
    for an htmx request the page that sent it, when it is one of this site's."""
    current = (request.htmx.current_url or "") if request.htmx else ""
    if current and url_has_allowed_host_and_scheme(
        current, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        parts = urlsplit(current)
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return reverse("chat:new") if request.htmx else request.get_full_path()


def signed_out(request) -> HttpResponse:
    """Answer a request of a person who is not signed in (any more), when it is not a page.

    401 with the "You are signed out" notice, linking to the sign-in page with ``next``
    back to the page; ``HX-Trigger`` tells the page, which shows its own copy of the
    notice (htmx swaps no 4xx) and keeps what is typed in the composer.
    """
    login_url = resolve_url(settings.LOGIN_URL) + "?" + urlencode({"next": _page_path(request)})
    response = render(request, "partials/_signed_out.html", {"login_url": login_url}, status=401)
    response["HX-Trigger"] = SIGNED_OUT_EVENT
    return response


def login_required(view):
    """Django's ``login_required`` for pages (a redirect to sign in, with ``next``); an
    htmx request of a signed-out person gets ``signed_out``'s 401 instead, which htmx
    does not follow into a sign-in form swapped into the sidebar."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.user.is_authenticated:
            return view(request, *args, **kwargs)
        if request.htmx:
            return signed_out(request)
        return redirect_to_login(request.get_full_path())

    return wrapper


def domain_errors(view):
    """Turn a NotFound or a malformed id (an id in the URL or a page anchor) into the 404
    page, and any other refused input into the 400 page: never a 500."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except NotFound:
            raise Http404("Not found.")
        except DomainError as exc:
            if exc.field in {"session", "id", "model", "run", "message", "before", "group"}:
                raise Http404(exc.message)
            # Rendered here, not raised as BadRequest: a refused value is no server trouble
            # and needs no traceback in the log.
            return render(request, "400.html", {"reason": exc.message}, status=exc.status)

    return wrapper


def _offset_param(request) -> int:
    """Return the ``offset`` query parameter (0 when absent); the selector bounds it."""
    value = request.GET.get("offset", "0")
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise DomainError("offset must be a whole number.", field="offset")
    return int(value)


def _model_facts(model: Model) -> list[tuple[str, str]]:
    """Return the key configuration of a model as (label, value) pairs for headers."""
    facts = [
        ("Mode", model.get_trading_mode_display()),
        ("Style", model.get_trading_style_display()),
        ("Instrument", model.instrument or "—"),
        ("Buying power", f"${model.buying_power:,.2f}"),
        ("Margin", "yes" if model.margin_account else "no"),
        ("Shorting", "allowed" if model.allow_shorting else "not allowed"),
    ]
    if model.allow_options_strategies:
        facts.append(("Options", "allowed"))
    if model.allow_hedging:
        facts.append(("Hedging", "allowed"))
    if model.allowed_order_types:
        facts.append(("Orders", ", ".join(model.allowed_order_types)))
    facts.append(("LLM", model.effective_llm))
    return facts


def _tag_param(request, *, lenient: bool = False) -> str | None:
    """Return the sidebar's tag filter (``tag`` in the query, or in the form an htmx write
    sends), as a tag name is stored; None when there is none.

    A malformed one is the 400 page (``domain_errors``), or with ``lenient`` (a page's
    address) no filter.
    """
    raw = request.POST.get("tag") if request.method == "POST" else None
    raw = raw if raw is not None else request.GET.get("tag")
    if not raw:
        return None
    try:
        return selectors.parse_tag(raw)
    except DomainError:
        if lenient:
            return None
        raise


def sidebar_context(user, *, archived: bool = False, tag: str | None = None) -> dict:
    """Return the template context of the sidebar groups, filtered by ``tag`` when given.

    Five queries whatever the size: the sessions, their tags, the models, the folders, the
    tag counts. The folders come first, then general (its conversations in no folder).
    """
    sessions = selectors.sidebar_sessions(user=user, archived=archived, tag=tag)
    models = list(model_selectors.model_list(user=user).only("id", "name"))
    by_key: dict = {}
    for session in sessions:
        key = ("folder", session.folder_id) if session.folder_id else session.group_key
        by_key.setdefault(key, []).append(session)
    page = selectors.SIDEBAR_PAGE
    groups = [
        {
            "key": f"folder-{folder.pk}",
            "label": folder.name,
            "folder": folder,
            "sessions": by_key.get(("folder", folder.pk), []),
        }
        for folder in selectors.folder_list(user=user)
    ]
    groups.append(
        {
            "key": Context.GENERAL,
            "label": Context.GENERAL.label,
            "new_url": reverse("chat:new"),
            "sessions": by_key.get(selectors.GROUP_GENERAL, []),
        }
    )
    for model in models:
        groups.append(
            {
                "key": f"model-{model.pk}",
                "label": model.name,
                "model": model,
                "new_url": reverse("chat:model_new", args=[model.pk]),
                "sessions": by_key.get(model.pk, []),
            }
        )
    if detached := by_key.get(selectors.GROUP_DETACHED):
        groups.append({"key": Context.DETACHED, "label": "Deleted model", "sessions": detached})
    for group in groups:
        group["has_more"] = len(group["sessions"]) >= page
        group["next_offset"] = page
    tags = selectors.tag_counts(user=user, archived=archived)
    if tag and not any(t["name"] == tag for t in tags):
        # Filtered by a name no conversation carries (any more): still the one selected.
        tags = sorted([*tags, {"name": tag, "count": 0}], key=lambda t: t["name"])
    view = {"archived": "1"} if archived else {}
    return {
        "groups": groups,
        "archived": archived,
        "tag": tag or "",
        "tag_counts": tags,
        "has_sessions": bool(sessions),
        # The query of this view of the sidebar, unfiltered and filtered by tag.
        "view_query": urlencode(view),
        "tag_query": urlencode({**view, "tag": tag}) if tag else urlencode(view),
    }


def _duration(seconds: int) -> str:
    """Return a duration as people say it: "24 hours", "30 minutes", "7 days"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        # A day or two reads better in hours ("24 hours", "36 hours").
        if seconds >= size and seconds % size == 0 and (unit != "day" or seconds > 2 * size):
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "0 seconds"


def _markdown_rules() -> str:
    """Return the server's sanitising allow-list as JSON, for the page's own Markdown
    rendering (static/js/markdown.js) of what it shows before the server's: one list."""
    return json.dumps(
        {
            "tags": sorted(rendering.ALLOWED_TAGS),
            "attributes": {tag: sorted(v) for tag, v in rendering.ALLOWED_ATTRIBUTES.items()},
            "url_schemes": sorted(rendering.URL_SCHEMES),
            "link_rel": rendering.LINK_REL,
        }
    )


def _owner(request, session):
    """The owner of ``session``: the caller, or read (an operator's view)."""
    return request.user if session.user_id == request.user.pk else session.user


def _chat_page(request, *, session=None, model=None, run=None, operator_view=False, operators=None):
    """Render the chat page: a stored conversation, or an ephemeral one (no row yet).

    ``operator_view``: as an operator who joined it sees it (chat.views_operator), without
    the operator's own sidebar; ``operators``: the operators in it (read when not given).
    """
    messages, has_more, streaming_id = [], False, None
    if session is not None and operators is None:
        operators = (
            selectors.operators_in([session.pk]).get(session.pk, [])
            if session.operators_present
            else []
        )
    operators = operators or []
    if session is not None:
        model, run = session.model, session.run
        messages, has_more = selectors.message_page(session=session, limit=MESSAGE_PAGE)
        selectors.message_details(messages, user=request.user)
        streaming_id = next((m.pk for m in messages if m.status == Message.Status.STREAMING), None)
    context = {
        "session": session,
        "model": model,
        "run": run,
        "model_facts": _model_facts(model) if model else [],
        "messages": messages,
        "has_more": has_more,
        "streaming_id": streaming_id,
        "read_only": session is not None and session.context == Context.DETACHED,
        "temporary": session is not None and session.temporary,
        **llm_picker(request.user, session=session, model=model),
        "temporary_ttl": _duration(settings.TEMPORARY_CHAT_TTL),
        "url_base": f"/m/{model.pk}/c/" if model and not run else "/c/",
        "current_id": str(session.pk) if session else "",
        "max_message_chars": settings.MAX_MESSAGE_CHARS,
        "markdown_rules": _markdown_rules(),
        "operator_view": operator_view,
        "operator_names": [user.shown_name for user in operators],
        "operator_names_json": json.dumps([user.shown_name for user in operators]),
        "handoff_requested": session is not None and session.handoff_requested_at is not None,
        "owner_name": _owner(request, session).shown_name if session is not None else "",
    }
    if not operator_view:
        context.update(sidebar_context(request.user, tag=_tag_param(request, lenient=True)))
    return render(request, "chat/chat.html", context)


@login_required
def home(request):
    return redirect("chat:new")


@login_required
@require_GET
def chat_new(request):
    """Show an empty, ephemeral chat: nothing is stored until the first message."""
    return _chat_page(request)


@login_required
@require_GET
@domain_errors
def model_new(request, model_id):
    model = model_selectors.model_get(user=request.user, model_id=model_id)
    return _chat_page(request, model=model)


@login_required
@require_GET
@domain_errors
def session_open(request, session_id, model_id=None):
    """Open a conversation and make it the active one of its context."""
    try:
        session = services.conversation_resume(user=request.user, session_id=session_id)
    except ConversationReadOnly:
        session = selectors.session_get(user=request.user, session_id=session_id)
    canonical = session.get_absolute_url()
    if request.path != canonical:
        return redirect(canonical)
    return _chat_page(request, session=session)


@login_required
@require_GET
@domain_errors
def run_chat(request, model_id, run_id):
    """Open the run's active conversation, or an ephemeral one when it has none."""
    model, run = selectors.context_resolve(user=request.user, model_id=model_id, run_id=run_id)
    session = selectors.session_active(user=request.user, model_id=model.pk, run_id=run.pk)
    if session is not None:
        return redirect(session.get_absolute_url())
    return _chat_page(request, model=model, run=run)


@login_required
@require_GET
@domain_errors
def run_new(request, model_id, run_id):
    """Show an empty, ephemeral conversation about a run, as ``model_new`` does for a model.

    Unlike ``run_chat`` it never opens the run's active conversation: the first message
    starts a new one (with the page's fresh id), which becomes the run's active one.
    """
    model, run = selectors.context_resolve(user=request.user, model_id=model_id, run_id=run_id)
    return _chat_page(request, model=model, run=run)


@login_required
@require_GET
@domain_errors
def older_messages(request, session_id):
    """Return the page of messages before ``before`` (scrolling up)."""
    session = selectors.session_get(user=request.user, session_id=session_id)
    return _message_page(request, session, before=request.GET.get("before"))


def _message_page(request, session, *, before=None):
    """Render a page of the current path's messages (the newest, or those before
    ``before``) as the chat page shows them, with their versions and ratings."""
    messages, has_more = selectors.message_page(
        session=session, before_id=before, limit=MESSAGE_PAGE
    )
    selectors.message_details(messages, user=request.user)
    return render(
        request,
        "chat/partials/_message_page.html",
        {"session": session, "messages": messages, "has_more": has_more},
    )


@login_required
@require_GET
@domain_errors
def message_detail(request, session_id, message_id):
    """Return one message as the page renders it, or with ``?question=1`` the user message
    it answers (a tab that sees a reply start elsewhere shows what it answers)."""
    session = selectors.session_get(user=request.user, session_id=session_id)
    message = selectors.message_get(session=session, message_id=message_id)
    if request.GET.get("question"):
        if message.reply_to_id is None:
            raise Http404("This message answers no question.")
        message = selectors.message_get(session=session, message_id=message.reply_to_id)
    selectors.message_details([message], user=request.user)
    return render(request, "chat/partials/_message.html", {"message": message})


@login_required
@require_POST
@domain_errors
def session_branch(request, session_id):
    """Switch to another version of a turn (``message``): return the new path's newest
    messages, as the page shows them."""
    session = services.conversation_branch(
        user=request.user, session_id=session_id, message_id=request.POST.get("message")
    )
    return _message_page(request, session)


@login_required
@require_POST
@domain_errors
def message_feedback(request, session_id, message_id):
    """Rate a reply (``rating`` up or down; the rating it has already clears it) and
    return the reply as the page shows it."""
    session = selectors.session_get(user=request.user, session_id=session_id)
    message = selectors.message_get(session=session, message_id=message_id)
    rating = request.POST.get("rating") or None
    services.feedback_set(user=request.user, message_id=message.pk, rating=rating)
    selectors.message_details([message], user=request.user)
    return render(request, "chat/partials/_message.html", {"message": message})


@login_required
@require_GET
@domain_errors
def sidebar(request):
    """Return the sidebar groups (after a new conversation, to show the archive, or the
    conversations carrying the tag ``?tag=``)."""
    archived = request.GET.get("archived") == "1"
    context = sidebar_context(request.user, archived=archived, tag=_tag_param(request))
    context["current_id"] = _current_session_id(request)
    return render(request, "chat/partials/_sidebar_groups.html", context)


@login_required
@require_GET
@domain_errors
def sidebar_more(request):
    """Return the next page of one sidebar group (loaded when scrolled into view)."""
    offset = _offset_param(request)
    archived = request.GET.get("archived") == "1"
    group = request.GET.get("group", "")
    tag = _tag_param(request)
    sessions, has_more = selectors.sidebar_group_page(
        user=request.user, group=group, offset=offset, archived=archived, tag=tag
    )
    return render(
        request,
        "chat/partials/_session_page.html",
        {
            "sessions": sessions,
            "group": {"key": group, "has_more": has_more, "next_offset": offset + len(sessions)},
            "archived": archived,
            "tag": tag or "",
            "current_id": _current_session_id(request),
        },
    )


def _highlight(snippet: str, query: str) -> list[tuple[str, bool]]:
    """Split a search snippet into (text, is_match) parts around the query's words.

    The selector's own match marks are dropped: they are ``**``, which Markdown in the
    message text uses too.
    """
    text = " ".join((snippet or "").replace(selectors.SNIPPET_MARK, "").split())
    words = sorted({re.escape(word) for word in query.split()}, key=len, reverse=True)
    if not words:
        return [(text, False)]
    parts = re.split("(" + "|".join(words) + ")", text, flags=re.IGNORECASE)
    return [(part, index % 2 == 1) for index, part in enumerate(parts) if part]


@login_required
@require_GET
@domain_errors
def search(request):
    """Return the conversations matching ``q`` with a snippet around the match (of those
    carrying the tag ``?tag=``, when the sidebar is filtered by one)."""
    query = " ".join(clean_text(request.GET.get("q", "")).split())
    query = query[: selectors.SEARCH_QUERY_MAX_CHARS]
    tag = _tag_param(request)
    results = []
    if query:
        sessions, _ = selectors.session_search(
            user=request.user, query=query, archived=None, tag=tag, limit=SEARCH_RESULTS
        )
        results = [{"session": s, "snippet": _highlight(s.snippet, query)} for s in sessions]
    return render(
        request,
        "chat/partials/_search_results.html",
        {"query": query, "results": results, "tag": tag or ""},
    )


def _current_session_id(request) -> str:
    """Return the conversation id in the URL of the page that sent an htmx request."""
    url = (request.htmx.current_url or "") if request.htmx else ""
    found = re.search(r"/c/([0-9a-f-]{36})", url)
    return found.group(1) if found else ""


def _after_write(request, session=None):
    """Answer an htmx write with the refreshed sidebar; a plain form post with a redirect."""
    if not request.htmx:
        return redirect(session.get_absolute_url() if session else "chat:new")
    context = sidebar_context(
        request.user,
        archived=request.POST.get("archived_view") == "1",
        tag=_tag_param(request, lenient=True),
    )
    context["current_id"] = _current_session_id(request)
    return render(request, "chat/partials/_sidebar_groups.html", context)


def _item(request, session):
    """Render one conversation's sidebar item (after a rename or a change of its tags), its
    link carrying the list's tag filter (sent along by the form: hx-include)."""
    context = {
        "session": session,
        "current_id": _current_session_id(request),
        "archived": session.archived,
        "tag": _tag_param(request, lenient=True) or "",
    }
    return render(request, "chat/partials/_session_item.html", context)


@login_required
@require_http_methods(["GET", "POST"])
@domain_errors
def session_rename(request, session_id):
    """GET: the inline rename form; POST: store the new title and return the item."""
    session = selectors.session_get(user=request.user, session_id=session_id)
    error = ""
    if request.method == "POST":
        try:
            session = services.conversation_update(
                user=request.user, session_id=session.pk, title=request.POST.get("title", "")
            )
        except DomainError as exc:
            error = exc.message
        else:
            if not request.htmx:
                return redirect(session.get_absolute_url())
            return _item(request, session)
    return render(
        request,
        "chat/partials/_rename_form.html",
        {"session": session, "error": error},
        # htmx swaps only 2xx answers: the form with its error must be one of them.
        status=400 if error and not request.htmx else 200,
    )


def _tags_wanted(request) -> list[str]:
    """Return the tags a tags form asks for: the ones it kept, then the ones typed in
    ``add`` (several separated by commas), each as typed: the service reads and checks
    them."""
    wanted = request.POST.getlist("tags")
    wanted += [name for name in request.POST.get("add", "").split(",") if name.strip()]
    return wanted


@login_required
@require_http_methods(["GET", "POST"])
@domain_errors
def session_tags(request, session_id):
    """GET: the inline tags form; POST: store the tags it holds and return the item.

    The form posts the whole list (the tags kept, and the ones added), which replaces the
    conversation's; refused input is said in the form, with what was typed, and changes
    nothing.
    """
    session = selectors.session_get(user=request.user, session_id=session_id)
    tags, adding, error = session.tag_names(), "", ""
    if request.method == "POST":
        try:
            session = services.conversation_update(
                user=request.user, session_id=session.pk, tags=_tags_wanted(request)
            )
        except DomainError as exc:
            error = exc.message
            tags = [name for name in request.POST.getlist("tags") if name]
            adding = request.POST.get("add", "")
        else:
            if not request.htmx:
                return redirect(session.get_absolute_url())
            return _item(request, session)
    return render(
        request,
        "chat/partials/_tags_form.html",
        {
            "session": session,
            "tags": tags,
            "adding": adding,
            "error": error,
            "tags_max": services.TAGS_MAX,
            "tag_max_chars": selectors.TAG_MAX_CHARS,
        },
        # htmx swaps only 2xx answers: the form with its error must be one of them.
        status=400 if error and not request.htmx else 200,
    )


@login_required
@require_GET
@domain_errors
def session_item(request, session_id):
    """Return one conversation's sidebar item (an inline form cancelled)."""
    session = selectors.session_get(user=request.user, session_id=session_id)
    return _item(request, session)


@login_required
@require_GET
def signed_in(request):
    """Answer 204 while the person is signed in, else (htmx) the 401 of ``signed_out``.

    The chat page asks when its socket cannot connect: a browser sees a WebSocket refused
    at the handshake (the consumer's 4401 before accepting) as a network failure.
    """
    return HttpResponse(status=204)


@login_required
@require_POST
@domain_errors
def session_pin(request, session_id):
    session = selectors.session_get(user=request.user, session_id=session_id)
    session = services.conversation_update(
        user=request.user, session_id=session.pk, pinned=not session.pinned
    )
    return _after_write(request, session)


@login_required
@require_POST
@domain_errors
def session_archive(request, session_id):
    session = selectors.session_get(user=request.user, session_id=session_id)
    session = services.conversation_update(
        user=request.user, session_id=session.pk, archived=not session.archived
    )
    return _after_write(request, session)


@login_required
@require_POST
@domain_errors
def session_delete(request, session_id):
    """Delete a conversation; the page showing it goes to a new chat."""
    services.conversation_delete(user=request.user, session_id=session_id)
    if request.htmx and _current_session_id(request) == str(session_id):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("chat:new")
        return response
    return _after_write(request)


def llm_picker(user, *, session=None, model=None) -> dict:
    """Return the context of the chat header's LLM picker (``_llm_picker.html``): the LLMs
    on offer and the conversation's (a new chat's: its model's, else the user's default
    LLM). One that is no longer offered is still shown, as the one that answers."""
    if session is not None:
        current = session.effective_llm
    elif model is not None:
        current = model.effective_llm
    else:
        current = user.default_llm or settings.LLM_MODEL
    offered = llm.available_llms()
    return {
        "llms": offered if current in offered else [current, *offered],
        "current_llm": current,
        "llm_error": "",
    }


@login_required
@require_POST
@domain_errors
def session_llm(request, session_id):
    """Choose the LLM that answers a conversation (the header's picker, ``llm``): 204, or
    the picker saying why the choice was refused (nothing changed)."""
    session = selectors.session_get(user=request.user, session_id=session_id)
    try:
        session = services.conversation_update(
            user=request.user, session_id=session.pk, llm=request.POST.get("llm", "")
        )
    except DomainError as exc:
        if exc.field != "llm":
            raise
        context = {"session": session, **llm_picker(request.user, session=session)}
        context["llm_error"] = exc.message
        # htmx swaps only 2xx answers: the picker with its error must be one of them.
        return render(
            request,
            "chat/partials/_llm_picker.html",
            context,
            status=200 if request.htmx else 400,
        )
    if not request.htmx:
        return redirect(session.get_absolute_url())
    return HttpResponse(status=204)
