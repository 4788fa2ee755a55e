from django import forms

from .chatgpt import EXPORT_MAX_BYTES


class ChatGPTImportForm(forms.Form):
    """The upload of the ChatGPT import page; chat.services.import_chatgpt reads the file."""

    file = forms.FileField(
        label="ChatGPT export",
        help_text=(
            f"The zip ChatGPT sends you, or the conversations.json inside it (at most "
            f"{EXPORT_MAX_BYTES // 2**20} MB)."
        ),
        widget=forms.FileInput(attrs={"accept": ".zip,.json,application/zip,application/json"}),
    )
