from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import UserCreationForm

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
