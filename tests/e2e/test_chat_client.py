"""What a person types and reads on the chat page (issue 11), in real Chromium.

Nothing typed is lost (a refused message stays in the composer with its reason, drafts
survive reloads), a reply streams as rendered Markdown (never raw ``**``) that the final
render does not move, a person's own message reads the same after a reload, and the
keyboard user keeps the focus and has shortcuts.
"""

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SLOW = "[dev:tokens=300] [dev:token_ms=25]"


def test_a_message_over_the_limit_is_refused_with_its_reason_and_kept_in_the_composer(
    open_page,
):
    page = open_page()
    page.sign_up()
    composer = page.locator("#composer-input")
    pasted = ("A long paste. " * 3000)[:40_000]
    composer.fill(pasted)
    count = page.locator("#composer-count")
    expect(count).to_have_text("40,000 / 32,000")
    expect(count).to_have_class(re.compile("over"))

    composer.press("Enter")
    reason = page.get_by_role("alert").filter(has_text="the limit is 32,000")
    expect(reason).to_contain_text("The message is 40,000 characters long")
    expect(composer).to_have_value(pasted)
    expect(page.locator(".msg")).to_have_count(0)
    page.screenshot_to("composer-over-the-limit")

    # The server refuses it the same way if the page's own check is not there: the
    # message comes back to the composer with the server's reason, nothing is stored.
    page.evaluate("document.querySelector('[data-chat]').dataset.maxChars = '100000'")
    composer.press("Enter")
    expect(page.get_by_role("alert")).to_have_text(
        "The message is 40,000 characters long; the limit is 32,000."
    )
    expect(composer).to_have_value(pasted)
    expect(page.locator(".msg")).to_have_count(0)
    expect(page.locator("#empty-chat")).to_be_visible()
    expect(composer).to_be_focused()
    assert page.url.endswith("/new")  # no conversation was made

    # Shortened, it goes.
    composer.fill("Short enough now")
    composer.press("Enter")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    expect(page.get_by_role("alert")).to_have_count(0)
    assert page.problems == []


def test_a_draft_survives_a_reload_and_each_conversation_keeps_its_own(open_page):
    page = open_page()
    page.sign_up()
    page.send("First conversation")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    first = page.url
    composer = page.locator("#composer-input")
    composer.fill("Half a thought about\nthe first conversation")
    page.wait_for_timeout(400)  # kept as it is typed (a quarter of a second later)
    page.reload()
    expect(composer).to_have_value("Half a thought about\nthe first conversation")

    page.open("/new")
    expect(composer).to_have_value("")
    composer.fill("A draft for a new chat")
    page.wait_for_timeout(400)
    page.goto(first)
    expect(composer).to_have_value("Half a thought about\nthe first conversation")
    page.open("/new")
    expect(composer).to_have_value("A draft for a new chat")

    # Sent, a draft is gone.
    page.goto(first)
    composer.press("Enter")
    page.wait_idle()
    expect(page.locator(".msg-user").last).to_contain_text("the first conversation")
    page.reload()
    expect(composer).to_have_value("")
    assert page.problems == []


# Record, at every change of the streaming reply, whether raw ** shows, whether bold is
# already bold, and whether the first block is still the node it was (not re-rendered).
WATCH_MARKDOWN = """() => {
  window.__seen = {raw: [], states: 0, boldWhileStreaming: false, firstReplaced: false,
                   listWhileStreaming: false};
  let first = null;
  new MutationObserver(() => {
    const bubble = document.querySelector('.msg-assistant.streaming');
    if (!bubble) return;
    const body = bubble.querySelector('.msg-body');
    const seen = window.__seen;
    seen.states += 1;
    if (body.textContent.includes('**')) seen.raw.push(body.textContent.slice(-80));
    if (body.querySelector('strong')) seen.boldWhileStreaming = true;
    if (body.querySelector('ul > li')) seen.listWhileStreaming = true;
    const block = body.firstElementChild;
    if (first === null && block && body.children.length > 3) {
      first = block;
      window.__firstBlock = block;
    } else if (first !== null && block !== first) {
      seen.firstReplaced = true;
    }
  }).observe(document.getElementById('message-list'),
             {subtree: true, childList: true, characterData: true});
}"""


