"""What the LLM is sent: system prompt, rolling summary, recent messages (SPEC 5.2)."""

from dataclasses import dataclass

from django.conf import settings

from accounts.models import User
from models_app.models import Model, Run

from . import sql, tools
from .models import ChatSession, Message

GENERAL_PROMPT = (
    "You are Parlor, a helpful, precise assistant. Answer in Markdown. "
    "Say so when you do not know something."
)
TITLE_PROMPT = (
    "Reply with only a short title (at most six words, no quotes) for a conversation "
    "that starts with the user's message."
)
TRUNCATED_NOTE = (
    "Some earlier messages of this conversation are left out here for length; say so if "
    "the question depends on them."
)
# Tokens are estimated at four characters each for the context budget.
CHARS_PER_TOKEN = 4
# A summary reads at most this many messages at once (when earlier summaries failed, the
# next ones catch up).
SUMMARY_ROWS_MAX = 400
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
    # Older messages after the summary were left out for length: a summary should catch up.
    truncated: bool = False


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


def custom_instructions(session: ChatSession) -> str:
    """Return the owner's custom instructions (settings) as a part of the system prompt,
    or "" when they set none.

    The owner comes with the session when the service that stored the message attached
    it (a new conversation); otherwise one query reads the two columns.
    """
    fields = ("about_me", "response_style")
    owner = session.user if ChatSession.user.is_cached(session) else None
    if owner is not None and not owner.get_deferred_fields() & set(fields):
        about_me, response_style = owner.about_me, owner.response_style
    else:
        row = User.objects.filter(pk=session.user_id).values_list(*fields).first()
        about_me, response_style = row or ("", "")
    parts = []
    if about_me:
        parts.append(f"About the user, in their own words:\n{about_me}")
    if response_style:
        parts.append(f"How the user wants answers, in their own words:\n{response_style}")
    return "\n\n".join(parts)


def system_prompt(session: ChatSession) -> str:
    """Return the system prompt of a conversation: the general prompt, the model's
    configuration and the run's facts when it is about them, then the user's custom
    instructions."""
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
    if instructions := custom_instructions(session):
        parts.append(instructions)
    return "\n\n".join(parts)


def _context_rows_limit() -> int:
    """Return how many messages after the summary one context may read at most.

    The summary keeps up within SUMMARY_EVERY messages of the window, so this is never
    reached while it does; it bounds the work of a reply when summaries fail.
    """
    return 2 * (settings.SUMMARY_THRESHOLD + settings.SUMMARY_EVERY) + settings.CONTEXT_MESSAGES


def recent_read(session: ChatSession) -> tuple[int | None, int]:
    """Return (after_id, limit) of the messages a reply's context reads in ``session``
    (``sql.recent_messages``): those after what its summary covers, at most the limit."""
    return (session.summary_until_id if session.summary else None), _context_rows_limit()


def reply_context(
    *,
    session: ChatSession,
    message_id: int,
    first_question: Message | None = None,
    recent: list[tuple[str, str]] | None = None,
) -> ReplyContext:
    """Return the LLM input for the reply ``message_id`` (the streaming placeholder).

    The system prompt, the rolling summary if any, then every user and assistant message
    after what the summary covers (at least the last CONTEXT_MESSAGES: the summary never
    covers those), newest kept within CONTEXT_TOKEN_BUDGET. ``session`` comes with its
    model and run (``reply_start`` loads them); one indexed query reads the messages, or
    none when the caller knows the question is the conversation's first
    (``first_question``) or has read them (``recent``: ``sql.recent_messages``'s rows,
    read after the reply's placeholder was stored, as ``recent_read`` says).
    """
    messages = [{"role": "system", "content": system_prompt(session)}]
    if session.summary:
        messages.append(
            {
                "role": "system",
                "content": f"Summary of the earlier conversation:\n{session.summary}",
            }
        )
    if first_question is not None:
        rows = [(first_question.role, first_question.content, "")]
    elif recent is not None:
        rows = recent
    else:
        after_id, limit = recent_read(session)
        rows = sql.recent_messages(
            session_id=session.pk, exclude_id=message_id, after_id=after_id, limit=limit
        )
    budget = settings.CONTEXT_TOKEN_BUDGET * CHARS_PER_TOKEN - sum(
        len(m["content"]) for m in messages
    )
    kept = []
    for role, content, author_name in rows:
        budget -= len(content)
        if budget < 0 and kept:
            break
        kept.append(_context_message(role, content, author_name))
    truncated = len(kept) < len(rows) or len(rows) >= _context_rows_limit()
    if truncated:
        messages.append({"role": "system", "content": TRUNCATED_NOTE})
    messages.extend(reversed(kept))
    return ReplyContext(
        messages=messages,
        model=session.effective_llm,
        tools=tools.SPECS if session.run_id else None,
        run_id=session.run_id,
        truncated=truncated,
    )


