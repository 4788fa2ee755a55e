"""Folders in the sidebar (SPEC 4.6): move a conversation into or out of one (its item's
menu), rename or delete a folder (the folder's menu). htmx answers with the refreshed
sidebar, as the other item actions do; REST has /api/folders/ and a session's ``folder``.
"""

from django.shortcuts import render
from django.views.decorators.http import require_http_methods, require_POST

from . import selectors, services
from .exceptions import DomainError, NotFound
from .models import Context
from .views import _after_write, domain_errors, login_required

FILED_ONLY = "Only a general conversation that is kept can go in a folder."


def _sidebar_instead(response):
    """Make an inline form's htmx answer replace the whole sidebar (the item moved)."""
    response["HX-Retarget"] = "#session-groups"
    response["HX-Reswap"] = "outerHTML"
    return response


@login_required
@require_http_methods(["GET", "POST"])
@domain_errors
def session_folder(request, session_id):
    """GET: the inline "Move to folder" form of a conversation; POST: file it in the folder
    chosen (``folder``; empty: none), or in a new folder named ``new_folder``, and return
    the refreshed sidebar. Refused input is said in the form and changes nothing."""
    session = selectors.session_get(user=request.user, session_id=session_id)
    error, new_name = "", ""
    if request.method == "POST":
        new_name = request.POST.get("new_folder", "")
        try:
            if session.context != Context.GENERAL or session.temporary:
                raise DomainError(FILED_ONLY)
            if new_name.strip():
                folder_id = services.folder_create(user=request.user, name=new_name).pk
            else:
                folder_id = request.POST.get("folder") or None
            session = services.conversation_update(
                user=request.user, session_id=session.pk, folder=folder_id
            )
        except NotFound:
            raise  # someone else's folder: 404, as everywhere (domain_errors)
        except DomainError as exc:
            error = exc.message
        else:
            response = _after_write(request, session)
            return _sidebar_instead(response) if request.htmx else response
    context = {
        "session": session,
        "folders": selectors.folder_list(user=request.user),
        "new_folder": new_name,
        "error": error,
        "archived": session.archived,
        "name_max_chars": services.FOLDER_NAME_MAX_CHARS,
    }
    # htmx swaps only 2xx answers: the form with its error must be one of them.
    status = 400 if error and not request.htmx else 200
    return render(request, "chat/partials/_folder_form.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
@domain_errors
def folder_rename(request, folder_id):
    """GET: the inline rename form of a folder; POST: rename it, return the sidebar."""
    folder = selectors.folder_get(user=request.user, folder_id=folder_id)
    error = ""
    if request.method == "POST":
        try:
            services.folder_rename(
                user=request.user, folder_id=folder.pk, name=request.POST.get("name", "")
            )
        except DomainError as exc:
            error = exc.message
        else:
            response = _after_write(request)
            return _sidebar_instead(response) if request.htmx else response
    context = {
        "folder": folder,
        "name": request.POST.get("name", folder.name),
        "error": error,
        "name_max_chars": services.FOLDER_NAME_MAX_CHARS,
    }
    status = 400 if error and not request.htmx else 200
    return render(request, "chat/partials/_folder_rename_form.html", context, status=status)


@login_required
@require_POST
@domain_errors
def folder_delete(request, folder_id):
    """Delete a folder; its conversations are kept, back in general."""
    services.folder_delete(user=request.user, folder_id=folder_id)
    return _after_write(request)
