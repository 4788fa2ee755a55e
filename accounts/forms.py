from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import UserCreationForm

from . import services
from .models import User


class SignupForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username",)


def _password_input(autocomplete: str, **attrs) -> forms.PasswordInput:
    return forms.PasswordInput(attrs={"autocomplete": autocomplete, **attrs})


class PasswordChangeForm(forms.Form):
    """The fields of the password page; accounts.services.password_change checks the rest."""

    old_password = forms.CharField(
        label="Current password",
        strip=False,
        widget=_password_input("current-password", autofocus=True),
    )
    new_password1 = forms.CharField(
        label="New password",
        strip=False,
        widget=_password_input("new-password"),
        help_text=password_validation.password_validators_help_text_html(),
    )
    new_password2 = forms.CharField(
        label="New password again", strip=False, widget=_password_input("new-password")
    )

    def clean(self):
        cleaned = super().clean()
        first, second = cleaned.get("new_password1"), cleaned.get("new_password2")
        if first and second and first != second:
            self.add_error("new_password2", "The two new passwords differ.")
        return cleaned


# The settings page's forms (SPEC 4.6). They only read the fields; accounts.services
# checks the values (one rule for the page and /api/me/) and the view shows its errors.


def _text_input(max_chars: int, **attrs) -> forms.TextInput:
    return forms.TextInput(attrs={"maxlength": max_chars, **attrs})


class ProfileForm(forms.Form):
    display_name = forms.CharField(
        label="Display name",
        required=False,
        strip=False,
        widget=_text_input(services.DISPLAY_NAME_MAX_CHARS, autocomplete="name"),
        help_text="Shown instead of your username. Leave empty to use your username.",
    )


class AppearanceForm(forms.Form):
    theme = forms.ChoiceField(
        label="Theme",
        choices=User.Theme.choices,
        widget=forms.RadioSelect,
    )


def _instructions_field(label: str, help_text: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        strip=False,
        help_text=help_text,
        widget=forms.Textarea(
            attrs={"rows": 4, "maxlength": services.INSTRUCTIONS_MAX_CHARS, "data-count": ""}
        ),
    )


class InstructionsForm(forms.Form):
    about_me = _instructions_field(
        "What should the assistant know about you?",
        "For example your work, your interests, where you are. "
        f"At most {services.INSTRUCTIONS_MAX_CHARS} characters.",
    )
    response_style = _instructions_field(
        "How would you like it to answer?",
        "For example how long, how formal, in which language. "
        f"At most {services.INSTRUCTIONS_MAX_CHARS} characters.",
    )


class DefaultLLMForm(forms.Form):
    """The LLM of new conversations; ``llms`` are the names offered, the first the
    server's default (chat.llm.available_llms)."""

    default_llm = forms.CharField(label="LLM of new conversations", required=False)

    def __init__(self, *args, llms: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        choices = [("", f"The server's default ({llms[0]})" if llms else "The server's default")]
        choices += [(name, name) for name in llms]
        current = self.initial.get("default_llm")
        if current and current not in llms:
            choices.append((current, f"{current} (no longer offered)"))
        # A select to pick from; the field stays a CharField so that a name no longer
        # offered reaches the service, which says so (unknown_llm).
        self.fields["default_llm"].widget = forms.Select(choices=choices)


class TokenForm(forms.Form):
    name = forms.CharField(
        label="Name",
        strip=False,
        widget=_text_input(services.TOKEN_NAME_MAX_CHARS, autocomplete="off"),
        help_text="What it is for, e.g. “backup script”.",
    )
