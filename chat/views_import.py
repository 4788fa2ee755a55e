"""The page that imports a ChatGPT data export (SPEC 4.6); the REST API has the same
import at POST /api/import/chatgpt/, and operators ``manage.py import_chatgpt``."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from . import chatgpt, services
from .exceptions import DomainError
from .forms import ChatGPTImportForm


@login_required
@require_http_methods(["GET", "POST"])
def import_chatgpt(request):
    """Show the upload form; after an upload, what was imported, skipped or not read.

    Sending the same file again is harmless: what was imported before is skipped.
    """
    form = ChatGPTImportForm()
    result, status = None, 200
    if request.method == "POST":
        form = ChatGPTImportForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                chatgpt.check_upload(upload)
                result = services.import_chatgpt(user=request.user, file=upload)
            except DomainError as exc:
                form.add_error("file", exc.message)
                status = exc.status
        else:
            status = 400
    return render(
        request, "chat/import_chatgpt.html", {"form": form, "result": result}, status=status
    )
