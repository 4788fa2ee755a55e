import unicodedata

from django.contrib.auth.models import AbstractUser, UserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


def username_key(username: str) -> str:
    """Return the form two usernames share when they must count as one (NFKC, casefolded).

    ``ALICE``, ``alice`` and fullwidth ``ａｌｉｃｅ`` all give ``alice``.
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())


class ParlorUserManager(UserManager):
    def get_by_natural_key(self, username):
        """Find a user by any spelling of their username that has the same key.

        Sign-in, ``createsuperuser``'s "already taken" check and fixtures all go through here.
        """
        if not isinstance(username, str):
            raise self.model.DoesNotExist
        return self.get(username_key=username_key(username))


class User(AbstractUser):
    """A person who chats; custom from the first migration so it can grow later."""

    class Theme(models.TextChoices):
        SYSTEM = "system", "Follow the system"
        LIGHT = "light", "Light"
        DARK = "dark", "Dark"

    # Unique in the database: usernames are unique case-insensitively after NFKC, on
    # SQLite as on PostgreSQL (whose LOWER() is locale-bound and SQLite's ASCII-only).
    username_key = models.TextField(unique=True, editable=False)
    # Settings (SPEC 4.6, /settings/ and /api/me/); the rules are accounts.services'.
    display_name = models.CharField(max_length=80, blank=True)
    theme = models.CharField(max_length=6, choices=Theme.choices, default=Theme.SYSTEM)
    # Custom instructions: added to the system prompt of the user's conversations.
    about_me = models.TextField(blank=True, max_length=1500)
    response_style = models.TextField(blank=True, max_length=1500)
    # The LLM of the user's new general conversations; empty: LLM_MODEL.
    default_llm = models.CharField(max_length=120, blank=True)
    # Tokens a day this user may spend; empty: QUOTA_TOKENS_PER_DAY (staff set it).
    quota_tokens_per_day = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="Overrides QUOTA_TOKENS_PER_DAY for this user; empty: the setting.",
    )

    objects = ParlorUserManager()

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"

    def save(self, *args, **kwargs):
        # A derived column kept in step with the username on every save, whichever door
        # (sign-up, admin, createsuperuser, shell) saved it.
        self.username_key = username_key(self.username)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "username" in update_fields:
            kwargs["update_fields"] = {*update_fields, "username_key"}
        super().save(*args, **kwargs)

    @property
    def shown_name(self) -> str:
        """The name Parlor shows for this person: their display name, else username."""
        return self.display_name or self.username

    def clean(self):
        """Normalize the username (NFKC) and refuse one that another user has in any case."""
        super().clean()
        if not isinstance(self.username, str) or not self.username:
            return
        clash = User.objects.filter(username_key=username_key(self.username))
        if self.pk is not None:
            clash = clash.exclude(pk=self.pk)
        if clash.exists():
            raise ValidationError({"username": self.unique_error_message(User, ["username"])})


class ApiToken(models.Model):
    """An expiring bearer token; only its SHA-256 digest is stored."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=80, blank=True)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    # Written at most once a minute per token (accounts.tokens.token_user).
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="apitoken_expires")]

    def __str__(self):
        return f"token of {self.user} until {self.expires_at:%Y-%m-%d %H:%M}"
