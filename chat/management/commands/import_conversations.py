"""Import JSON exports as new conversations of a user; each file in its own transaction."""

import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from chat import exports, services
from chat.exceptions import DomainError


class Command(BaseCommand):
    help = "Import JSON files made by export_conversations (or the API) as new conversations."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="Username to import for.")
        parser.add_argument("files", nargs="+", help="JSON export files.")

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"No user named {options['user']!r}.")
        failed = 0
        for name in options["files"]:
            try:
                data = json.loads(Path(name).read_text(encoding="utf-8"))
                conversation, messages = exports.check_import(data)
                session = services.conversation_import(user=user, messages=messages, **conversation)
            except (OSError, ValueError) as exc:
                self.stderr.write(f"{name}: not a readable JSON file ({exc}); skipped.")
                failed += 1
            except DomainError as exc:
                self.stderr.write(f"{name}: {exc.message} Skipped.")
                failed += 1
            else:
                self.stdout.write(f"{name}: imported as {session.pk} ({session.title!r}).")
        if failed:
            raise CommandError(f"{failed} file(s) could not be imported; nothing of them kept.")
