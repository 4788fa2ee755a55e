"""Bring the rolling summaries of long conversations up to date (backfill)."""

import asyncio

from django.core.management.base import BaseCommand, CommandError

from chat import llm, selectors
from chat.exceptions import DomainError
from chat.streaming import jobs


class Command(BaseCommand):
    help = "Summarize every conversation past SUMMARY_THRESHOLD whose summary is behind."

    def add_arguments(self, parser):
        parser.add_argument("--session", action="append", default=[], help="Only these ids.")

    def handle(self, *args, session, **options):
        try:
            ids = selectors.sessions_past_summary_threshold(session_ids=session)
        except DomainError as exc:
            raise CommandError(exc.message)

        async def run():
            done = 0
            try:
                for session_id in ids:
                    if await jobs.summarize(session=session_id, force=True):
                        done += 1
            finally:
                await llm.aclose()  # this loop ends with the command
            return done

        done = asyncio.run(run())
        self.stdout.write(f"Summarized {done} of {len(ids)} conversations past the threshold.")
