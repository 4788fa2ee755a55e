"""Reads of accounts: a person's settings and their API tokens."""

from django.db.models import QuerySet
from django.utils import timezone

from .models import ApiToken, User

PROFILE_READ_FIELDS = (
    "username",
    "display_name",
    "theme",
    "about_me",
    "response_style",
    "default_llm",
)


def profile_get(*, user: User) -> User:
    """Return ``user`` with every setting loaded in one query.

    A token's user comes with only its id (accounts.tokens.token_user); reading each
    deferred field would be a query of its own.
    """
    deferred = user.get_deferred_fields() & set(PROFILE_READ_FIELDS)
    if deferred:
        user.refresh_from_db(fields=sorted(deferred))
    return user


def token_list(*, user: User) -> QuerySet[ApiToken]:
    """Return ``user``'s API tokens that still work, newest first (never their values:
    only a digest is stored)."""
    return (
        ApiToken.objects.filter(user=user, expires_at__gt=timezone.now())
        .only("id", "name", "created_at", "expires_at", "last_used_at")
        .order_by("-created_at", "-id")
    )