OPERATOR_SAID = "[{name}, a person from the support team, wrote:]\n{content}"


def _context_message(role: str, content: str, author_name: str) -> dict:
    """One message of the context; an operator's is the assistant's side, naming them."""
    if role == Message.Role.OPERATOR:
        name = author_name or "An operator"
        return {"role": "assistant", "content": OPERATOR_SAID.format(name=name, content=content)}
    return {"role": role, "content": content}


SUGGESTION_NOTE = (
    "{name}, a person from the support team, is answering the user in this conversation "
    "in person. Draft the next reply for them to send: address the user directly, write "
    "only the reply, no preamble."
)


def suggestion_context(*, session: ChatSession, operator_name: str) -> ReplyContext:
    """Return the LLM input of a draft an operator asked for: the conversation as the
    next reply would see it, and a note that a person will send it."""
    context = reply_context(session=session, message_id=0)
    note = SUGGESTION_NOTE.format(name=operator_name)
    context.messages.insert(1, {"role": "system", "content": note})
    return context


def title_messages(content: str) -> list[dict]:
    return [{"role": "system", "content": TITLE_PROMPT}, {"role": "user", "content": content}]


@dataclass
class SummaryJob:
    messages: list[dict]
    until_id: int
    message_count: int


def summary_due(*, message_count: int, summary_message_count: int) -> bool:
    """Return whether a conversation's rolling summary should be refreshed now.

    Past SUMMARY_THRESHOLD messages, once SUMMARY_EVERY more messages have left the
    recent window of CONTEXT_MESSAGES since the summary was made. Counters only: no
    query, whatever the conversation's length.
    """
    if message_count <= settings.SUMMARY_THRESHOLD:
        return False
    left_window = message_count - settings.CONTEXT_MESSAGES
    return left_window - summary_message_count >= settings.SUMMARY_EVERY


def summary_job(*, session_id, force: bool = False) -> SummaryJob | None:
    """Return what to summarize, or None when the summary is up to date.

    The summary covers everything older than the last CONTEXT_MESSAGES messages once
    the conversation is past SUMMARY_THRESHOLD; it rolls: the old summary plus the
    messages after it. Keyset reads on the message index: the work does not grow with
    the conversation. ``force`` refreshes even before SUMMARY_EVERY messages are due.
    """
    session = ChatSession.objects.filter(pk=session_id).first()
    if session is None or session.message_count <= settings.SUMMARY_THRESHOLD:
        return None
    if not force and not summary_due(
        message_count=session.message_count,
        summary_message_count=session.summary_message_count,
    ):
        return None
    # The current path only: a summary never covers a sibling branch.
    finished = Message.objects.filter(session=session, on_path=True).exclude(
        status=Message.Status.STREAMING
    )
    newest_first = finished.order_by("-created_at", "-id").values_list("id", "created_at")
    older = list(newest_first[settings.CONTEXT_MESSAGES : settings.CONTEXT_MESSAGES + 1])
    if not older:
        return None
    until_id, until_at = older[0]
    if session.summary_until_id is not None and session.summary_until_id >= until_id:
        return None
    # Ranges of the path's (session, on_path, created_at, id) index: what the summary covers
    # is not read again, however long the conversation.
    pending = finished.filter(created_at__lte=until_at, id__lte=until_id)
    if session.summary_until_id is not None:
        covered_at = (
            Message.objects.filter(pk=session.summary_until_id)
            .values_list("created_at", flat=True)
            .first()
        )
        if covered_at is not None:
            pending = pending.filter(created_at__gte=covered_at)
        pending = pending.filter(id__gt=session.summary_until_id)
    rows = list(
        pending.order_by("-created_at", "-id").values_list("role", "content")[:SUMMARY_ROWS_MAX]
    )
    lines = []
    if session.summary:
        lines.append("previous summary: " + session.summary)
    for role, content in reversed(rows):
        lines.append(f"{role}: {' '.join(content.split())[:2000]}")
    return SummaryJob(
        messages=[
            {"role": "system", "content": SUMMARY_PROMPT},
            {"role": "user", "content": "\n".join(lines)},
        ],
        until_id=until_id,
        message_count=max(session.message_count - settings.CONTEXT_MESSAGES, 0),
    )
