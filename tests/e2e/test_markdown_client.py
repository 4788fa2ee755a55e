"""The page's own Markdown (static/js/markdown.js) against the server's (chat/rendering.py).

While a reply streams, the page renders it with vendored markdown-it and DOMPurify set up
with the server's allow-list; once it is done, the server's ``html`` takes over. These
tests feed the same texts to both, in real Chromium: the results must be the same DOM,
streamed or not, and what streams must never show raw markup or unsafe HTML. The one
difference is the server's syntax highlighting (Pygments, in Python only): the same code
text, in token spans; finishing a reply replaces a highlighted code block and nothing else.
"""

import pytest

from chat.rendering import ALLOWED_TAGS, render_markdown

pytestmark = pytest.mark.e2e

SAMPLES = [
    "**Here is a deterministic reply.**\n\nYou asked: *Plan a trip*\n\n"
    "Some words.\n\n- one\n- two `done`",
    "# Title\n\nA paragraph\nwith a soft break.\n\n## Second\n\n"
    "> quoted **bold**\n> more\n\n---\n\nend",
    "1. first\n2. second\n\n   continued in the item\n3. third\n\nAfter the list.",
    "- tight\n- list\n\n- now loose\n\n  with a paragraph\n\nText.\n\n3. starts at three\n4. four",
    "```python\ndef f(x):\n\n    return x * 2  # **not bold**\n```\n\n"
    "After the code.\n\n~~~\ntilde fence\n~~~",
    "| Left | Center | Right |\n|:-----|:------:|------:|\n| a | **b** | c |\n"
    "| d | e | f |\n\nBelow the table.",
    'Links: [ok](https://example.com "title"), [mail](mailto:a@example.com), [rel](/c/x), '
    "[bad](javascript:alert(1)), [data](data:text/html,x), [ftp](ftp://example.com/f), "
    "<https://auto.example.com>, ![img](https://evil.example/x.png)",
    "<script>alert(1)</script> <img src=x onerror=alert(2)> &amp; &lt;b&gt; &copy; "
    "~~strike~~ snake_case_word *em* __strong__ ***both*** \\*escaped\\*",
    "Emoji 😀 and 👩‍💻 mixed with **bold 🎉** and `code 🚀`.\n\nLast line  \nhard break.",
    "Nested:\n\n- a\n  - b\n    - c **deep**\n- d\n\n```\nunclosed fence at the end",
]

# window.unhighlight(html): the server's HTML in a template, without its highlighting:
# each code block's token spans joined back into the one text node the page's own has.
UNHIGHLIGHT = """window.unhighlight = (html) => {
  const template = document.createElement('template');
  template.innerHTML = html;
  template.content.querySelectorAll('pre > code').forEach((code) => {
    code.textContent = code.textContent;
  });
  return template;
}"""

COMPARE = """([text, serverHtml]) => {
  const mine = document.createElement('template');
  mine.innerHTML = window.ParlorMarkdown.html(text);
  const theirs = window.unhighlight(serverHtml);
  return {same: mine.content.isEqualNode(theirs.content), mine: mine.innerHTML,
          theirs: theirs.innerHTML};
}"""

# Stream `text` into a view in pieces of `step` characters, rendering each state as a
# frame would; return what showed at each step and whether finishing with the server's
# html changed anything.
STREAM = """([text, serverHtml, step]) => {
  const element = document.createElement('div');
  element.className = 'msg-body markdown';
  document.body.appendChild(element);
  const view = new window.ParlorMarkdown.StreamView(element);
  const shown = [];
  let firstBlock = null;
  for (let end = step; end < text.length + step; end += step) {
    view.update(text.slice(0, end));
    view.flush();
    const all = Array.from(element.querySelectorAll('*'));
    shown.push({
      text: element.textContent,
      html: element.innerHTML,
      tags: Array.from(new Set(all.map((node) => node.localName))),
      attributes: Array.from(new Set(all.flatMap((node) => node.getAttributeNames()))),
      hrefs: all.filter((node) => node.hasAttribute('href'))
        .map((node) => node.getAttribute('href')),
    });
    if (!firstBlock && view.settled > 0) firstBlock = element.firstElementChild;
  }
  const before = element.innerHTML;
  view.finish(serverHtml);
  // A code block the server highlighted is the one block that may be replaced.
  const kept = firstBlock === null || element.firstElementChild === firstBlock
    || element.firstElementChild.matches('pre:has(> code > span)');
  element.remove();
  return {shown, before, after: element.innerHTML, kept};
}"""


@pytest.fixture
def chat_page(open_page):
    page = open_page()
    page.sign_up()
    page.evaluate(UNHIGHLIGHT)
    return page


def test_the_page_renders_markdown_as_the_server_does(chat_page):
    for text in SAMPLES:
        result = chat_page.evaluate(COMPARE, [text, render_markdown(text)])
        assert result["same"], (text, result["mine"], result["theirs"])


def test_a_streamed_reply_ends_as_the_server_renders_it_without_a_jump(chat_page):
    for text in SAMPLES:
        for step in (1, 7):
            result = chat_page.evaluate(STREAM, [text, render_markdown(text), step])
            # The incremental rendering of the whole text is the server's: `done` moves
            # nothing but the server's highlighting, and a block settled early is the same
            # node at the end unless it is a code block the server highlighted.
            assert result["kept"], (text, step, result["before"], result["after"])
            same = chat_page.evaluate(
                """([a, b]) => { const x = document.createElement('template');
                x.innerHTML = a; return x.content.isEqualNode(window.unhighlight(b).content); }""",
                [result["before"], result["after"]],
            )
            assert same, (text, step, result["before"], result["after"])


def test_no_raw_markup_or_unsafe_html_shows_while_it_streams(chat_page):
    for text in SAMPLES:
        result = chat_page.evaluate(STREAM, [text, render_markdown(text), 1])
        for state in result["shown"]:
            if "```" in text:
                continue  # inside a code block ** is code, shown as written
            assert "**" not in state["text"], (text, state)
        for state in result["shown"]:
            # Only the server's tags and attributes; links only to the allowed schemes
            # (or relative), never script, images, event handlers or javascript: URLs.
            assert set(state["tags"]) <= ALLOWED_TAGS, (text, state)
            for name in state["attributes"]:
                assert name in {"href", "title", "class", "align", "rel"}, (text, state)
            for href in state["hrefs"]:
                assert href.split(":")[0] in {"http", "https", "mailto"} or href.startswith("/")
