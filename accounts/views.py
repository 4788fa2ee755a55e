from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from . import services, throttling
from .forms import PasswordChangeForm, SignupForm


def _too_many(form, *, what: str, retry_after: int) -> None:
    form.errors.clear()
    form.add_error(None, f"Too many {what}. Try again in {max(1, retry_after // 60)} minute(s).")


@require_http_methods(["GET", "POST"])
def signup(request):
    """Create an account and sign the new user in; tries are limited per address and name."""
    if request.user.is_authenticated:
        return redirect("/")
    form = SignupForm(request.POST or None)
    if request.method == "POST":
        blocked = throttling.attempt(
            "signup",
            settings.SIGNUP_ATTEMPTS,
            username=request.POST.get("username", ""),
            address=throttling.client_address(request),
        )
        if blocked:
            _too_many(form, what="sign-up attempts", retry_after=blocked)
            response = render(request, "accounts/signup.html", {"form": form}, status=429)
            response["Retry-After"] = str(blocked)
            return response
        if form.is_valid():
            user = form.save()
            login(request, user)
            return redirect("/")
    return render(request, "accounts/signup.html", {"form": form})


class ThrottledLoginView(LoginView):
    """Django's sign-in, paused after too many failures for the username or the address.

    accounts.backends counts the failures; this view only says why the form is refused.
    """

    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        blocked = throttling.login_blocked_for(
            username=request.POST.get("username", ""),
            address=throttling.client_address(request),
        )
        if blocked:
            form = self.get_form()
            _too_many(form, what="failed sign-ins", retry_after=blocked)
            response = self.render_to_response(self.get_context_data(form=form), status=429)
            response["Retry-After"] = str(blocked)
            return response
        return super().post(request, *args, **kwargs)


@login_required
@require_http_methods(["GET", "POST"])
def password_change(request):
    """Change the password; other browser sessions and every API token stop working."""
    form = PasswordChangeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            revoked = services.password_change(
                user=request.user,
                old_password=form.cleaned_data["old_password"],
                new_password=form.cleaned_data["new_password1"],
                request=request,
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error("new_password1" if field == "new_password" else field, errors)
        else:
            messages.success(
                request,
                "Your password was changed. Your other sessions are signed out"
                + (f" and {revoked} API token(s) revoked." if revoked else "."),
            )
            return redirect("password_change")
    return render(request, "accounts/password_change.html", {"form": form})
