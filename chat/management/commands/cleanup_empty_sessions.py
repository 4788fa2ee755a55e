"""Delete conversations that never received a message and are older than a given age, and
the temporary conversations past TEMPORARY_CHAT_TTL."""

import re
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chat import services

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


def parse_age(value: str) -> timedelta:
    """Return ``value`` ("90s", "30m", "24h", "7d") as a timedelta, or raise CommandError."""
    match = DURATION.match(value or "")
    if match is None:
        raise CommandError(
            f"--older-than must be a whole number followed by s, m, h or d "
            f"(e.g. 24h or 7d), not {value!r}."
        )
    number, unit = match.groups()
    return timedelta(**{UNITS[unit]: int(number)})


class Command(BaseCommand):
    help = (
        "Delete conversations without messages older than --older-than (default 24h), and "
        "temporary conversations past TEMPORARY_CHAT_TTL."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than", default="24h", help="age such as 90s, 30m, 24h or 7d (default 24h)"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="only count what would be deleted"
        )

    def handle(self, *args, older_than: str, dry_run: bool, **options):
        age = parse_age(older_than)
        count = services.conversations_delete_empty(older_than=age, dry_run=dry_run)
        if dry_run:
            self.stdout.write(
                f"Would delete {count} empty conversation(s) older than {older_than}"
                " (dry run, nothing deleted)."
            )
        else:
            self.stdout.write(f"Deleted {count} empty conversation(s) older than {older_than}.")
        ttl = settings.TEMPORARY_CHAT_TTL
        expired = services.conversations_delete_expired_temporary(dry_run=dry_run, limit=None)
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(
            f"{verb} {expired} temporary conversation(s) past TEMPORARY_CHAT_TTL ({ttl} s)."
        )