def test_a_reply_streams_as_rendered_markdown_and_the_end_moves_nothing(open_page):
    page = open_page()
    page.sign_up()
    page.evaluate(WATCH_MARKDOWN)
    page.send("Plan my week [dev:tokens=160] [dev:token_ms=20]")
    # The reply starts with **Here is a deterministic reply.**: bold at once.
    strong = page.locator(".msg-assistant.streaming .msg-body strong")
    expect(strong).to_have_count(1)
    page.screenshot_to("markdown-while-streaming")
    page.wait_idle()
    seen = page.evaluate("window.__seen")
    assert seen["states"] > 20, seen
    assert seen["raw"] == [], f"raw ** showed while streaming: {seen['raw'][:3]}"
    assert seen["boldWhileStreaming"] and seen["listWhileStreaming"], seen
    # Incremental: the first paragraph was rendered once and kept, even by `done`.
    assert not seen["firstReplaced"], seen
    body = page.locator(".msg-assistant .msg-body").last
    assert body.evaluate("(body) => body.firstElementChild === window.__firstBlock")
    final = body.inner_html()
    page.reload()
    assert (
        page.locator(".msg-assistant .msg-body").last.evaluate(
            """(body, html) => { const t = document.createElement('template');
            t.innerHTML = html; return t.content.isEqualNode(
              (() => { const u = document.createElement('template');
                       u.innerHTML = body.innerHTML; return u.content; })()); }""",
            final,
        )
        is True
    )
    assert page.problems == []


def test_a_persons_own_message_reads_the_same_after_a_reload(open_page):
    page = open_page()
    page.sign_up()
    message = (
        "Some **bold** and _italic_, a list:\n- one\n- two\n\n"
        "`code` and <b>not html</b> & a [link](https://example.com)\n"
        "second line 😀"
    )
    page.send(message)
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    mine = page.locator(".msg-user .msg-body")
    before_text = mine.inner_text()
    before_html = mine.inner_html()
    page.reload()
    after = page.locator(".msg-user .msg-body")
    assert after.inner_text() == before_text
    same = after.evaluate(
        """(body, html) => { const a = document.createElement('template');
        a.innerHTML = html; const b = document.createElement('template');
        b.innerHTML = body.innerHTML; return a.content.isEqualNode(b.content); }""",
        before_html,
    )
    assert same, (before_html, after.inner_html())
    expect(after.locator("strong")).to_have_text("bold")
    expect(after.locator("li")).to_have_count(2)
    assert after.locator("b").count() == 0  # shown as text, as it was typed


def test_the_focus_is_back_in_the_composer_after_a_reply(open_page):
    page = open_page()
    page.sign_up()
    composer = page.locator("#composer-input")
    composer.fill("Sent with the mouse [dev:tokens=30] [dev:token_ms=10]")
    page.click("#send-btn")  # the focus goes to the button, which then hides
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    expect(composer).to_be_focused()

    composer.fill(f"Then stopped with the mouse {SLOW}")
    composer.press("Enter")
    expect(page.locator(".msg-assistant.streaming .msg-body")).to_contain_text("deterministic")
    page.click("#stop-btn")
    page.wait_idle()
    expect(page.locator(".msg-assistant").last).to_have_attribute("data-status", "stopped")
    expect(composer).to_be_focused()

    # Stopped from the keyboard (Esc) while typing the next message: the text stays.
    composer.fill(f"And stopped with Esc {SLOW}")
    composer.press("Enter")
    expect(page.locator(".msg-assistant.streaming .msg-body")).to_contain_text("deterministic")
    composer.type("next question")
    composer.press("Escape")
    page.wait_idle()
    expect(page.locator(".msg-assistant").last).to_have_attribute("data-status", "stopped")
    expect(composer).to_be_focused()
    expect(composer).to_have_value("next question")
    assert page.problems == []


def test_the_sidebar_keeps_its_place_and_the_header_follows_a_rename(open_page):
    page = open_page(height=700)
    page.sign_up()
    page.import_conversations(24)
    page.open("/new")
    items = page.locator('[data-group="general"] .session-item')
    expect(items).to_have_count(24)
    # Open one far down the list, scrolled to it.
    target = items.nth(20)
    target.scroll_into_view_if_needed()
    target.locator(".session-link").click()
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    session_id = re.search(UUID, page.url).group(0)
    groups = page.locator("#session-groups")
    page.locator(f"#s-{session_id}").scroll_into_view_if_needed()
    scrolled = groups.evaluate("(el) => el.scrollTop")
    assert scrolled > 300

    # A refresh (as after a reply) keeps the scroll position and the highlight.
    page.evaluate("htmx.trigger('#session-groups', 'refresh')")
    page.wait_for_timeout(600)
    assert abs(groups.evaluate("(el) => el.scrollTop") - scrolled) <= 2
    current = page.locator(f"#s-{session_id}")
    expect(current).to_have_class(re.compile("current"))
    expect(current.locator(".session-link")).to_have_attribute("aria-current", "page")

    # Rename it from its menu: the header and the tab title follow, the focus goes back
    # to the composer, and the list did not jump.
    current.locator("summary").click()
    scrolled = groups.evaluate("(el) => el.scrollTop")
    current.get_by_role("button", name="Rename").click()
    field = page.locator("[data-rename-input]")
    expect(field).to_be_focused()
    field.fill("Renamed while open")
    field.press("Enter")
    expect(page.locator("#chat-title")).to_have_text("Renamed while open")
    assert page.title() == "Renamed while open · Parlor"
    expect(page.locator("#composer-input")).to_be_focused()
    assert abs(groups.evaluate("(el) => el.scrollTop") - scrolled) <= 2

    # Pin: the list is refreshed, the item moves to the top, the focus returns.
    current = page.locator(f"#s-{session_id}")
    current.locator("summary").click()
    current.get_by_role("button", name="Pin").click()
    expect(items.first).to_have_id(f"s-{session_id}")
    expect(page.locator(f"#s-{session_id}")).to_have_class(re.compile("current"))
    expect(page.locator("#composer-input")).to_be_focused()
    assert page.problems == []


