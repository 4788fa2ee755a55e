"""Temporary chats, share links and folders (SPEC 4.6) in real Chromium: a temporary chat
is in no list nor search and is gone after the cleanup; a share link opens signed out in
another browser (a fresh context: no cookies) and answers 404 once revoked; a
conversation moved into a folder from its menu is there after a reload."""

import re
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ROOT, _server_env
from tests.e2e.test_accessibility import check

pytestmark = pytest.mark.e2e

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def converse(page, text: str, *, temporary: bool = False) -> str:
    """Start a conversation from a new chat; return its id once its reply has ended."""
    page.open("/new")
    if temporary:
        page.get_by_role("switch", name="Temporary chat").check()
    page.send(f"{text} [dev:tokens=8]")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    page.settled()
    return re.search(UUID, page.url).group(0)


def listed(page) -> set[str]:
    ids = page.locator("#session-groups .session-item").evaluate_all(
        "(items) => items.map((li) => li.dataset.sessionId)"
    )
    return set(ids)


def test_a_temporary_chat_is_listed_nowhere_and_gone_after_the_cleanup(
    open_page, e2e_workdir, e2e_llm
):
    page = open_page()
    page.sign_up()
    kept = converse(page, "Kept notes about pelicans")

    page.open("/new")
    banner = page.locator("#temporary-banner")
    expect(banner).to_be_hidden()
    page.get_by_role("switch", name="Temporary chat").check()
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("deleted 24 hours after its last message")
    problems = check(page, "new temporary chat")
    page.send("Secret notes about pelicans [dev:tokens=8]")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    page.settled()
    temporary = re.search(UUID, page.url).group(0)
    assert temporary != kept
    # Still said on the page; never in the sidebar, and it cannot be shared.
    expect(banner).to_be_visible()
    expect(page.get_by_role("switch", name="Temporary chat")).to_have_count(0)
    expect(page.locator("[data-share-menu]")).to_have_count(0)
    assert listed(page) == {kept}
    # Not found by the search either.
    page.fill("#search-input", "pelicans")
    expect(page.locator("#search-results .search-hit")).to_have_count(1)
    results = page.locator("#search-results").inner_html()
    assert kept in results and temporary not in results
    # Its own address still opens it, with the banner, and it is not the active one.
    page.reload()
    expect(page.locator("#temporary-banner")).to_be_visible()
    expect(page.locator(".msg-user")).to_contain_text("Secret notes about pelicans")
    assert listed(page) == {kept}
    expect(page.locator(f"#s-{kept} .active-dot")).to_have_count(1)
    problems += check(page, "temporary chat")

    # The cleanup (as the sweep runs it), with its time to live already past.
    env = _server_env(e2e_workdir, e2e_llm.base_url, TEMPORARY_CHAT_TTL=0)
    done = subprocess.run(
        [sys.executable, "manage.py", "cleanup_empty_sessions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "Deleted 1 temporary conversation(s)" in done.stdout
    assert page.open(f"/c/{temporary}").status == 404
    page.open(f"/c/{kept}")
    expect(page.locator(".msg-user")).to_contain_text("Kept notes about pelicans")
    assert listed(page) == {kept}
    assert problems == [], "\n".join(problems)


def test_a_share_link_opens_signed_out_and_404s_once_revoked(open_page):
    owner = open_page()
    username = owner.sign_up()
    session = converse(owner, "Explain **tides** briefly")
    # Straight after the first message (no reload): the Share menu is there.
    menu = owner.locator("[data-share-menu]")
    expect(menu).to_be_visible()
    menu.locator("summary").click()
    owner.get_by_role("button", name="Create link").click()
    field = owner.locator("[data-share-url]")
    expect(field).to_be_visible()
    url = field.input_value()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/s/[A-Za-z0-9_-]{40,}", url), url
    expect(owner.locator(".share-status")).to_contain_text("shown only this once")
    problems = check(owner, "share panel")

    # Another browser, signed out: the conversation, read-only, nothing of its owner.
    stranger = open_page()
    response = stranger.goto(url)
    assert response.status == 200
    assert response.headers["x-robots-tag"] == "noindex, nofollow"
    expect(stranger.locator("h1")).to_contain_text("Explain")
    expect(stranger.locator(".msg-user")).to_contain_text("Explain tides briefly")
    expect(stranger.locator(".msg-assistant .msg-body")).not_to_be_empty()
    expect(stranger.locator('meta[name="robots"]')).to_have_attribute(
        "content", "noindex, nofollow"
    )
    assert username not in stranger.content()
    expect(stranger.locator("#sidebar, #composer")).to_have_count(0)
    problems += check(stranger, "shared page")

    # Revoked from the same panel: the link answers 404 from then on.
    owner.once("dialog", lambda dialog: dialog.accept())
    owner.get_by_role("button", name="Revoke link").click()
    expect(owner.locator(".share-status")).to_contain_text("Link revoked")
    assert stranger.goto(url).status == 404
    # The conversation itself is untouched.
    owner.reload()
    expect(owner.locator(".msg-user")).to_contain_text("Explain tides briefly")
    assert session in owner.url
    assert problems == [], "\n".join(problems)


def test_a_conversation_moved_into_a_folder_is_there_after_a_reload(open_page):
    page = open_page()
    page.sign_up()
    trip = converse(page, "Plan a weekend in Porto")
    garden = converse(page, "Roses for a shady garden")

    page.locator(f"#s-{trip} .item-menu summary").click()
    page.locator(f"#s-{trip}").get_by_role("button", name="Move to folder…").click()
    form = page.locator(f"#s-{trip} .folder-form")
    expect(form.get_by_label("Folder", exact=True)).to_be_focused()
    form.get_by_label("or a new folder").fill("Trips")
    form.get_by_role("button", name="Move").click()
    folder = page.locator(".folder-group", has_text="Trips")
    expect(folder.locator(f"#s-{trip}")).to_be_attached()
    expect(folder.locator("details.folder")).to_have_attribute("open", "")
    general = page.locator('section[data-group="general"]')
    expect(general.locator(f"#s-{garden}")).to_be_attached()
    expect(general.locator(f"#s-{trip}")).to_have_count(0)
    problems = check(page, "sidebar with a folder", "#sidebar")

    page.reload()
    folder = page.locator(".folder-group", has_text="Trips")
    expect(folder.locator(f"#s-{trip}")).to_be_attached()
    # Collapsible: closed and opened by its title.
    details = folder.locator("details.folder")
    details.locator("summary.folder-title").click()
    expect(details).not_to_have_attribute("open", "")
    details.locator("summary.folder-title").click()
    expect(folder.locator(f"#s-{trip}")).to_be_visible()

    # Moved in by choosing the folder, then the folder deleted: both kept, in General.
    page.settled()
    page.locator(f"#s-{garden} .item-menu summary").click()
    page.locator(f"#s-{garden}").get_by_role("button", name="Move to folder…").click()
    page.locator(f"#s-{garden} .folder-form").get_by_label("Folder", exact=True).select_option(
        label="Trips"
    )
    page.locator(f"#s-{garden} .folder-form").get_by_role("button", name="Move").click()
    expect(folder.locator(f"#s-{garden}")).to_be_attached()
    page.settled()
    folder.locator(".folder-menu summary").click()
    page.once("dialog", lambda dialog: dialog.accept())
    folder.get_by_role("button", name="Delete folder").click()
    expect(page.locator(".folder-group")).to_have_count(0)
    general = page.locator('section[data-group="general"]')
    expect(general.locator(f"#s-{trip}")).to_be_attached()
    expect(general.locator(f"#s-{garden}")).to_be_attached()
    assert problems == [], "\n".join(problems)
