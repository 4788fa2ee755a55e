"""The settings page (SPEC 4.6) in real Chromium: a theme chosen there wins over the
system's (a chat screenshotted in each theme), custom instructions the next reply is
sent, an API token created, used and revoked, no serious or critical axe violation in
either theme."""

import json
import re
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_accessibility import check

pytestmark = pytest.mark.e2e

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
BACKGROUND = {"light": "rgb(255, 255, 255)", "dark": "rgb(33, 33, 33)"}
THEME_LABELS = {"system": "Follow the system", "light": "Light", "dark": "Dark"}
CHAT = "Show me **bold**, `code` and a list\n\n- one\n- two [dev:tokens=40]"


def choose_theme(page, theme: str) -> None:
    page.open("/settings/")
    page.get_by_label(THEME_LABELS[theme], exact=True).check()
    page.get_by_role("button", name="Save theme").click()
    page.wait_for_url(re.compile(r"/settings/#appearance$"))
    expect(page.locator("html")).to_have_attribute("data-theme", theme)
    expect(page.get_by_role("status")).to_contain_text("Your theme was saved.")


def shown_theme(page) -> str:
    """Return the theme the page is painted in, by its background and form controls."""
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    scheme = page.evaluate("getComputedStyle(document.documentElement).colorScheme")
    (theme,) = [name for name, colour in BACKGROUND.items() if colour == background]
    assert scheme in (theme, "light dark"), scheme
    return theme


def save_instructions(page, *, about: str, style: str) -> None:
    page.open("/settings/")
    page.get_by_label("What should the assistant know about you?").fill(about)
    page.get_by_label("How would you like it to answer?").fill(style)
    page.get_by_role("button", name="Save instructions").click()
    page.wait_for_url(re.compile(r"/settings/#instructions$"))
    expect(page.get_by_role("status")).to_contain_text("custom instructions were saved")


def reply_to(page, text: str):
    """Send ``text`` in a new chat; return its reply once it has ended."""
    page.open("/new")
    page.send(text)
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    return page.locator(".msg-assistant .msg-body").last


def test_the_chosen_theme_wins_over_the_systems(open_page):
    # The system says light: dark chosen in the settings is dark everywhere.
    page = open_page(color_scheme="light")
    page.sign_up()
    assert shown_theme(page) == "light"
    choose_theme(page, "dark")
    assert shown_theme(page) == "dark"
    expect(reply_to(page, CHAT)).not_to_be_empty()
    assert shown_theme(page) == "dark"
    assert page.evaluate("matchMedia('(prefers-color-scheme: light)').matches")
    page.screenshot_to("theme-dark-chat")
    page.open("/models/")
    assert shown_theme(page) == "dark"

    # The system says dark: light chosen is light.
    page.emulate_media(color_scheme="dark")
    choose_theme(page, "light")
    assert shown_theme(page) == "light"
    expect(reply_to(page, CHAT)).not_to_be_empty()
    assert shown_theme(page) == "light"
    page.screenshot_to("theme-light-chat")

    # Following the system again: dark while the system is dark, light when it turns.
    choose_theme(page, "system")
    assert shown_theme(page) == "dark"
    page.emulate_media(color_scheme="light")
    assert shown_theme(page) == "light"
    assert page.problems == []


def test_custom_instructions_reach_the_reply(open_page):
    page = open_page()
    page.sign_up()
    page.open("/settings/")
    about = page.get_by_label("What should the assistant know about you?")
    about.fill("I grow tomatoes on a balcony in Oslo.")
    expect(page.locator("#id_about_me_count")).to_have_text("37 / 1500")
    save_instructions(page, about="I grow tomatoes on a balcony in Oslo.", style="Be a pirate.")
    expect(about).to_have_value("I grow tomatoes on a balcony in Oslo.")

    reply = reply_to(page, "What do you know about me? [dev:echo=context]")
    expect(reply).to_contain_text("I grow tomatoes on a balcony in Oslo.")
    expect(reply).to_contain_text("Be a pirate.")

    # Changed: the next reply is sent the new instructions, not the old.
    save_instructions(page, about="I keep bees.", style="")
    reply = reply_to(page, "And now? [dev:echo=context]")
    expect(reply).to_contain_text("I keep bees.")
    expect(reply).not_to_contain_text("tomatoes")
    expect(reply).not_to_contain_text("pirate")
    assert page.problems == []


def call_api(base: str, path: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_an_api_token_is_created_shown_once_used_and_revoked(browser, open_page):
    context = browser.new_context(
        viewport={"width": 1280, "height": 800},
        permissions=["clipboard-read", "clipboard-write"],
    )
    try:
        page = open_page(context=context)
        username = page.sign_up()
        page.open("/settings/")
        expect(page.locator("#tokens")).to_contain_text("No API tokens.")
        page.get_by_label("Name", exact=True).fill("backup script")
        page.get_by_role("button", name="Create token").click()
        shown = page.locator("#new-token-value")
        expect(shown).to_be_visible()
        token = shown.input_value()
        assert len(token) >= 40
        expect(page.locator("#tokens")).to_contain_text("It is shown this once")
        page.locator("#tokens").screenshot(path=str(ARTIFACTS / "settings-new-token.png"))
        page.get_by_role("button", name="Copy").click()
        expect(page.get_by_role("button", name="Copied")).to_be_visible()
        assert page.evaluate("navigator.clipboard.readText()") == token

        status, body = call_api(page.base, "/api/me/", token)
        assert status == 200 and body["username"] == username

        # Shown once: the page again lists it by name, used, without its value.
        page.open("/settings/")
        expect(page.locator("#new-token-value")).to_have_count(0)
        assert token not in page.content()
        row = page.locator("#tokens tbody tr", has_text="backup script")
        expect(row).to_have_count(1)
        expect(row.locator("td").nth(2)).not_to_have_text("never")

        row.locator("summary", has_text="Revoke").click()
        row.get_by_role("button", name="Revoke now").click()
        page.wait_for_url(re.compile(r"/settings/#tokens$"))
        expect(page.get_by_role("status")).to_contain_text("The token was revoked")
        expect(page.locator("#tokens tbody tr")).to_have_count(0)
        status, body = call_api(page.base, "/api/me/", token)
        assert status == 401 and body["error"]["code"] == "authentication_failed"
        assert page.problems == []
    finally:
        context.close()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_no_serious_or_critical_axe_violations_on_the_settings_page(open_page, theme):
    other = "dark" if theme == "light" else "light"
    page = open_page(color_scheme=other)
    page.sign_up()
    choose_theme(page, theme)
    assert shown_theme(page) == theme
    problems = check(page, f"settings, {theme}")

    # With a new token shown and listed, and a form's error.
    page.get_by_label("Name", exact=True).fill("axe")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token-value")).to_be_visible()
    page.locator("#tokens summary", has_text="Revoke").click()
    problems += check(page, f"settings with a new token, {theme}")
    page.locator("#data summary").click()
    page.get_by_label(re.compile("to confirm")).fill("no")
    page.get_by_role("button", name="Delete all conversations").click()
    expect(page.locator("#data .field-error")).to_be_visible()
    problems += check(page, f"settings with an error, {theme}")
    page.screenshot(path=str(ARTIFACTS / f"settings-{theme}.png"), full_page=True)
    assert problems == [], "\n".join(problems)
    # The refused form is answered 400, which the console reports; nothing else.
    assert [problem for problem in page.problems if "status of 400" not in problem] == []
