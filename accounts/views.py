from django.contrib.auth import login
from django.contrib.auth.views import LoginView
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from . import throttling
from .forms import SignupForm


@require_http_methods(["GET", "POST"])
def signup(request):
    """Create an account and sign the new user in."""
    if request.user.is_authenticated:
        return redirect("/")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("/")
    return render(request, "accounts/signup.html", {"form": form})


class ThrottledLoginView(LoginView):
    """Django's sign-in, paused after too many failures for one username and address."""

    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        who = {
            "username": request.POST.get("username", "")[:150],
            "address": request.META.get("REMOTE_ADDR", ""),
        }
        blocked = throttling.login_blocked_for(**who)
        if blocked:
            form = self.get_form()
            form.errors.clear()
            form.add_error(
                None,
                f"Too many failed sign-ins. Try again in {max(1, blocked // 60)} minute(s).",
            )
            response = self.render_to_response(self.get_context_data(form=form), status=429)
            response["Retry-After"] = str(blocked)
            return response
        response = super().post(request, *args, **kwargs)
        if response.status_code == 302:
            throttling.login_succeeded(**who)
        else:
            throttling.login_failed(**who)
        return response
