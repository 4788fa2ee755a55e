"""axe-core (axe-playwright-python, which bundles it) on Parlor's pages, light and dark.

No serious or critical violation on the chat page (a conversation with a finished, a
stopped and a failed reply, the composer's error), the sidebar (also as the phone drawer,
and the archive), the shortcuts dialog, the models pages, the account pages. There is no
settings page yet: the password page is the account page there is. Contrast is one of
axe's serious rules (4.5:1 for text), so every text counts in both themes.
"""

import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
BLOCKING = {"serious", "critical"}

axe = Axe()


def violations(page, context=None) -> list[str]:
    """Return the serious and critical violations on the page (or in ``context``)."""
    results = axe.run(page.page, context=context)
    found = []
    for violation in results.response["violations"]:
        if violation["impact"] not in BLOCKING:
            continue
        for node in violation["nodes"][:5]:
            found.append(
                f"{violation['id']} ({violation['impact']}): {node['target']} "
                f"{node.get('failureSummary', '')[:300]}"
            )
    return found


def check(page, name: str, context=None) -> list[str]:
    return [f"{name}: {problem}" for problem in violations(page, context)]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_or_critical_axe_violations(open_page, scheme):
    page = open_page(color_scheme=scheme)
    assert page.evaluate(f"matchMedia('(prefers-color-scheme: {scheme})').matches")
    problems = []
    page.open("/accounts/signup/")
    problems += check(page, "sign-up")
    page.sign_up()
    problems += check(page, "new chat")

    # A conversation with every kind of message: complete (Markdown, code), stopped,
    # failed (with Retry), and the composer saying why a message was refused.
    page.send("Show me **bold**, `code` and a list\n\n- one\n- two [dev:tokens=80]")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    page.send("Go on at length [dev:tokens=300] [dev:token_ms=25]")
    expect(page.locator(".msg-assistant.streaming .msg-body")).to_contain_text("deterministic")
    page.click("#stop-btn")
    page.wait_idle()
    page.send("This one fails [dev:fault=die]")
    expect(page.locator(".msg-assistant .msg-error")).to_have_count(1)
    page.wait_idle()
    page.locator("#composer-input").fill("x" * 32_001)
    page.locator("#composer-input").press("Enter")
    expect(page.locator("#composer-error")).not_to_be_empty()
    page.locator("#messages").evaluate("(el) => { el.scrollTop = 0; }")
    expect(page.locator("#jump-latest")).to_be_visible()
    problems += check(page, "chat")
    problems += check(page, "sidebar", "#sidebar")
    page.screenshot_to(f"axe-chat-{scheme}")

    page.keyboard.press("Escape")
    page.locator("#chat-title").click()
    page.keyboard.press("?")
    expect(page.get_by_role("dialog")).to_be_visible()
    problems += check(page, "shortcuts dialog")
    page.keyboard.press("Escape")

    page.click("text=Archived")
    expect(page.locator(".archived-banner")).to_be_visible()
    problems += check(page, "sidebar, archive", "#sidebar")

    page.open("/models/new/")
    problems += check(page, "model form")
    page.fill("#id_name", " ")  # refused: the form shows its error
    page.click(".form-card button[type=submit]")
    expect(page.locator("#id_name")).to_be_visible()
    problems += check(page, "model form with errors")
    page.fill("#id_name", "Contrast Check")
    page.click(".form-card button[type=submit]")
    expect(page.locator("h1")).to_have_text("Contrast Check")
    problems += check(page, "model detail")
    page.click("text=Chat with this model")
    page.wait_for_url(re.compile(r"/m/\d+/new$"))
    problems += check(page, "model chat")
    page.open("/models/")
    problems += check(page, "models list")
    page.screenshot_to(f"axe-models-{scheme}")
    response = page.open("/accounts/password/")
    assert response.status == 200
    problems += check(page, "password (account settings)")
    page.open("/import/chatgpt")
    problems += check(page, "ChatGPT import")

    page.set_viewport_size({"width": 390, "height": 844})
    page.open("/new")
    page.click("[data-drawer-open]")
    expect(page.locator("#sidebar")).to_be_visible()
    page.wait_for_timeout(300)
    problems += check(page, "phone drawer")
    assert problems == [], "\n".join(problems)


def test_the_composer_is_at_least_16px_on_a_phone(open_page):
    # iOS zooms the page into a field whose font is smaller than 16 px.
    page = open_page(width=390, height=844)
    page.sign_up()
    size = page.locator("#composer-input").evaluate("(el) => getComputedStyle(el).fontSize")
    assert float(size.removesuffix("px")) >= 16, size
    page.screenshot_to("phone-composer")
    page.click("[data-drawer-open]")
    search = page.locator("#search-input").evaluate("(el) => getComputedStyle(el).fontSize")
    assert float(search.removesuffix("px")) >= 16, search
