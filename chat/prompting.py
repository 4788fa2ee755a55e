"""What the LLM is sent: system prompt, rolling summary, recent messages (SPEC 5.2)."""

from dataclasses import dataclass

from django.conf import settings

from models_app.models import Model, Run

from . import tools
from .models import ChatSession, Message

GENERAL_PROMPT = (
    "You are Parlor, a helpful, precise assistant. Answer in Markdown. "
    "Say so when you do not know something."
)
TITLE_PROMPT = (
    "Reply with only a short title (at most six words, no quotes) for a conversation "
    "that starts with the user's message."
)
SUMMARY_PROMPT = (
    "Summarize the conversation below in a few sentences, keeping facts, decisions and "
    "open questions. The previous summary, if any, comes first."
)


@dataclass
class ReplyContext:
    """Everything a generation needs to call the LLM."""

    messages: list[dict]
    model: str
    tools: list | None
    run_id: int | None


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def model_configuration(model: Model) -> str:
    """Return the model's full configuration as one line per setting."""
    order_types = ", ".join(model.allowed_order_types or []) or "none"
    lines = [
        f"- Name: {model.name}",
        f"- Description: {model.description or '(none)'}",
        f"- LLM: {model.effective_llm}",
        f"- Trading mode: {model.get_trading_mode_display()}",
        f"- Trading style: {model.get_trading_style_display()}",
        f"- Instrument: {model.instrument or '(none)'}",
        f"- Margin account: {_yes(model.margin_account)}",
        f"- Buying power: {model.buying_power}",
        f"- Shorting allowed: {_yes(model.allow_shorting)}",
        f"- Options strategies allowed: {_yes(model.allow_options_strategies)}",
        f"- Hedging allowed: {_yes(model.allow_hedging)}",
        f"- Allowed order types: {order_types}",
        f"- Instructions: {model.instructions or '(none)'}",
        f"- Rules: {model.rules or '(none)'}",
    ]
    return "\n".join(lines)


def run_facts(run: Run) -> str:
    """Return the facts of a run for the system prompt."""
    pnl = run.pnl
    return "\n".join(
        [
            f"Run #{run.pk}: status {run.status}",
            f"started {run.started_at.isoformat() if run.started_at else 'not yet'}",
            f"ended {run.ended_at.isoformat() if run.ended_at else 'not yet'}",
            f"starting capital {run.starting_capital}",
            f"ending equity {run.ending_equity if run.ending_equity is not None else 'n/a'}",
            f"P&L {pnl if pnl is not None else 'n/a'}",
            f"trades {run.trades.count()}",
        ]
    )


def system_prompt(session: ChatSession) -> str:
    """Return the system prompt of a conversation."""
    parts = [GENERAL_PROMPT]
    if session.model_id:
        parts.append(
            "This conversation is about the user's trading model. Its configuration:\n"
            + model_configuration(session.model)
        )
    if session.run_id:
        parts.append(
            "This conversation is about one run of that model. Its facts: "
            + "; ".join(run_facts(session.run).splitlines())
            + ". Use the tools to look up the run's trades, open positions and summary."
        )
    return "\n\n".join(parts)


def reply_context(*, session_id, message_id: int) -> ReplyContext:
    """Return the LLM input for the reply ``message_id`` (the streaming placeholder)."""
    session = ChatSession.objects.select_related("model", "run").get(pk=session_id)
    messages = [{"role": "system", "content": system_prompt(session)}]
    if session.summary:
        messages.append(
            {
                "role": "system",
                "content": f"Summary of the earlier conversation:\n{session.summary}",
            }
        )
    recent = list(
        Message.objects.filter(
            session=session, role__in=[Message.Role.USER, Message.Role.ASSISTANT]
        )
        .exclude(pk=message_id)
        .exclude(role=Message.Role.ASSISTANT, content="")
        .order_by("-created_at", "-id")
        .values("role", "content")[: settings.CONTEXT_MESSAGES]
    )
    messages.extend({"role": m["role"], "content": m["content"]} for m in reversed(recent))
    llm = session.model.effective_llm if session.model_id else settings.LLM_MODEL
    return ReplyContext(
        messages=messages,
        model=llm,
        tools=tools.SPECS if session.run_id else None,
        run_id=session.run_id,
    )


def title_messages(content: str) -> list[dict]:
    return [{"role": "system", "content": TITLE_PROMPT}, {"role": "user", "content": content}]


@dataclass
class SummaryJob:
    messages: list[dict]
    until_id: int
    message_count: int


def summary_job(*, session_id) -> SummaryJob | None:
    """Return what to summarize, or None when the summary is up to date.

    The summary covers everything older than the last CONTEXT_MESSAGES messages once
    the conversation is past SUMMARY_THRESHOLD; it rolls: the old summary plus the
    messages after it.
    """
    session = ChatSession.objects.filter(pk=session_id).first()
    if session is None:
        return None
    finished = Message.objects.filter(session=session).exclude(status=Message.Status.STREAMING)
    total = finished.count()
    if total <= settings.SUMMARY_THRESHOLD:
        return None
    older = list(
        finished.order_by("-created_at", "-id").values_list("id", flat=True)[
            settings.CONTEXT_MESSAGES : settings.CONTEXT_MESSAGES + 1
        ]
    )
    if not older:
        return None
    until_id = older[0]
    if session.summary_until_id is not None and session.summary_until_id >= until_id:
        return None
    pending = finished.filter(id__lte=until_id)
    if session.summary_until_id is not None:
        pending = pending.filter(id__gt=session.summary_until_id)
    lines = []
    if session.summary:
        lines.append("previous summary: " + session.summary)
    for role, content in pending.order_by("created_at", "id").values_list("role", "content"):
        lines.append(f"{role}: {' '.join(content.split())[:2000]}")
    covered = finished.filter(id__lte=until_id).count()
    return SummaryJob(
        messages=[
            {"role": "system", "content": SUMMARY_PROMPT},
            {"role": "user", "content": "\n".join(lines)},
        ],
        until_id=until_id,
        message_count=covered,
    )
