"""Markdown to safe HTML for assistant replies and user messages.

markdown-it-py renders (raw HTML disabled), then nh3 (Ammonia) sanitises with an
allow-list: no script, no event handlers, no ``javascript:`` URLs and no images at all,
so model output can never load a remote resource. Fenced code in a language Pygments
knows is highlighted with CSS classes only (the CSP allows no ``style`` attribute);
static/css/highlight.css colours them.
"""

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

_code_formatter = HtmlFormatter(nowrap=True)


def _highlight_code(code: str, language: str, attrs: str) -> str:
    """Return ``code`` as Pygments' token spans, or "" (markdown-it escapes it as it is)
    when the fence names no language or one Pygments does not know: never a guess."""
    if not language:
        return ""
    try:
        # Keep the text as written: no stripped leading blank lines, no added newline.
        lexer = get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return ""
    # Not starting with <pre: markdown-it wraps it in <pre><code class="language-…">.
    return highlight(code, lexer, _code_formatter)


_markdown = MarkdownIt(
    "commonmark",
    {"html": False, "linkify": False, "breaks": True, "highlight": _highlight_code},
).enable(["table", "strikethrough"])

ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "strong",
    "em",
    "del",
    "s",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "a",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "span",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}, "th": {"align"}, "td": {"align"}}
# A span keeps only Pygments' token classes ("k", "nf", "c1", …), nothing else. (Ammonia
# refuses a tag in both lists, so code's language-* class stays in ALLOWED_ATTRIBUTES.)
HIGHLIGHT_CLASSES = frozenset(STANDARD_TYPES.values()) - {""}
ALLOWED_CLASSES = {"span": HIGHLIGHT_CLASSES}
URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "noopener noreferrer nofollow"
# The chat page renders a streaming reply with the same lists (chat.views, markdown.js).


def render_markdown(text: str) -> str:
    """Return sanitised HTML for ``text`` (Markdown)."""
    html = _markdown.render(text or "")
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        allowed_classes=ALLOWED_CLASSES,
        url_schemes=URL_SCHEMES,
        link_rel=LINK_REL,
    )
