"""Print the health and usage figures of every conversation (SPEC 4.5).

``--json`` prints one JSON object with the keys ``generated_at``, ``database``,
``health`` (``ok``, ``contexts_with_several_active``, ``several_active_details``,
``constraints``, ``active_sessions`` {general, model, run}, ``empty_conversations``
{total, older_than_24h}, ``past_summary_threshold_without_summary``, ``summary_threshold``,
``detached_conversations``, ``streaming_messages`` {total, stale}), ``usage``
(``conversations``, ``messages``, ``messages_per_conversation`` {avg, median, max},
``tokens`` {prompt, completion, total}), ``top_models`` (id, name, owner,
conversations, messages) and ``feedback`` (users' thumbs on replies: ``by_llm`` rows of
llm, up, down, up_share; ``by_model`` rows of id, name, up, down, up_share).

``--details`` adds the conversations behind the health figures (``details`` in JSON):
``multi_active``, ``empty``, ``unsummarized``, ``orphaned``, ``large``, ``stuck_streaming``
(each {total, rows}, a row with id, owner, context, model/run id, title, age and message
count), ``incomplete_models`` and ``recent`` (the latest messages of model conversations,
with 100-character previews: operators' output, never a log). ``--limit`` bounds each list.
"""

import json
from datetime import UTC, datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chat import reports


