"""Import a ChatGPT data export (conversations.json or the export zip) for a user."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from chat import services
from chat.exceptions import DomainError


class Command(BaseCommand):
    help = (
        "Import the conversations of a ChatGPT data export (conversations.json or the zip) "
        "as new conversations of a user; conversations imported before are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="conversations.json, or the export zip.")
        parser.add_argument("--user", required=True, help="Username to import for.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"No user named {options['user']!r}.")
        name = options["file"]
        try:
            file = open(name, "rb")  # noqa: SIM115 (closed below, after the bar)
        except OSError as exc:
            raise CommandError(f"{name}: cannot be read ({exc.strerror or exc}).") from None
        bar = tqdm(
            desc="Importing",
            unit="B",
            unit_scale=True,
            file=self.stderr._out,
            disable=options["no_progress"],
        )

        def progress(read: int, total: int | None) -> None:
            bar.total = total
            bar.update(read - bar.n)

        try:
            with file:
                result = services.import_chatgpt(user=user, file=file, progress=progress)
        except DomainError as exc:
            raise CommandError(f"{name}: {exc.message} Nothing was imported.") from None
        except OSError as exc:
            raise CommandError(f"{name}: cannot be read ({exc.strerror or exc}).") from None
        finally:
            bar.close()
        for error in result.errors:
            self.stderr.write(f"Not imported: {error['conversation']}: {error['error']}")
        self.stdout.write(
            f"{result.imported} conversation(s) imported, {result.skipped} skipped "
            f"(imported before), {len(result.errors)} could not be read."
        )
