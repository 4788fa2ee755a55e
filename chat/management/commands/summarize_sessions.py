"""Bring the rolling summaries of long conversations up to date (backfill)."""

import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand

from chat.models import ChatSession
from chat.streaming import jobs


class Command(BaseCommand):
    help = "Summarize every conversation past SUMMARY_THRESHOLD whose summary is behind."

    def add_arguments(self, parser):
        parser.add_argument("--session", action="append", default=[], help="Only these ids.")

    def handle(self, *args, session, **options):
        qs = ChatSession.objects.filter(message_count__gt=settings.SUMMARY_THRESHOLD)
        if session:
            qs = qs.filter(pk__in=session)
        ids = list(qs.order_by("pk").values_list("pk", flat=True))

        async def run():
            done = 0
            for session_id in ids:
                if await jobs.summarize(session=session_id, force=True):
                    done += 1
            return done

        done = asyncio.run(run())
        self.stdout.write(f"Summarized {done} of {len(ids)} conversations past the threshold.")
