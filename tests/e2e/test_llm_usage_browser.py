"""The LLM picker of the chat header and the usage chart of the settings page (SPEC 4.6)
in real Chromium, against the development LLM (which lists parlor-dev, parlor-dev-mini
and parlor-dev-large): a new chat's choice goes with its first message and answers it;
a stored conversation's is saved at once; after a few replies the settings page draws
them as bars, with the same numbers in a table."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.test_accessibility import check

pytestmark = pytest.mark.e2e

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
READ_MESSAGES = """async (session) => {
  const response = await fetch(`/api/sessions/${session}/messages/`);
  return (await response.json()).results
    .filter((m) => m.role === "assistant")
    .map((m) => [m.llm, m.prompt_tokens, m.completion_tokens]);
}"""
READ_SESSION = (
    """async (session) => (await (await fetch(`/api/sessions/${session}/`)).json()).llm"""
)
READ_USAGE = """async () => (await (await fetch("/api/usage/?days=1")).json()).days"""


def session_id(page) -> str:
    return re.search(UUID, page.url).group(0)


def test_a_new_chat_is_answered_by_the_llm_picked_in_the_header(open_page):
    page = open_page()
    page.sign_up()
    picker = page.get_by_label("LLM that answers")
    expect(picker).to_have_value("parlor-dev")
    options = picker.locator("option").all_inner_texts()
    assert options == ["parlor-dev", "parlor-dev-large", "parlor-dev-mini"]

    picker.select_option("parlor-dev-mini")
    page.send("Which LLM are you? [dev:tokens=12]")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    session = session_id(page)
    assert page.evaluate(READ_MESSAGES, session)[0][0] == "parlor-dev-mini"
    assert page.evaluate(READ_SESSION, session) == "parlor-dev-mini"

    # After a reload the header shows the conversation's LLM.
    page.reload()
    expect(page.get_by_label("LLM that answers")).to_have_value("parlor-dev-mini")
    page.screenshot_to("llm-picker")

    # On a stored conversation a change is saved at once, and answers the next reply.
    with page.expect_response(re.compile(rf"/c/{session}/llm$")) as saved:
        page.get_by_label("LLM that answers").select_option("parlor-dev-large")
    assert saved.value.status == 204
    assert page.evaluate(READ_SESSION, session) == "parlor-dev-large"
    page.send("And now? [dev:tokens=8]")
    page.wait_idle()
    expect(page.locator(".msg-assistant")).to_have_count(2)
    assert [row[0] for row in page.evaluate(READ_MESSAGES, session)] == [
        "parlor-dev-mini",
        "parlor-dev-large",
    ]
    assert not page.problems, page.problems


def test_the_picker_works_on_a_conversation_started_on_the_same_page(open_page):
    """The first message gives the conversation its address: the picker saves from then on,
    without a reload. On a phone-width screen, the header still holds it."""
    page = open_page(width=390, height=800)
    page.sign_up()
    page.send("Hello [dev:tokens=5]")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    session = session_id(page)
    picker = page.get_by_label("LLM that answers")
    picker.focus()
    # A keyboard user: the arrow key picks the next LLM, which is saved at once, and the
    # picker keeps the focus (nothing is swapped in).
    with page.expect_response(re.compile(rf"/c/{session}/llm$")) as saved:
        page.keyboard.press("ArrowDown")
    assert saved.value.status == 204
    expect(picker).to_have_value("parlor-dev-large")
    assert page.evaluate(READ_SESSION, session) == "parlor-dev-large"
    assert page.evaluate("document.activeElement.id") == "llm-select"
    box = picker.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    page.screenshot_to("llm-picker-phone")
    assert not page.problems, page.problems


def test_the_settings_page_charts_the_usage_of_a_few_replies(open_page):
    page = open_page()
    page.sign_up()
    page.get_by_label("LLM that answers").select_option("parlor-dev-mini")
    page.send("First [dev:tokens=20]")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    page.send("Second [dev:tokens=10]")
    page.wait_idle()
    page.open("/new")
    page.send("Third, with the default [dev:tokens=7]")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    days = page.evaluate(READ_USAGE)
    by_llm = {row["llm"]: row["prompt_tokens"] + row["completion_tokens"] for row in days}
    assert set(by_llm) == {"parlor-dev", "parlor-dev-mini"}

    page.open("/settings/#usage")
    usage = page.locator("#usage")
    chart = usage.get_by_role("img", name="Tokens per day, last 30 days")
    expect(chart).to_be_visible()
    bars = chart.locator("rect.usage-bar")
    expect(bars).to_have_count(2)  # today's bar: one part per LLM
    heights = [float(bar.get_attribute("height")) for bar in bars.all()]
    assert all(height > 0 for height in heights)
    assert heights[0] / heights[1] == pytest.approx(
        by_llm["parlor-dev"] / by_llm["parlor-dev-mini"], rel=0.02
    )
    table = usage.get_by_role("table")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table).to_contain_text("parlor-dev-mini")
    expect(table.locator("tfoot")).to_contain_text(f"{sum(by_llm.values()):,}")
    page.screenshot_to("usage-chart")
    assert check(page, "usage", "#usage") == []
    page.emulate_media(color_scheme="dark")
    page.screenshot_to("usage-chart-dark")
    assert check(page, "usage (dark)", "#usage") == []
    assert not page.problems, page.problems


def test_a_spent_daily_quota_keeps_the_message_in_the_composer(open_page, restartable_server):
    server = restartable_server(QUOTA_TOKENS_PER_DAY=1)
    page = open_page(base=server.url)
    page.sign_up()
    page.send("First [dev:tokens=5]")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    page.send("Second, after the budget is spent")
    problem = page.locator("#composer-error")
    expect(problem).to_contain_text("Your daily budget of 1 tokens is used up")
    expect(problem).to_contain_text("00:00 UTC")
    expect(page.locator("#composer-input")).to_have_value("Second, after the budget is spent")
    expect(page.locator(".msg-user")).to_have_count(1)
    page.screenshot_to("quota-refused")

    page.open("/settings/#usage")
    expect(page.locator("#usage")).to_contain_text("until then, sending is paused")
    assert not page.problems, page.problems
