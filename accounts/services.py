"""Writes to accounts, shared by the REST API and the browser pages."""

import logging

from django.contrib.auth import password_validation, update_session_auth_hash
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest

from .models import ApiToken, User

logger = logging.getLogger(__name__)


def password_change(
    *, user: User, old_password: str, new_password: str, request: HttpRequest | None = None
) -> int:
    """Change ``user``'s password and sign them out everywhere else; return tokens revoked.

    Raises ValidationError (fields ``old_password``, ``new_password``) when the old password
    is wrong or the new one fails AUTH_PASSWORD_VALIDATORS; then nothing changes.
    Every API token of the user is deleted, and every browser session but ``request``'s
    stops authenticating (Django checks a session against the password hash). Pass
    ``request`` only when it is the user's own browser session, to keep it signed in.
    """
    if not user.check_password(old_password):
        raise ValidationError({"old_password": ["The old password is not correct."]})
    try:
        password_validation.validate_password(new_password, user)
    except ValidationError as exc:
        raise ValidationError({"new_password": exc.messages})
    with transaction.atomic():
        user.set_password(new_password)
        user.save(update_fields=["password"])
        revoked, _ = ApiToken.objects.filter(user=user).delete()
    if request is not None:
        update_session_auth_hash(request, user)
    logger.info("user %s changed their password; %d API tokens revoked", user.pk, revoked)
    return revoked
