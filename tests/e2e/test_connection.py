"""The chat page when its server goes away mid-reply and comes back (issue 11).

A real server process (daphne, the test settings, the shared database) is killed or
stopped while a reply streams to a real Chromium tab, then started again on the same
port: the tab says so within seconds (role="status"), reconnects by itself, and the
reply on screen only ever grows and ends without a reload. A message sent while the
server is down is held, said to be, and sent once it is back.
"""

import re
import signal
import time

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
LONG = "[dev:tokens=500] [dev:token_ms=30]"  # fifteen seconds of reply

# Sample what the streaming reply (the last one now) shows: its text length at every
# change and every 50 ms, with the time, and whether raw ** ever showed.
SAMPLE = """() => {
  window.__samples = [];
  window.__rawBold = false;
  const bubbles = document.querySelectorAll('.msg-assistant');
  const body = bubbles[bubbles.length - 1].querySelector('.msg-body');
  const sample = () => {
    const text = body.textContent;
    window.__samples.push([Date.now(), text.length]);
    if (text.includes('**')) window.__rawBold = true;
  };
  new MutationObserver(sample).observe(document.getElementById('message-list'),
    {subtree: true, childList: true, characterData: true});
  window.__sampler = setInterval(sample, 50);
}"""

NOTICE = "#connection[data-state=offline]"


def network_errors_aside(problems: list[str]) -> list[str]:
    """Return the page's problems but the browser's own words on a server that is down:
    its socket failing, and the page asking whether it is still signed in meanwhile."""
    return [p for p in problems if "WebSocket" not in p and "ERR_CONNECTION_REFUSED" not in p]


def shown_length(page) -> int:
    return page.locator(".msg-assistant .msg-body").last.evaluate(
        "(body) => body.textContent.length"
    )


def assert_never_shrank(samples):
    lengths = [length for _, length in samples]
    drops = [(a, b) for a, b in zip(lengths, lengths[1:], strict=False) if b < a]
    assert not drops, f"the shown reply shrank: {drops[:5]}"
    return lengths


def stored_reply(page, session_id) -> dict:
    return page.evaluate(
        """async (id) => {
          const response = await fetch(`/api/sessions/${id}/messages/`);
          const page = await response.json();
          return page.results[page.results.length - 1];
        }""",
        session_id,
    )


def test_a_killed_server_is_noticed_and_the_reply_ends_on_the_page_after_its_restart(
    open_page, restartable_server
):
    server = restartable_server()
    page = open_page(base=server.url)
    page.sign_up()
    page.send(f"Tell me a long story {LONG}")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    session_id = re.search(UUID, page.url).group(0)
    page.evaluate(SAMPLE)
    # Past a progress save (every ~2 s) and well into the reply.
    page.wait_for_function(
        "() => document.querySelector('.msg-assistant .msg-body').textContent.length > 800",
        timeout=15_000,
    )
    expect(page.locator(NOTICE)).to_have_count(0)

    server.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    server.wait(5)
    notice = page.get_by_role("status").filter(has_text="Reconnecting")
    expect(notice).to_be_visible(timeout=5_000)
    noticed_after = time.monotonic() - killed_at
    assert noticed_after < 5
    at_drop = shown_length(page)
    page.screenshot_to("connection-lost-mid-reply")
    # Still down: nothing on screen went away.
    page.wait_for_timeout(1_000)
    assert shown_length(page) >= at_drop

    server.start()  # the same port and database
    restarted_at = time.monotonic()
    # Without a reload: the tab reconnects, catches up, and the reply ends, as the new
    # process settles it (interrupted: its writer died), the text read kept on screen.
    page.wait_for_function(
        "() => document.querySelector('.msg-assistant').dataset.status !== 'streaming'",
        timeout=20_000,
    )
    ended_after = time.monotonic() - restarted_at
    assert ended_after < 20
    expect(page.locator(NOTICE)).to_have_count(0)
    reply = page.locator(".msg-assistant").last
    expect(reply).to_have_attribute("data-status", "error")
    expect(reply.locator(".msg-error")).to_contain_text("interrupted")
    expect(reply.get_by_role("button", name="Retry")).to_be_visible()
    page.evaluate("clearInterval(window.__sampler)")
    lengths = assert_never_shrank(page.evaluate("window.__samples"))
    assert lengths[-1] >= at_drop > 800
    assert page.evaluate("window.__rawBold") is False

    # What the server kept is what was shown, or less (the last second or so before the
    # kill, not yet saved, stays on this page only).
    row = stored_reply(page, session_id)
    assert (row["status"], row["error"]) == ("error", row["error"])
    kept = page.evaluate(
        "(text) => { const t = document.createElement('template');"
        " t.innerHTML = window.ParlorMarkdown.html(text); return t.content.textContent.length; }",
        row["content"],
    )
    assert 0 < kept <= lengths[-1]
    page.screenshot_to("connection-back-reply-interrupted")

    # The page works as before: the next message gets its reply.
    page.send("And now a short one [dev:tokens=20]")
    page.wait_idle(timeout=15_000)
    expect(page.locator(".msg-assistant").last).to_have_attribute("data-status", "complete")
    assert network_errors_aside(page.problems) == []


def test_a_server_stopped_for_a_deploy_ends_the_reply_and_holds_a_message_sent_meanwhile(
    open_page, restartable_server
):
    # uvicorn, as `make serve-prod` runs it: it closes the sockets with 1012 once drained.
    server = restartable_server("uvicorn", SHUTDOWN_GRACE=2)
    page = open_page(base=server.url)
    page.sign_up()
    page.send(f"Write me an essay {LONG}")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.evaluate(SAMPLE)
    page.wait_for_function(
        "() => document.querySelector('.msg-assistant .msg-body').textContent.length > 300"
    )

    # SIGTERM: the reply may go on for the grace, then ends as interrupted (the tab is
    # told on its open socket), then the server closes the sockets and exits.
    server.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    reply = page.locator(".msg-assistant").last
    expect(reply).to_have_attribute("data-status", "error", timeout=10_000)
    expect(reply.locator(".msg-error")).to_contain_text("interrupted")
    server.wait(15)
    notice = page.get_by_role("status").filter(has_text="Reconnecting")
    expect(notice).to_be_visible(timeout=5_000)
    assert time.monotonic() - stopped_at < 2 + 10

    # Written while the server is down: held, and said to be.
    page.send("Are you back? [dev:tokens=30]")
    held = page.locator(".msg-user.pending")
    expect(held).to_have_count(1)
    expect(held).to_contain_text("Not sent yet")
    expect(notice).to_contain_text("will be sent when the connection is back")
    expect(page.locator("#composer-input")).to_have_value("")
    page.screenshot_to("connection-lost-message-held")

    server.start()
    restarted_at = time.monotonic()
    # Sent by itself once the socket is back, and answered.
    expect(page.locator(".msg-user.pending")).to_have_count(0, timeout=20_000)
    page.wait_idle(timeout=20_000)
    assert time.monotonic() - restarted_at < 20
    last = page.locator(".msg-assistant").last
    expect(last).to_have_attribute("data-status", "complete")
    expect(page.locator(NOTICE)).to_have_count(0)
    page.evaluate("clearInterval(window.__sampler)")
    lengths = assert_never_shrank(page.evaluate("window.__samples"))
    assert lengths[-1] > 300
    # Stored once: after a reload, two questions and two replies.
    page.reload()
    expect(page.locator(".msg-user")).to_have_count(2)
    expect(page.locator(".msg-assistant")).to_have_count(2)
    expect(page.locator(".msg-user").last).to_contain_text("Are you back?")
    assert network_errors_aside(page.problems) == []
