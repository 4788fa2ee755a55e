"""chat.rendering: Markdown to sanitised HTML, fenced code highlighted by Pygments."""

import html
import re

from chat.rendering import HIGHLIGHT_CLASSES, render_markdown

PYTHON = '```python\ndef greet(name):\n    return f"hi {name}"  # say hi\n```'


def code_text(rendered: str) -> str:
    """Return the text of the code blocks in ``rendered``, tags removed, unescaped."""
    blocks = re.findall(r"<pre><code[^>]*>(.*?)</code></pre>", rendered, re.S)
    return "".join(html.unescape(re.sub(r"<[^>]+>", "", block)) for block in blocks)


def span_classes(rendered: str) -> set[str]:
    return {c for value in re.findall(r'<span class="([^"]*)"', rendered) for c in value.split()}


def test_a_python_block_is_highlighted_with_token_classes_in_pre_code():
    rendered = render_markdown(PYTHON)
    assert rendered.startswith('<pre><code class="language-python"><span class="k">def</span>')
    assert '<span class="nf">greet</span>' in rendered
    assert '<span class="c1"># say hi</span>' in rendered
    assert rendered.rstrip().endswith("</code></pre>")
    assert code_text(rendered) == 'def greet(name):\n    return f"hi {name}"  # say hi\n'


def test_highlighting_keeps_the_code_as_written():
    text = "\n\n\tindented(1)\n  x = '<b>' & \"q\"\n"
    rendered = render_markdown(f"```Python\n{text}```")
    assert 'class="language-Python"' in rendered and "<span" in rendered
    assert code_text(rendered) == text


def test_an_unknown_or_missing_language_is_plain_escaped_code_never_guessed():
    rendered = render_markdown("```nosuchlanguage\ndef f(x):\n    return x < 2\n```")
    assert rendered == (
        '<pre><code class="language-nosuchlanguage">def f(x):\n    return x &lt; 2\n</code></pre>\n'
    )
    rendered = render_markdown("```\ndef f(x):\n    return x < 2\n```")
    assert rendered == "<pre><code>def f(x):\n    return x &lt; 2\n</code></pre>\n"


def test_a_script_in_a_code_block_stays_text():
    for fence in ("```html", "```python", "```nosuchlanguage", "```"):
        rendered = render_markdown(f"{fence}\n<script>alert(1)</script>\n```")
        assert "<script" not in rendered
        assert code_text(rendered) == "<script>alert(1)</script>\n"


def test_no_style_attribute_in_any_highlighted_output():
    # Colours come from classes only: the CSP allows no style attribute.
    code = '<p style="color:red">x</p>\n- a: 1\n+ b\n$ ls\nSELECT 1;\n'
    for language in ("python", "html", "css", "yaml", "diff", "sql", "console", "js"):
        rendered = render_markdown(f"```{language}\n{code}```")
        assert "<span" in rendered, language
        assert not re.search(r"<[^>]*\sstyle\s*=", rendered), language
        assert code_text(rendered) == code, language


def test_a_span_keeps_only_pygments_token_classes():
    # YAML's lexer emits token types of its own ("p p-Indicator"): the sanitiser keeps the
    # standard class and drops the rest.
    rendered = render_markdown("```yaml\nkey: [a, b]\n```")
    assert '<span class="p">[</span>' in rendered
    assert "p-Indicator" not in rendered
    assert span_classes(rendered) <= HIGHLIGHT_CLASSES
    assert "" not in HIGHLIGHT_CLASSES and {"k", "nf", "c1", "s2"} <= HIGHLIGHT_CLASSES


def test_a_span_typed_in_markdown_stays_text():
    rendered = render_markdown('<span class="k">def</span> and `<span class="nf">`')
    assert "<span" not in rendered
    assert '&lt;span class="k"&gt;def&lt;/span&gt;' in rendered
    assert '<code>&lt;span class="nf"&gt;</code>' in rendered
