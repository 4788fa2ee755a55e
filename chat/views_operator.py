"""The operator's pages (SPEC 4.6, "Operators"): the queue of conversations whose owner
asked for a person, and a joined conversation, answered in person.

Only people with the permission ``chat.operate_conversations`` see them; anyone else gets
the 404 page, staff included. The conversation page is the chat page in operator mode
(static/js/chat.js): the composer writes in person, "Suggest a reply" drafts one.
"""

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from . import selectors, services
from .views import _chat_page, domain_errors

QUERY_MAX_CHARS = 150


def _operators_only(request) -> None:
    if not selectors.can_operate(request.user):
        raise Http404("Not found.")


def _queue_context(request) -> dict:
    query = request.GET.get("q", "")[:QUERY_MAX_CHARS].strip()
    return {
        "q": query,
        "sessions": selectors.operator_queue(query=query),
        "waiting": selectors.queue_waiting(),
    }


@login_required
@require_GET
def queue_page(request):
    """The queue: conversations waiting for a person, newest first, and a search."""
    _operators_only(request)
    return render(request, "chat/operator_queue.html", _queue_context(request))


@login_required
@require_GET
def queue_list(request):
    """The queue's list and count alone (htmx polls it: it updates live)."""
    _operators_only(request)
    return render(request, "chat/partials/_operator_queue.html", _queue_context(request))


@login_required
@require_POST
@domain_errors
def join(request, session_id):
    services.operator_join(user=request.user, session_id=session_id)
    return redirect("chat:operator_session", session_id=session_id)


@login_required
@require_POST
@domain_errors
def leave(request, session_id):
    services.operator_leave(user=request.user, session_id=session_id)
    return redirect("chat:operator_queue")


@login_required
@require_GET
@domain_errors
def session_page(request, session_id):
    """A conversation the operator joined, live; one they are not in: back to the queue."""
    _operators_only(request)
    session = selectors.session_for_operator(user=request.user, session_id=session_id)
    people = selectors.operators_in([session.pk]).get(session.pk, [])
    if request.user not in people:
        return redirect("chat:operator_queue")
    return _chat_page(request, session=session, operator_view=True, operators=people)
