"""Message actions in real Chromium (SPEC 4.6): copy a message and a code block, edit a
question in place (Cancel, Escape, Save & submit), regenerate a reply, flip between
versions with the keyboard staying on the switcher, rate a reply, and find the same
branch after a reload; no serious or critical axe violation."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.test_accessibility import check

pytestmark = pytest.mark.e2e

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
CODE_QUESTION = "Show code\n\n```python\nprint('hi')\n```\n\n[dev:echo=context]"


@pytest.fixture
def tab(open_page):
    page = open_page()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.sign_up()
    return page


def clipboard(page) -> str:
    return page.evaluate("navigator.clipboard.readText()")


def bubbles(page):
    return page.locator("#message-list .msg")


def versions(message) -> str:
    return message.locator(".version-label").inner_text()


def test_edit_regenerate_switch_versions_copy_and_reload(tab):
    page = tab
    page.send("first question [dev:tokens=8]")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    page.send(CODE_QUESTION)
    page.wait_idle()
    expect(bubbles(page)).to_have_count(4)

    # Copy a code block of the reply (highlighted by the server) and a whole message.
    reply = bubbles(page).nth(3)
    expect(reply.locator(".msg-body pre code span").first).to_be_attached()
    reply.get_by_role("button", name="Copy code").first.click()
    expect(reply.get_by_role("button", name="Copied")).to_be_visible()
    assert clipboard(page).strip() == "print('hi')"
    first = bubbles(page).nth(0)
    first.get_by_role("button", name="Copy message").click()
    assert clipboard(page) == "first question [dev:tokens=8]"

    # Edit in place: Escape and Cancel change nothing.
    first.get_by_role("button", name="Edit message").click()
    field = first.get_by_label("Edit your message")
    expect(field).to_be_focused()
    expect(field).to_have_value("first question [dev:tokens=8]")
    field.press("Escape")
    expect(field).to_have_count(0)
    expect(first.get_by_role("button", name="Edit message")).to_be_focused()
    first.get_by_role("button", name="Edit message").click()
    first.get_by_role("button", name="Cancel").click()
    expect(first.locator(".msg-body")).to_have_text("first question [dev:tokens=8]")

    # Save & submit: a new version with its reply replaces the branch on the page.
    first.get_by_role("button", name="Edit message").click()
    first.get_by_label("Edit your message").fill("edited question [dev:tokens=12]")
    first.get_by_role("button", name="Save & submit").click()
    page.wait_idle()
    page.settled()
    expect(bubbles(page)).to_have_count(2)
    question = bubbles(page).nth(0)
    expect(question.locator(".msg-body")).to_have_text("edited question [dev:tokens=12]")
    expect(question.locator(".version-label")).to_have_text("2 / 2")

    # Regenerate the reply: a second version of it.
    first_reply_text = bubbles(page).nth(1).locator(".msg-body").inner_text()
    bubbles(page).nth(1).get_by_role("button", name="Regenerate reply").click()
    page.wait_idle()
    page.settled()
    expect(bubbles(page)).to_have_count(2)
    expect(bubbles(page).nth(1).locator(".version-label")).to_have_text("2 / 2")

    # Rate it; the rating is shown pressed.
    bubbles(page).nth(1).get_by_role("button", name="Good reply").click()
    page.settled()
    expect(bubbles(page).nth(1).get_by_role("button", name="Good reply")).to_have_attribute(
        "aria-pressed", "true"
    )

    # Flip the reply back to version 1 with the keyboard: the focus stays on the switcher.
    bubbles(page).nth(1).get_by_role("button", name="Previous version").focus()
    page.keyboard.press("Enter")
    page.settled()
    reply = bubbles(page).nth(1)
    expect(reply.locator(".version-label")).to_have_text("1 / 2")
    expect(reply.locator(".msg-body")).to_have_text(first_reply_text)
    expect(reply.get_by_role("button", name="Next version")).to_be_focused()

    # Back to the first question's branch: the code question and its reply return.
    bubbles(page).nth(0).get_by_role("button", name="Previous version").click()
    page.settled()
    expect(bubbles(page)).to_have_count(4)
    expect(bubbles(page).nth(0).locator(".version-label")).to_have_text("1 / 2")
    expect(bubbles(page).nth(2).locator(".msg-body")).to_contain_text("Show code")

    # A reload shows the same branch, code blocks with their copy buttons.
    page.reload()
    expect(bubbles(page)).to_have_count(4)
    expect(bubbles(page).nth(0).locator(".msg-body")).to_have_text("first question [dev:tokens=8]")
    expect(bubbles(page).nth(0).locator(".version-label")).to_have_text("1 / 2")
    expect(bubbles(page).nth(3).get_by_role("button", name="Copy code")).to_have_count(1)
    problems = check(page, "message actions")
    assert problems == [], problems
    assert page.problems == []