def test_scroll_to_the_latest_while_a_long_reply_streams_below_the_fold(open_page):
    page = open_page(height=500)
    page.sign_up()
    page.send("A long answer please [dev:tokens=500] [dev:token_ms=15]")
    jump = page.get_by_role("button", name="Scroll to the latest message")
    expect(page.locator(".msg-assistant.streaming .msg-body")).to_contain_text("steady plan")
    page.wait_for_function(
        "() => { const m = document.getElementById('messages');"
        " return m.scrollHeight > m.clientHeight + 300; }"
    )
    expect(jump).to_be_hidden()  # following the reply at the bottom
    page.locator("#messages").evaluate("(el) => { el.scrollTop = 0; }")
    expect(jump).to_be_visible()
    page.screenshot_to("scroll-to-latest")
    # Scrolled up, the page stops following: the reply grows below the fold.
    top = page.locator("#messages").evaluate("(el) => el.scrollTop")
    page.wait_for_timeout(300)
    assert page.locator("#messages").evaluate("(el) => el.scrollTop") == top
    jump.click()
    page.wait_for_function(
        "() => { const m = document.getElementById('messages');"
        " return m.scrollHeight - m.scrollTop - m.clientHeight < 80; }"
    )
    expect(jump).to_be_hidden()
    page.wait_idle(timeout=20_000)
    assert page.problems == []


def test_keyboard_shortcuts_and_their_help(open_page):
    page = open_page()
    page.sign_up()
    page.send("Something to have a conversation")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    conversation = page.url
    page.locator("#chat-title").click()  # the focus leaves the composer

    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Search conversations")
    page.screenshot_to("shortcuts-dialog")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    page.keyboard.press("Control+k")
    expect(page.locator("#search-input")).to_be_focused()
    page.keyboard.press("Shift+Escape")
    expect(page.locator("#composer-input")).to_be_focused()
    page.locator("#chat-title").click()
    page.keyboard.press("/")
    expect(page.locator("#composer-input")).to_be_focused()
    expect(page.locator("#composer-input")).to_have_value("")  # the / was not typed

    page.keyboard.press("Control+Shift+o")
    page.wait_for_url(page.base + "/new")
    page.goto(conversation)
    page.get_by_role("button", name="Shortcuts").click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    assert page.problems == []


# Every text the streaming reply shows in this tab, while it streams.
RECORD_TEXTS = """() => {
  window.__texts = [];
  new MutationObserver(() => {
    const body = document.querySelector('.msg-assistant.streaming .msg-body');
    if (body) window.__texts.push(body.textContent);
  }).observe(document.getElementById('message-list'),
             {subtree: true, childList: true, characterData: true});
}"""


def test_a_second_tab_follows_a_reply_with_emoji_without_losing_or_repeating_text(open_page):
    # Offsets count characters as the server does (code points): an emoji is one, not
    # the two UTF-16 units JavaScript counts, so a tab that joins mid-reply must not cut.
    page = open_page()
    page.sign_up()
    page.send("Emoji first 😀👩‍💻🎉 " + "and then more words " * 40 + "[dev:tokens=10]")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    page.send("Say it all back [dev:echo=context] [dev:token_ms=40]")
    reply = page.locator(".msg-assistant.streaming .msg-body")
    expect(reply).to_contain_text("🎉", timeout=15_000)
    other = open_page(context=page.context)
    other.open(page.url.removeprefix(page.base))
    other.evaluate(RECORD_TEXTS)
    expect(other.locator(".msg-assistant.streaming")).to_have_count(1)
    other.wait_idle(timeout=20_000)
    page.wait_idle(timeout=20_000)
    final = other.locator(".msg-assistant .msg-body").last.text_content()
    assert final == page.locator(".msg-assistant .msg-body").last.text_content()
    texts = other.evaluate("window.__texts")
    assert len(texts) > 5, texts

    # Each state is the start of the final text (but for the markup the view closes or
    # hides while a block is unfinished: an open *, a [ not yet a link).
    def plain(text):
        return re.sub(r"[\[\]*_`]", "", text)

    for text in texts:
        assert "\ufffd" not in text
        assert plain(final).startswith(plain(text).rstrip()), (text[-120:], final[-200:])
    assert final.count("Say it all back") == 1
    other.reload()
    assert other.locator(".msg-assistant .msg-body").last.text_content() == final
    assert page.problems == []
