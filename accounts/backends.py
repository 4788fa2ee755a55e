"""Sign-in through Django's ``authenticate``, refused while the sign-in limit is reached."""

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from . import throttling
from .models import User


class ThrottledModelBackend(ModelBackend):
    """Django's username and password check, counted per username and per address.

    The one backend (``AUTHENTICATION_BACKENDS``), so every door that signs people in with
    a request — the sign-in page, ``POST /api/auth/token/``, the admin's sign-in — shares
    one budget of failures (accounts/throttling.py). Calls without a request (tests'
    ``client.login``, code) are not network doors and are not counted.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(User.USERNAME_FIELD)
        if request is None or not isinstance(username, str) or password is None:
            return super().authenticate(request, username=username, password=password, **kwargs)
        who = {"username": username, "address": throttling.client_address(request)}
        if throttling.login_blocked_for(**who):
            # Stops ``authenticate`` before any password is checked; it answers None.
            raise PermissionDenied
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            throttling.login_failed(**who)
        else:
            throttling.login_succeeded(**who)
        return user
