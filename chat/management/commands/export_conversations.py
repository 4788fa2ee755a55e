"""Write a user's conversations to files, one per conversation (JSON or Markdown)."""

import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from chat import exports, selectors
from chat.exceptions import DomainError


class Command(BaseCommand):
    help = "Export a user's conversations as JSON (importable) or Markdown files."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="Username whose conversations.")
        parser.add_argument("--format", choices=["json", "markdown"], default="json")
        parser.add_argument("--output", default=".", help="Directory to write into.")
        parser.add_argument("--session", help="Only this conversation id.")

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"No user named {options['user']!r}.")
        output = Path(options["output"])
        output.mkdir(parents=True, exist_ok=True)
        try:
            if options["session"]:
                sessions = [selectors.session_get(user=user, session_id=options["session"])]
            else:
                sessions = selectors.session_list(user=user, archived=None).iterator()
        except DomainError as exc:
            raise CommandError(exc.message)
        fmt = options["format"]
        count = 0
        for session in sessions:
            name = exports.export_filename(session=session, fmt=fmt)
            # Two conversations with one title on one day must not overwrite each other.
            path = output / name
            if path.exists():
                path = output / f"{path.stem}-{str(session.pk)[:8]}{path.suffix}"
            if fmt == "json":
                data = exports.export_json(session=session)
                path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
            else:
                path.write_text(exports.export_markdown(session=session), encoding="utf-8")
            count += 1
        self.stdout.write(self.style.SUCCESS(f"Exported {count} conversation(s) to {output}."))
