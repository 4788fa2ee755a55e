"""Print the health and usage figures of every conversation (SPEC 4.5).

``--json`` prints one JSON object with the keys ``generated_at``, ``database``,
``health`` (``ok``, ``contexts_with_several_active``, ``several_active_details``,
``constraints``, ``active_sessions`` {general, model, run}, ``empty_conversations``
{total, older_than_24h}, ``past_summary_threshold_without_summary``, ``summary_threshold``,
``detached_conversations``, ``streaming_messages`` {total, stale}), ``usage``
(``conversations``, ``messages``, ``messages_per_conversation`` {avg, median, max},
``tokens`` {prompt, completion, total}) and ``top_models`` (id, name, owner,
conversations, messages).
"""

import json

from django.core.management.base import BaseCommand

from chat import reports


class Command(BaseCommand):
    help = "Report conversation health (one active per context, leftovers) and usage."

    def add_arguments(self, parser):
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print one JSON object"
        )

    def handle(self, *args, as_json: bool = False, **options):
        data = reports.report()
        if as_json:
            self.stdout.write(json.dumps(data, indent=2, default=str))
            return
        self._text(data)

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
