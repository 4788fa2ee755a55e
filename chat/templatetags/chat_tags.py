import re

from django import template
from django.utils.safestring import mark_safe

from chat.rendering import render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> str:
    """Render Markdown to sanitised HTML (chat.rendering allow-lists every tag)."""
    return mark_safe(render_markdown(text))  # noqa: S308 - sanitised by nh3


@register.filter
def signed_money(value) -> str:
    """Format a P&L amount with its sign: +$1,234.50 / -$12.00."""
    if value is None:
        return "—"
    sign = "+" if value >= 0 else "-"
    return f"{sign}${abs(value):,.2f}"


_MARKUP = re.compile(r"[*_`#>~]+|\[([^\]]*)\]\([^)]*\)")


@register.filter
def plain_preview(text: str) -> str:
    """Strip the Markdown punctuation from a preview so the sidebar reads as prose."""
    return " ".join(_MARKUP.sub(lambda m: m.group(1) or "", text or "").split())


@register.filter
def holds(sessions, session_id: str) -> bool:
    """Whether one of ``sessions`` is the conversation ``session_id`` (a string id)."""
    return bool(session_id) and any(str(session.pk) == session_id for session in sessions)
