"""Parlor in real headless Chromium against a live daphne server and the dev LLM over HTTP."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SLOW = "[dev:tokens=300] [dev:token_ms=25]"

# Record every length the streamed reply goes through, to see it grow token by token.
WATCH_LENGTHS = """() => {
  window.__lengths = [];
  new MutationObserver(() => {
    const body = document.querySelector('.msg-assistant.streaming .msg-body');
    if (body) window.__lengths.push(body.textContent.length);
  }).observe(document.getElementById('message-list'),
             {subtree: true, childList: true, characterData: true});
}"""


def current_session_id(page) -> str:
    return re.search(UUID, page.url).group(0)


def sidebar_item(page, session_id):
    return page.locator(f"#s-{session_id}")


def test_sign_up_chat_stream_and_switch_conversations(open_page):
    page = open_page()
    page.sign_up()
    expect(page.locator("#send-btn")).to_be_disabled()
    page.evaluate(WATCH_LENGTHS)

    page.send("Plan a trip to Lisbon in spring [dev:token_ms=15]")

    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    lengths = page.evaluate("window.__lengths")
    growing = sorted({n for n in lengths if n > 0})
    assert len(growing) >= 5, f"the reply did not stream token by token: {lengths}"
    reply = page.locator(".msg-assistant .msg-body").last
    expect(reply).to_contain_text("Here is a deterministic reply.")
    expect(reply.locator("strong")).to_have_count(1)  # Markdown rendered after `done`
    first = current_session_id(page)
    # The LLM's title replaces the provisional one, live, in the sidebar and the header.
    expect(sidebar_item(page, first).locator(".session-title")).to_have_text(
        "Plan a trip to Lisbon in"
    )
    expect(page.locator("#chat-title")).to_have_text("Plan a trip to Lisbon in")
    expect(sidebar_item(page, first)).to_have_class(re.compile("current"))

    page.click(".sidebar .btn-new")
    page.wait_for_url(page.base + "/new")
    page.send("Second topic about gardening")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    second = current_session_id(page)
    assert second != first
    expect(sidebar_item(page, second)).to_contain_text("(active)")
    expect(sidebar_item(page, first)).not_to_contain_text("(active)")

    sidebar_item(page, first).locator(".session-link").click()
    page.wait_for_url(page.base + f"/c/{first}")
    expect(page.locator(".msg-user")).to_have_count(1)
    expect(page.locator(".msg-user")).to_contain_text("Plan a trip to Lisbon in spring")
    expect(page.locator(".msg-assistant")).to_contain_text("Here is a deterministic reply.")
    expect(sidebar_item(page, first)).to_contain_text("(active)")
    expect(sidebar_item(page, second)).not_to_contain_text("(active)")
    page.screenshot_to("desktop-conversation")
    assert page.problems == []


def test_model_conversation_knows_the_models_configuration(open_page):
    page = open_page()
    page.sign_up()
    page.open("/models/new/")
    page.fill("#id_name", "Momentum Alpha")
    page.fill("#id_instrument", "futures")
    page.fill("#id_buying_power", "75000")
    page.select_option("#id_trading_style", "scalping")
    page.check("#id_allow_shorting")
    page.click(".form-card button[type=submit]")
    expect(page.locator("h1")).to_have_text("Momentum Alpha")

    page.click("text=Chat with this model")
    page.wait_for_url(re.compile(r"/m/\d+/new$"))
    facts = page.locator(".facts")
    expect(facts).to_contain_text("Scalping")
    expect(facts).to_contain_text("$75,000.00")
    page.send("What are you configured for?")
    page.wait_for_url(re.compile(rf"/m/\d+/c/{UUID}$"))
    page.wait_idle()
    reply = page.locator(".msg-assistant .msg-body").last
    expect(reply).to_contain_text("Trading style: Scalping")
    expect(reply).to_contain_text("Instrument: futures")
    group = page.locator(".group", has=page.locator(".group-title", has_text="Momentum Alpha"))
    expect(group.locator(".session-item")).to_have_count(1)
    page.screenshot_to("model-conversation")
    assert page.problems == []


def test_stop_keeps_the_partial_reply(open_page):
    page = open_page()
    page.sign_up()
    page.send(f"Tell me a long story {SLOW}")
    body = page.locator(".msg-assistant .msg-body").last
    expect(body).to_contain_text("deterministic")
    page.click("#stop-btn")
    page.wait_idle()
    partial = body.inner_text()
    assert partial.strip(), "the partial reply was lost"
    expect(page.locator(".msg-assistant .msg-note")).to_have_text("Stopped")
    assert "`done`" not in partial and "done" not in partial.split()[-1:]

    page.reload()
    stored = page.locator(".msg-assistant .msg-body").last
    expect(stored).to_contain_text("Here is a deterministic reply.")
    expect(page.locator(".msg-assistant")).to_have_attribute("data-status", "stopped")
    assert len(stored.inner_text()) >= len(partial) - 5


def test_reload_mid_reply_resumes_and_a_second_tab_follows(open_page):
    page = open_page()
    page.sign_up()
    page.send("A quick first question")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    # A tab already open on the conversation sees the next question and reply live.
    watcher = open_page(context=page.context)
    watcher.open(page.url.removeprefix(page.base))
    expect(watcher.locator(".msg-assistant")).to_have_count(1)
    page.send(f"Write at length {SLOW}")
    expect(watcher.locator(".msg-user").last).to_contain_text("Write at length")
    expect(watcher.locator(".msg-assistant.streaming .msg-body")).to_contain_text("deterministic")
    expect(page.locator(".msg-assistant .msg-body").last).to_contain_text("deterministic")

    page.reload()
    streaming = page.locator(".msg-assistant.streaming .msg-body")
    expect(streaming).to_have_count(1)
    before = len(streaming.inner_text())
    page.wait_for_function(
        "n => (document.querySelector('.msg-assistant.streaming .msg-body') || {}).textContent"
        "?.length > n + 20",
        arg=before,
    )

    # A second tab on the same conversation shows the same reply live.
    other = open_page(context=page.context)
    other.open(page.url.removeprefix(page.base))
    expect(other.locator(".msg-assistant.streaming")).to_have_count(1)
    other.wait_idle(timeout=20_000)
    page.wait_idle(timeout=20_000)
    watcher.wait_idle(timeout=20_000)
    final = page.locator(".msg-assistant .msg-body").last.inner_text()
    assert final == other.locator(".msg-assistant .msg-body").last.inner_text()
    assert final == watcher.locator(".msg-assistant .msg-body").last.inner_text()
    expect(watcher.locator(".msg-user")).to_have_count(2)
    assert final.count("Here is a deterministic reply.") == 1
    expect(page.locator(".msg-assistant").last).to_have_attribute("data-status", "complete")
    assert len(final.split()) > 250  # the whole reply (300 tokens), nothing lost or repeated
    page.reload()
    assert page.locator(".msg-assistant .msg-body").last.inner_text() == final
    assert page.problems == []


def test_rename_pin_archive_and_delete(open_page):
    page = open_page()
    page.sign_up()
    ids = []
    for text in ["Alpha question", "Beta question", "Gamma question"]:
        page.open("/new")
        page.send(text)
        page.wait_for_url(re.compile(rf"/c/{UUID}$"))
        page.wait_idle()
        ids.append(current_session_id(page))
    alpha, beta, gamma = ids

    def menu(session_id, action):
        item = sidebar_item(page, session_id)
        item.locator("summary").click()
        item.get_by_role("button", name=action).click()

    menu(alpha, "Rename")
    field = page.locator("[data-rename-input]")
    expect(field).to_be_focused()
    field.fill("Renamed by me")
    field.press("Enter")
    expect(sidebar_item(page, alpha).locator(".session-title")).to_have_text("Renamed by me")

    menu(alpha, "Pin")
    first_item = page.locator('[data-group="general"] .session-item').first
    expect(first_item).to_have_id(f"s-{alpha}")

    menu(beta, "Archive")
    expect(sidebar_item(page, beta)).to_have_count(0)
    page.click("text=Archived")
    expect(sidebar_item(page, beta)).to_be_visible()
    page.click("text=Back to conversations")

    page.once("dialog", lambda dialog: dialog.accept())
    menu(gamma, "Delete")  # the open conversation: the page moves to a new chat
    page.wait_for_url(page.base + "/new")
    expect(sidebar_item(page, gamma)).to_have_count(0)
    assert page.open(f"/c/{gamma}").status == 404
    expect(page.locator("h1")).to_have_text("Not found")

    page.open("/new")
    expect(sidebar_item(page, alpha).locator(".session-title")).to_have_text("Renamed by me")
    expect(sidebar_item(page, alpha)).to_have_class(re.compile("pinned"))


def test_search_finds_a_word_from_a_message_body(open_page):
    page = open_page()
    page.sign_up()
    page.send("My favourite instrument is the xylophone, what about you?")
    page.wait_idle()
    page.open("/new")
    page.fill("#search-input", "xylophone")
    hit = page.locator("#search-results .search-hit")
    expect(hit).to_have_count(1)
    expect(hit.locator("mark")).to_have_text("xylophone")
    hit.locator("a").click()
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))


def test_phone_width_uses_a_drawer_and_never_overflows(open_page):
    page = open_page(width=390, height=844)
    page.sign_up()
    expect(page.locator("#sidebar")).not_to_be_visible()
    long_word = "x" * 300
    page.send(f"Check this: {long_word}\n```\n{'wide_code_line ' * 20}\n```")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    overflow = "document.scrollingElement.scrollWidth <= window.innerWidth"
    assert page.evaluate(overflow)
    page.screenshot_to("phone-conversation")

    page.click("[data-drawer-open]")
    expect(page.locator("#sidebar")).to_be_visible()
    expect(page.locator(".drawer-close")).to_be_focused()
    assert page.evaluate(overflow)
    page.wait_for_timeout(300)  # let the drawer finish sliding in for the screenshot
    page.screenshot_to("phone-drawer")
    page.keyboard.press("Escape")
    expect(page.locator("#sidebar")).not_to_be_visible()

    page.open("/models/")
    assert page.evaluate(overflow)
    assert page.problems == []


def test_stored_xss_stays_inert(open_page):
    page = open_page()
    remote = []
    page.on("request", lambda r: remote.append(r.url) if "evil.example" in r.url else None)
    page.sign_up()
    payload = (
        "<script>window.__xss = 1</script> "
        '<img src=http://evil.example/x.png onerror="window.__xss = 2"> '
        "[click me](javascript:window.__xss=3) ![pic](http://evil.example/y.png)"
    )
    page.open("/models/new/")
    page.fill("#id_name", "Sneaky")
    page.fill("#id_instructions", payload)
    page.click(".form-card button[type=submit]")
    page.click("text=Chat with this model")
    page.wait_for_url(re.compile(r"/m/\d+/new$"))

    page.send(f"{payload} What are you configured for?")
    page.wait_idle()
    reply = page.locator(".msg-assistant .msg-body").last
    expect(reply).to_contain_text("Instructions:")
    expect(reply).to_contain_text("window.__xss = 1")  # shown as text, not run

    for _ in range(2):  # live, then rendered from the database after a reload
        messages = page.locator("#message-list")
        assert messages.locator("script, img, [onerror]").count() == 0
        assert messages.locator('a[href^="javascript"]').count() == 0
        assert page.evaluate("window.__xss") is None
        page.reload()
        page.wait_for_load_state("networkidle")
    assert remote == []


CREATE_RUN = """async ([modelId, token]) => {
  const response = await fetch(`/api/models/${modelId}/runs/`, {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRFToken": token},
    body: JSON.stringify({
      status: "completed", starting_capital: "10000.00", ending_equity: "10450.00",
      trades: [{symbol: "AAPL", side: "buy", quantity: "10", price: "150.00",
                realized_pnl: "450.00"}],
    }),
  });
  if (response.status !== 201) throw new Error(await response.text());
  return (await response.json()).id;
}"""


def test_run_conversation_shows_the_run_and_the_tools_used(open_page):
    page = open_page()
    page.sign_up()
    page.open("/models/new/")
    page.fill("#id_name", "Runner")
    page.click(".form-card button[type=submit]")
    model_id = re.search(r"/models/(\d+)/", page.url).group(1)
    token = page.csrf_token()
    run_id = page.evaluate(CREATE_RUN, [model_id, token])

    page.reload()
    expect(page.locator(".trades")).to_contain_text("AAPL")
    page.click("text=Chat about this run")
    page.wait_for_url(page.base + f"/m/{model_id}/runs/{run_id}/chat")
    header = page.locator(".chat-header")
    expect(header).to_contain_text("Completed")
    expect(header).to_contain_text("P&L +$450.00")

    page.send("Which trades did this run make in AAPL?")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    reply = page.locator(".msg-assistant").last
    expect(reply.locator(".msg-body")).to_contain_text("Here is what I found")
    expect(reply.locator(".tools summary")).to_contain_text("get_trades")
    assert page.problems == []


IMPORT_LONG = """async ([token, count]) => {
  const messages = [];
  for (let i = 0; i < count; i++) {
    const content = `line ${String(i).padStart(3, "0")}`;
    messages.push({role: i % 2 ? "assistant" : "user", content});
  }
  const response = await fetch("/api/sessions/import/", {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRFToken": token},
    body: JSON.stringify({format: "parlor.conversation", version: 1,
                          conversation: {title: "Long history"}, messages}),
  });
  if (response.status !== 201) throw new Error(await response.text());
  return (await response.json()).id;
}"""


def test_older_history_loads_on_scroll_up_and_keeps_the_view(open_page):
    page = open_page()
    page.sign_up()
    token = page.csrf_token()
    session_id = page.evaluate(IMPORT_LONG, [token, 120])
    page.open(f"/c/{session_id}")
    messages = page.locator("#message-list .msg")
    expect(messages).to_have_count(50)
    expect(messages.last).to_contain_text("line 119")

    for expected in (100, 120):
        oldest = messages.first
        oldest_id = oldest.get_attribute("id")
        page.evaluate("document.getElementById('messages').scrollTop = 0")
        expect(messages).to_have_count(expected)
        # The message that was at the top is still in view: the page did not jump.
        box = page.locator(f"#{oldest_id}").bounding_box()
        view = page.locator("#messages").bounding_box()
        assert view["y"] - 5 <= box["y"] <= view["y"] + view["height"], (box, view)
    expect(messages.first).to_contain_text("line 000")
    assert page.problems == []


def test_sidebar_loads_more_conversations_on_scroll(open_page):
    page = open_page(height=600)
    page.sign_up()
    page.import_conversations(35)
    page.open("/new")
    items = page.locator('[data-group="general"] .session-item')
    expect(items).to_have_count(30)
    page.locator(".more-loader").scroll_into_view_if_needed()
    expect(items).to_have_count(35)
    expect(page.locator(".more-loader")).to_have_count(0)


def test_a_failed_reply_shows_its_reason_and_can_be_retried(open_page):
    page = open_page()
    page.sign_up()
    page.send("This will break [dev:fault=die]")
    error = page.locator(".msg-assistant .msg-error")
    expect(error).to_have_count(1)
    expect(error.get_by_role("button", name="Retry")).to_be_visible()
    page.wait_idle()

    error.get_by_role("button", name="Retry").click()
    expect(page.locator(".msg-user")).to_have_count(2)
    expect(page.locator(".msg-user").last).to_contain_text("This will break")
    expect(page.locator(".msg-assistant .msg-error")).to_have_count(2)

    page.reload()
    expect(page.locator(".msg-assistant[data-status=error] [data-retry]")).to_have_count(2)