class Command(BaseCommand):
    help = "Report conversation health (one active per context, leftovers) and usage."

    def add_arguments(self, parser):
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print one JSON object"
        )
        parser.add_argument(
            "--details",
            action="store_true",
            help="also list the conversations behind each health figure",
        )
        parser.add_argument(
            "--limit",
            type=int,
            default=reports.DETAILS_LIMIT,
            help=f"rows at most per list of --details (default {reports.DETAILS_LIMIT})",
        )

    def handle(self, *args, as_json=False, details=False, limit=reports.DETAILS_LIMIT, **options):
        if limit < 1:
            raise CommandError("--limit must be at least 1.")
        data = reports.report(details_limit=limit if details else None)
        if as_json:
            self.stdout.write(json.dumps(data, indent=2, default=str))
            return
        self._text(data)
        if details:
            self._details(data["details"], data["health"]["summary_threshold"])

    def _text(self, data: dict) -> None:
        health, usage = data["health"], data["usage"]
        out = self.stdout.write
        out(f"Parlor conversation report ({data['database']}, {data['generated_at']})")
        out("")
        out("Health")
        status = self.style.SUCCESS("OK") if health["ok"] else self.style.ERROR("PROBLEM")
        out(f"  overall: {status}")
        several = health["contexts_with_several_active"]
        line = f"  contexts with more than one active session: {several}"
        out(self.style.ERROR(line) if several else line)
        for row in health["several_active_details"]:
            out(
                f"    user={row['user_id']} model={row['model_id']} run={row['run_id']}: "
                f"{row['active']} active"
            )
        missing = [name for name, present in health["constraints"].items() if not present]
        if missing:
            out(self.style.ERROR(f"  constraints missing in the database: {', '.join(missing)}"))
        else:
            out(f"  constraints present: all {len(health['constraints'])}")
        active = health["active_sessions"]
        out(
            f"  active sessions: general {active['general']}, model {active['model']}, "
            f"run {active['run']}"
        )
        empty = health["empty_conversations"]
        out(f"  empty conversations: {empty['total']} ({empty['older_than_24h']} older than 24h)")
        out(
            f"  past {health['summary_threshold']} messages without a summary: "
            f"{health['past_summary_threshold_without_summary']}"
        )
        out(f"  conversations of deleted models/runs: {health['detached_conversations']}")
        streaming = health["streaming_messages"]
        out(
            f"  replies still streaming: {streaming['total']} "
            f"({streaming['stale']} not updated for 10+ minutes)"
        )
        out("")
        out("Usage")
        per = usage["messages_per_conversation"]
        out(f"  conversations: {usage['conversations']}")
        out(f"  messages: {usage['messages']}")
        out(
            f"  messages per conversation: avg {per['avg']}, median {per['median']}, "
            f"max {per['max']}"
        )
        tokens = usage["tokens"]
        out(
            f"  tokens: {tokens['total']} "
            f"(prompt {tokens['prompt']}, completion {tokens['completion']})"
        )
        out("")
        out("Most active models")
        if not data["top_models"]:
            out("  (none)")
        for row in data["top_models"]:
            out(
                f"  {row['name']} (#{row['id']}, {row['owner']}): "
                f"{row['conversations']} conversations, {row['messages']} messages"
            )
        out("")
        out("Reply feedback (thumbs up / down)")
        feedback = data["feedback"]
        if not feedback["by_llm"]:
            out("  (none)")
        for row in feedback["by_llm"]:
            out(f"  LLM {row['llm']}: {_votes(row)}")
        for row in feedback["by_model"]:
            out(f"  model {row['name']} (#{row['id']}): {_votes(row)}")

    def _details(self, details: dict, threshold: int) -> None:
        out = self.stdout.write
        limit = details["limit"]
        out("")
        out(f"Details (at most {limit} rows a list; --limit N for more)")

        def section(title: str, found: dict, order: str, line) -> None:
            out("")
            total = found["total"]
            heading = f"{title}: {total}" + (f", {order}" if total else "")
            out(self.style.WARNING(heading) if total else heading)
            for row in found["rows"]:
                out(line(row))
            if total > len(found["rows"]):
                out(f"  … showing {len(found['rows'])} of {total}")

        several = details["multi_active"]
        out("")
        if several["total"]:
            section(
                f"Contexts with more than one active session: {several['contexts']}; "
                "their active conversations",
                several,
                "by context",
                self._conversation,
            )
        else:
            out(
                "Contexts with more than one active session: none "
                "(the one_active_* constraints forbid them; checked on the data)"
            )
        section("Empty conversations", details["empty"], "oldest first", self._conversation)
        section(
            f"Past {threshold} messages without an up-to-date summary",
            details["unsummarized"],
            "most uncovered first",
            lambda row: f"{self._conversation(row)}; {self._summary(row['summary'])}",
        )
        section(
            "Conversations of deleted models or runs",
            details["orphaned"],
            "oldest first",
            lambda row: f"{self._conversation(row)}; was {row['detached_label']}",
        )
        section(
            f"Past {settings.CONTEXT_MESSAGES} messages (the recent window)",
            details["large"],
            "largest first",
            lambda row: (
                f"{self._conversation(row)}; {self._summary(row['summary'])}; "
                f"{row['tokens']:,} tokens"
            ),
        )
        stuck = details["stuck_streaming"]
        section(
            f"Replies streaming with no writer (not written for {stuck['lease_seconds']:g} s)",
            stuck,
            "longest first",
            lambda row: (
                f"{self._conversation(row)}; reply #{row['message_id']} not written for "
                f"{_age(row['stuck_seconds'])}, {row['chars']:,} characters so far"
            ),
        )
        models = details["incomplete_models"]
        section(
            "Models in use lacking configuration the prompt relies on "
            f"({', '.join(models['required'])})",
            models,
            "most conversations first",
            lambda row: (
                f"  model #{row['id']} {_one_line(row['name']) or '(no name)'} "
                f"(owner {row['owner']}): {row['conversations']} conversation(s); "
                f"missing {', '.join(row['missing'])}"
            ),
        )
        out("")
        recent = details["recent"]["rows"]
        out(f"Latest {len(recent)} messages of model conversations, newest first")
        if not recent:
            out("  (none)")
        for row in recent:
            status = f" ({row['status']})" if row["status"] != "complete" else ""
            preview = _one_line(row["preview"]) or "(empty)"
            more = "…" if row["chars"] > len(row["preview"]) else ""
            out(
                f"  {_time(row['created_at'])}  {row['conversation']}  {row['owner']}  "
                f"model #{row['model_id']} {_one_line(row['model_name'])}  "
                f"{_title(row['title'])}"
            )
            out(f"      {row['role']}{status}: {preview}{more}")

    @staticmethod
    def _conversation(row: dict) -> str:
        context = row["context"]
        if context == "model":
            context = f"model #{row['model_id']} {_one_line(row['model_name'])}"
        elif context == "run":
            context = f"run #{row['run_id']} of model #{row['model_id']}"
        return (
            f"  {row['id']}  {row['owner']}  {context}  {_title(row['title'])}  "
            f"{_age(row['age_seconds'])} old  {row['message_count']:,} messages"
        )

    @staticmethod
    def _summary(summary: dict) -> str:
        if not summary["covers"]:
            state = "no summary"
        else:
            state = f"summary covers {summary['covers']:,} ({summary['chars']:,} characters)"
        if summary["due"]:
            return f"{state}, {summary['behind']:,} messages behind: due"
        return f"{state}, up to date" if summary["covers"] else f"{state}, none due yet"


def _votes(row: dict) -> str:
    return f"{row['up']} up, {row['down']} down ({row['up_share']:.0%} up)"


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _title(title: str) -> str:
    return f'"{_one_line(title)}"' if title else "(untitled)"


def _time(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(seconds: int) -> str:
    """Return a duration in its two largest units: 3d 2h, 5h 10m, 12m 3s, 42s."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{value}{unit}" for value, unit in parts[:2])
