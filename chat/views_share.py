"""Share links in the browser (SPEC 4.6): the public read-only page ``/s/<token>``, and
the share panel of a conversation (create, update, revoke), whose REST twin is
``/api/sessions/<id>/share/``. Every write goes through chat.services."""

import contextlib
from datetime import datetime

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import selectors, services
from .exceptions import ShareNotFound
from .views import domain_errors, login_required


@require_GET
def share_page(request, token):
    """Show a shared conversation's snapshot to anyone with the link, signed in or not.

    Nothing of the owner but the snapshot (not even their name); ``noindex``; no
    referrer, so the link does not leave through the page's links; never cached, so a
    revoked link answers 404 at once. An unknown or revoked token: 404.
    """
    link = selectors.share_by_token(token)
    if link is None:
        raise Http404("This link does not exist, or it was revoked.")
    entries = [
        {**entry, "created_at": datetime.fromisoformat(entry["created_at"])}
        for entry in link.snapshot
    ]
    response = render(request, "chat/share.html", {"link": link, "entries": entries})
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    add_never_cache_headers(response)
    return response


def _panel(request, session, *, token: str | None = None, revoked: bool = False):
    """Render a conversation's share panel; a link just made shows its ``token`` (once)."""
    context = {
        "session": session,
        "share": None if revoked else selectors.share_get(session=session),
        "share_url": (
            request.build_absolute_uri(reverse("chat:share_page", args=[token])) if token else ""
        ),
        "revoked": revoked,
    }
    response = render(request, "chat/partials/_share_panel.html", context)
    add_never_cache_headers(response)  # it may hold a link's token
    return response


@login_required
@require_http_methods(["GET", "POST"])
@domain_errors
def session_share(request, session_id):
    """GET: the share panel of a conversation; POST: share it (again: a new snapshot under
    a new link, the old one stops working) and show the new link, once."""
    session = selectors.session_get(user=request.user, session_id=session_id)
    token = None
    if request.method == "POST":
        token, _ = services.share_create(user=request.user, session_id=session.pk)
    return _panel(request, session, token=token)


@login_required
@require_POST
@domain_errors
def session_unshare(request, session_id):
    """Revoke a conversation's share link: the share panel again, or from the settings
    page's list (``from=settings``) back to that list. One revoked already is no error."""
    session = selectors.session_get(user=request.user, session_id=session_id)
    with contextlib.suppress(ShareNotFound):
        services.share_revoke(user=request.user, session_id=session.pk)
    if request.POST.get("from") == "settings":
        messages.success(request, f"The link to “{session}” was revoked.")
        return redirect(reverse("settings:page") + "#shares")
    return _panel(request, session, revoked=True)
