from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .models import User


@admin.register(User)
class ParlorUserAdmin(UserAdmin):
    """Django's user admin, plus the user's daily token quota (SPEC 4.6)."""

    fieldsets = (
        *UserAdmin.fieldsets,
        (
            "Limits",
            {
                "fields": ("quota_tokens_per_day",),
                "description": "Tokens (prompt + completion) this user may spend a UTC day; "
                "empty: QUOTA_TOKENS_PER_DAY. Their usage: Chat › Usage days.",
            },
        ),
    )
