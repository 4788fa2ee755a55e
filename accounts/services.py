"""Writes to accounts, shared by the REST API and the browser pages: the password, the
settings of /settings/ and /api/me/, and API tokens."""

import logging
import unicodedata
from collections.abc import Callable, Collection

from django.conf import settings
from django.contrib.auth import password_validation, update_session_auth_hash
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from core.exceptions import DomainError, NotFound, UnknownLLM
from core.ids import parse_int_id
from core.text import clean_text

from .models import ApiToken, User
from .tokens import token_issue

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


# Settings (SPEC 4.6: /settings/ and /api/me/) --------------------------------------------

PROFILE_FIELDS = ("display_name", "theme", "about_me", "response_style", "default_llm")
# The columns' own limits, counted on the value as stored (whitespace collapsed, "\r\n"
# as one line end).
DISPLAY_NAME_MAX_CHARS = User._meta.get_field("display_name").max_length
INSTRUCTIONS_MAX_CHARS = User._meta.get_field("about_me").max_length
LLM_NAME_MAX_CHARS = User._meta.get_field("default_llm").max_length
TOKEN_NAME_MAX_CHARS = ApiToken._meta.get_field("name").max_length
FIELD_LABELS = {
    "display_name": "The display name",
    "about_me": "What the assistant should know about you",
    "response_style": "How you want answers",
    "name": "The token's name",
}


class TokenNotFound(NotFound):
    default_message = "API token not found."


def _text(value, *, field: str) -> str:
    if not isinstance(value, str):
        raise DomainError(f"{FIELD_LABELS.get(field, field)} must be text.", field=field)
    return value


def _one_line(value, *, field: str, max_chars: int) -> str:
    """Return a name as people see it: runs of whitespace made one space, no control
    characters, at most ``max_chars``."""
    value = " ".join(_text(value, field=field).split())
    label = FIELD_LABELS[field]
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise DomainError(f"{label} cannot hold control characters.", field=field)
    value = clean_text(value)
    if len(value) > max_chars:
        raise DomainError(f"{label} is at most {max_chars} characters.", field=field)
    return value


def _instructions(value, *, field: str) -> str:
    """Return custom instructions as stored: text, line ends as ``\\n``, trimmed."""
    value = clean_text(_text(value, field=field)).replace("\r\n", "\n").strip()
    if len(value) > INSTRUCTIONS_MAX_CHARS:
        raise DomainError(
            f"{FIELD_LABELS[field]} is at most {INSTRUCTIONS_MAX_CHARS} characters "
            f"({len(value)} given).",
            field=field,
        )
    return value


def only_llm_model() -> list[str]:
    """Return the LLMs offered when the caller names none: LLM_MODEL alone."""
    return [settings.LLM_MODEL]


def check_llm_name(value, *, llms: Callable[[], Collection[str]], field: str) -> str:
    """Return ``value`` stripped if it is "" or one of ``llms()``; else UnknownLLM
    (``field`` names it). The one check of an LLM people choose: the default here, a
    conversation's in chat.services. ``llms`` is only called for a name."""
    value = _text(value, field=field).strip()
    if value and (len(value) > LLM_NAME_MAX_CHARS or value not in llms()):
        shown = value if len(value) <= 60 else value[:60] + "…"
        raise UnknownLLM(f"“{clean_text(shown)}” is not an LLM offered here.", field=field)
    return value


def _default_llm(value, *, llms: Callable[[], Collection[str]]) -> str:
    return check_llm_name(value, llms=llms, field="default_llm")


def _theme(value) -> str:
    if value not in User.Theme.values:
        choices = ", ".join(User.Theme.values)
        raise DomainError(f"The theme is one of: {choices}.", field="theme")
    return value


def profile_update(
    *, user: User, llms: Callable[[], Collection[str]] = only_llm_model, **changes
) -> User:
    """Change some of ``user``'s settings (PROFILE_FIELDS); return ``user``, changed.

    ``display_name``: one line of at most 80 characters (whitespace collapsed, no control
    characters); ``theme``: one of User.Theme; ``about_me`` and ``response_style`` (the
    custom instructions): at most 1,500 characters each; ``default_llm``: empty (then
    LLM_MODEL) or one of the names ``llms()`` returns, else UnknownLLM. accounts is below
    chat and does not ask the provider: the caller passes chat.llm.available_llms (the
    default offers only LLM_MODEL), and it is only called when ``default_llm`` is set.

    Every value is checked before anything is stored: a DomainError names the field, and
    then nothing changes. One UPDATE of the given columns.
    """
    unknown = sorted(set(changes) - set(PROFILE_FIELDS))
    if unknown:
        raise DomainError(f"Unknown setting: {unknown[0]}.", field=unknown[0])
    checks = {
        "display_name": lambda v: _one_line(
            v, field="display_name", max_chars=DISPLAY_NAME_MAX_CHARS
        ),
        "theme": _theme,
        "about_me": lambda v: _instructions(v, field="about_me"),
        "response_style": lambda v: _instructions(v, field="response_style"),
        "default_llm": lambda v: _default_llm(v, llms=llms),
    }
    values = {name: checks[name](value) for name, value in changes.items()}
    if values:
        User.objects.filter(pk=user.pk).update(**values)
        for name, value in values.items():
            setattr(user, name, value)
        logger.info("user %s changed settings: %s", user.pk, ", ".join(sorted(values)))
    return user


def token_create(*, user: User, name) -> tuple[str, ApiToken]:
    """Create a named API token for ``user``; return its value (shown once) and record.

    ``name``: one line of 1 to 80 characters. The user's expired tokens are deleted on
    the way (they can no longer be used, and would only lengthen the list).
    """
    name = _one_line(name, field="name", max_chars=TOKEN_NAME_MAX_CHARS)
    if not name:
        raise DomainError("Give the token a name, to know it again later.", field="name")
    with transaction.atomic():
        ApiToken.objects.filter(user=user, expires_at__lte=timezone.now()).delete()
        raw, token = token_issue(user=user, name=name)
    logger.info("user %s created API token %s", user.pk, token.pk)
    return raw, token


def token_revoke(*, user: User, token_id) -> None:
    """Delete one of ``user``'s API tokens: it gets 401 from then on.

    Someone else's token, or one that does not exist, is TokenNotFound (404).
    """
    pk = parse_int_id(token_id, field="token")
    deleted, _ = ApiToken.objects.filter(pk=pk, user=user).delete()
    if not deleted:
        raise TokenNotFound()
    logger.info("user %s revoked API token %s", user.pk, pk)
