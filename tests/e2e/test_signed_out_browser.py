"""An expired sign-in in real Chromium: the page says "You are signed out" the same way
whoever finds out first (an htmx request answered 401, the socket refused on reconnecting),
links to the sign-in page with ``next`` back to the conversation, stops reconnecting, and
keeps what is typed in the composer, which is there again after signing in."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_accessibility import check

pytestmark = pytest.mark.e2e

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
PASSWORD = "a-Strong-pass-4-tests"  # tests/e2e/conftest.py: Page.sign_up
TYPED = "Half a thought I have not sent yet"
# What a browser logs by itself about refused requests and sockets: not the page's errors.
NETWORK_NOISE = ("Failed to load resource", "WebSocket connection")


def snap(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), caret="initial")


def page_errors(page) -> list[str]:
    return [p for p in page.problems if not p.startswith(NETWORK_NOISE)]


def start_conversation(page) -> str:
    page.send("Hello there [dev:tokens=8]")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    session_id = re.search(UUID, page.url).group(0)
    expect(page.locator(f"#s-{session_id}")).to_be_attached()
    return session_id


def type_unsent(page) -> None:
    page.locator("#composer-input").fill(TYPED)
    # Kept as a draft (after a short pause in typing), as the person would have paused.
    page.wait_for_function(
        "(text) => Object.keys(localStorage).some("
        "(key) => key.startsWith('parlor:draft:') && localStorage[key].includes(text))",
        arg=TYPED,
    )


def sign_out_in_another_tab(page, open_page) -> None:
    other = open_page(context=page.context, base=page.base)
    other.open("/new")
    other.get_by_role("button", name="Sign out").click()
    other.wait_for_url(re.compile(r"/accounts/login/"))
    other.close()


def notice(page):
    return page.locator("#signed-out").get_by_role("link", name="Sign in again")


def test_an_htmx_action_after_signing_out_elsewhere_shows_the_notice_and_keeps_the_text(
    open_page,
):
    page = open_page()
    username = page.sign_up()
    session_id = start_conversation(page)
    type_unsent(page)
    sign_out_in_another_tab(page, open_page)

    # An action in the sidebar: pinning the conversation.
    page.locator(f"#s-{session_id} .item-menu summary").click()
    page.locator(f"#s-{session_id}").get_by_role("button", name="Pin").click()
    alert = page.get_by_role("alert").filter(has_text="You are signed out.")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("What you typed is kept.")
    link = notice(page)
    expect(link).to_have_attribute("href", f"/accounts/login/?next=%2Fc%2F{session_id}")
    expect(link).to_be_focused()  # the action failed: the way on is where the focus is
    expect(page.locator(f"#s-{session_id}")).not_to_have_class(re.compile("pinned"))
    expect(page.locator("#composer-input")).to_have_value(TYPED)
    assert check(page, "signed out (light)") == []
    snap(page, "signed-out-htmx")

    # Sending is refused in place, the text kept; nothing goes out.
    page.locator("#composer-input").press("Enter")
    expect(page.locator("#composer-error")).to_contain_text("You are signed out")
    expect(page.locator("#composer-input")).to_have_value(TYPED)
    expect(page.locator(".msg-user")).to_have_count(1)
    # The sidebar's own requests say it the same way: 401 and the event, not a sign-in
    # form swapped into the list.
    page.fill("#search-input", "hello")
    page.wait_for_timeout(500)
    expect(page.locator("#sidebar form[action='/accounts/login/']")).to_have_count(0)
    # SSE says it too, in the API's shape.
    answer = page.evaluate(
        """async () => {
          const response = await fetch('/api/chat/stream', {method: 'POST',
            headers: {'Content-Type': 'application/json'}, body: '{"message": "hi"}'});
          return [response.status, await response.json()];
        }"""
    )
    assert answer[0] == 401 and answer[1]["error"]["code"] == "not_authenticated"

    # Signing in again brings the person back to the conversation, the text still there.
    link.click()
    page.wait_for_url(re.compile(r"/accounts/login/\?next="))
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(rf"/c/{session_id}$"))
    expect(page.locator("#composer-input")).to_have_value(TYPED)
    expect(page.locator("#signed-out")).to_be_empty()
    assert page_errors(page) == []


def test_the_socket_refused_after_a_restart_shows_the_notice_and_stops_reconnecting(
    open_page, restartable_server
):
    server = restartable_server()
    page = open_page(base=server.url, color_scheme="dark")
    page.sign_up()
    session_id = start_conversation(page)
    type_unsent(page)
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws.url))

    # Signed out elsewhere; the page's socket, still open, knows nothing of it until it
    # has to connect again: a deploy restarts the server.
    sign_out_in_another_tab(page, open_page)
    server.stop()
    expect(page.get_by_role("status").filter(has_text="Reconnecting")).to_be_visible()
    server.start()

    alert = page.get_by_role("alert").filter(has_text="You are signed out.")
    expect(alert).to_be_visible(timeout=15_000)
    expect(notice(page)).to_have_attribute("href", f"/accounts/login/?next=%2Fc%2F{session_id}")
    # One notice: the connection's "Reconnecting…" gave way to it.
    expect(page.locator("#connection")).to_be_empty()
    expect(page.locator("#composer-input")).to_have_value(TYPED)
    # The focus was in the composer: it stays there, typing goes on.
    expect(page.locator("#composer-input")).to_be_focused()
    assert check(page, "signed out (dark)") == []
    snap(page, "signed-out-socket-dark")

    # No endless loop: no socket opened after the notice, however long it stays up.
    attempts = len(sockets)
    page.wait_for_timeout(4_000)
    assert len(sockets) == attempts
    page.locator("#composer-input").press("End")
    page.keyboard.type(", and more")
    expect(page.locator("#composer-input")).to_have_value(TYPED + ", and more")
    assert page_errors(page) == []
