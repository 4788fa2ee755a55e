"""Usernames unique case-insensitively after NFKC: fill ``username_key`` for existing users.

Two users whose names differ only in case or width (``alice``, ``ALICE``, ``ａｌｉｃｅ``)
stop this migration with their names listed: rename one of them, then migrate again.
"""

import unicodedata

from django.db import migrations, models

import accounts.models


def username_key(username):
    # A copy of accounts.models.username_key as it was when this migration was written.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())


def fill_username_keys(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    seen = {}
    clashes = []
    for user in User.objects.only("pk", "username").order_by("pk").iterator():
        key = username_key(user.username)
        if key in seen:
            clashes.append(f"{seen[key]!r} and {user.username!r}")
        seen.setdefault(key, user.username)
        User.objects.filter(pk=user.pk).update(username_key=key)
    if clashes:
        raise RuntimeError(
            "These usernames differ only in case or width; rename one of each pair and "
            "migrate again: " + "; ".join(clashes)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.AlterModelManagers(
            name="user",
            managers=[
                ("objects", accounts.models.ParlorUserManager()),
            ],
        ),
        migrations.AddField(
            model_name="user",
            name="username_key",
            field=models.TextField(editable=False, null=True),
        ),
        migrations.RunPython(fill_username_keys, migrations.RunPython.noop),
    ]
