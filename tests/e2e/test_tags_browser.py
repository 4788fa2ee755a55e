"""Tags in the sidebar (SPEC 4.6) in real Chromium: added and removed from a conversation's
menu, shown on its item, the list filtered by one and the filter cleared, by mouse and by
keyboard; another user's tags never shown; no serious or critical axe violation, light
and dark; 16 px fields on a phone."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_accessibility import check

pytestmark = pytest.mark.e2e

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def snap(page, name: str) -> None:
    """Screenshot the page into test-artifacts/ (with the caret as it is: hiding it leaves
    an empty style attribute on the fields, which htmx copies across a swap, and the CSP
    refuses)."""
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), caret="initial")


def converse(page, text: str) -> str:
    """Start a conversation from a new chat; return its id once its reply has ended."""
    page.open("/new")
    page.send(f"{text} [dev:tokens=8]")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    session_id = re.search(UUID, page.url).group(0)
    expect(page.locator(f"#s-{session_id}")).to_be_attached()
    page.settled()
    return session_id


def item(page, session_id):
    return page.locator(f"#s-{session_id}")


def open_tags_form(page, session_id):
    page.settled()
    page.locator(f"#s-{session_id} .item-menu summary").click()
    item(page, session_id).get_by_role("button", name="Edit tags").click()
    field = item(page, session_id).get_by_label("Add tags")
    expect(field).to_be_focused()
    return field


def expect_tags(page, session_id, names: list[str]) -> None:
    expect(item(page, session_id).locator(".session-tags .tag")).to_have_text(names)


def listed(page) -> set[str]:
    ids = page.locator("#session-groups .session-item").evaluate_all(
        "(items) => items.map((li) => li.dataset.sessionId)"
    )
    return set(ids)


def test_tags_are_added_removed_shown_and_filter_the_list(open_page):
    page = open_page()
    page.sign_up()
    trip = converse(page, "Plan a trip to Lisbon")
    garden = converse(page, "Which roses for a shady garden")
    # No tags yet: no filter to offer.
    expect(page.locator("#tag-filter")).to_have_count(0)

    # Added from the conversation's menu: several at once, read as stored (lowercased).
    field = open_tags_form(page, trip)
    field.fill("Travel, ideas")
    field.press("Enter")
    expect(item(page, trip).locator(".tags-form")).to_have_count(0)
    expect_tags(page, trip, ["ideas", "travel"])
    # The focus is back where it started: the item's Actions button.
    expect(item(page, trip).locator(".item-menu summary")).to_be_focused()
    # The item's link says them to a screen reader.
    expect(item(page, trip).locator(".session-link")).to_contain_text("Tags: ideas, travel")

    field = open_tags_form(page, garden)
    field.fill("ideas")
    item(page, garden).get_by_role("button", name="Save").click()
    expect_tags(page, garden, ["ideas"])
    snap(page, "tags-on-items")

    # Filtered by a tag: the filter lists the user's tags with their counts.
    page.reload()  # the filter is built with the list
    options = page.locator("#tag-filter option").all_text_contents()
    assert options == ["All conversations", "ideas (2)", "travel (1)"]
    page.focus("#tag-filter")
    page.select_option("#tag-filter", "travel")
    expect(page.locator("#tag-filter-clear")).to_be_visible()
    assert listed(page) == {trip}
    expect(page.locator("#tag-filter")).to_be_focused()  # the list swapped, the focus kept
    # The filter follows a conversation opened from the list.
    item(page, trip).locator(".session-link").click()
    page.wait_for_url(re.compile(rf"/c/{trip}\?tag=travel$"))
    expect(page.locator("#tag-filter")).to_have_value("travel")
    assert listed(page) == {trip}
    snap(page, "tags-filtered")
    # And a clear way back: the Clear button, the focus going to the filter.
    page.click("#tag-filter-clear")
    expect(page.locator("#tag-filter-clear")).to_have_count(0)
    assert listed(page) == {trip, garden}
    expect(page.locator("#tag-filter")).to_be_focused()
    expect(page.locator("#tag-filter")).to_have_value("")

    # Removed from the menu: the chip goes at once, Save stores the list.
    open_tags_form(page, trip)
    form = item(page, trip).locator(".tags-form")
    form.get_by_role("button", name="Remove the tag ideas").click()
    expect(form.locator(".tag-chip")).to_have_count(1)
    expect(form.get_by_role("button", name="Remove the tag travel")).to_be_focused()
    form.get_by_role("button", name="Save").click()
    expect(item(page, trip).locator(".tags-form")).to_have_count(0)
    expect_tags(page, trip, ["travel"])

    # Refused input is said in the form, with the text kept, and changes nothing.
    field = open_tags_form(page, trip)
    field.fill("x" * 41)
    field.press("Enter")
    error = item(page, trip).get_by_role("alert")
    expect(error).to_have_text("A tag is longer than 40 characters.")
    expect(item(page, trip).get_by_label("Add tags")).to_have_value("x" * 41)
    expect(item(page, trip).get_by_label("Add tags")).to_be_focused()
    # Escape cancels: the item back as it was, the focus on its Actions button.
    page.keyboard.press("Escape")
    expect(item(page, trip).locator(".tags-form")).to_have_count(0)
    expect_tags(page, trip, ["travel"])
    expect(item(page, trip).locator(".item-menu summary")).to_be_focused()

    # Filtered while a search is typed: the search keeps to the tag.
    page.select_option("#tag-filter", "ideas")
    expect(page.locator("#tag-filter-clear")).to_be_visible()
    page.fill("#search-input", "deterministic")
    results = page.locator("#search-results")
    expect(results).to_contain_text("tagged “ideas”")
    expect(results.locator(".search-hit")).to_have_count(1)
    expect(results.locator(".search-hit .tag")).to_have_text(["ideas"])
    assert page.problems == []


def test_tags_by_keyboard_alone(open_page):
    page = open_page()
    page.sign_up()
    session_id = converse(page, "Keyboard only please")
    menu = item(page, session_id).locator(".item-menu summary")
    menu.focus()
    page.keyboard.press("Enter")  # opens the menu
    edit = item(page, session_id).get_by_role("button", name="Edit tags")
    expect(edit).to_be_visible()
    page.settled()
    edit.focus()
    page.keyboard.press("Enter")
    field = item(page, session_id).get_by_label("Add tags")
    expect(field).to_be_focused()
    page.keyboard.type("alpha, beta")
    page.keyboard.press("Enter")
    expect(menu).to_be_focused()
    expect_tags(page, session_id, ["alpha", "beta"])

    page.keyboard.press("Enter")
    edit.focus()
    page.keyboard.press("Enter")
    expect(field).to_be_focused()
    page.keyboard.press("Tab")  # the first tag's remove button
    expect(page.locator(":focus")).to_have_attribute("aria-label", "Remove the tag alpha")
    page.keyboard.press("Enter")
    expect(page.locator(":focus")).to_have_attribute("aria-label", "Remove the tag beta")
    expect(item(page, session_id).locator("[data-tags-status]")).to_have_text(
        "Removed “alpha”. Save to keep the change."
    )
    item(page, session_id).get_by_role("button", name="Save").focus()
    page.keyboard.press("Enter")
    expect(menu).to_be_focused()
    expect_tags(page, session_id, ["beta"])
    assert page.problems == []


def test_another_users_tags_are_never_shown(open_page):
    mine = open_page()
    mine.sign_up()
    own = converse(mine, "My own conversation")
    field = open_tags_form(mine, own)
    field.fill("mine")
    field.press("Enter")
    expect(item(mine, own).locator(".tag")).to_have_text(["mine"])

    theirs = open_page()  # another browser, another person
    theirs.sign_up()
    other = converse(theirs, "Their conversation")
    field = open_tags_form(theirs, other)
    field.fill("secret plans")
    field.press("Enter")
    expect(item(theirs, other).locator(".tag")).to_have_text(["secret plans"])

    mine.reload()
    expect(mine.locator("#tag-filter option")).to_have_text(["All conversations", "mine (1)"])
    expect(mine.locator("#sidebar")).not_to_contain_text("secret plans")
    # Asked for by name: nothing of theirs, and their conversation stays theirs.
    mine.open(f"/c/{own}?tag=secret%20plans")
    expect(mine.locator("#session-groups")).to_contain_text(
        "No conversation is tagged “secret plans”."
    )
    assert listed(mine) == set()
    assert mine.open(f"/c/{other}").status == 404
    status = mine.evaluate(f"async () => (await fetch('/c/{other}/tags')).status")
    assert status == 404
    assert mine.problems == [] or all("404" in p for p in mine.problems)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_sidebar_with_tags_has_no_serious_axe_violation(open_page, scheme):
    page = open_page(color_scheme=scheme)
    page.sign_up()
    first = converse(page, "A tagged conversation")
    second = converse(page, "Another tagged one")
    for session_id, tags in [(first, "work, ideas"), (second, "work")]:
        field = open_tags_form(page, session_id)
        field.fill(tags)
        field.press("Enter")
        expect(item(page, session_id).locator(".tags-form")).to_have_count(0)
    page.reload()
    problems = check(page, "sidebar with tags", "#sidebar")
    page.select_option("#tag-filter", "work")
    expect(page.locator("#tag-filter-clear")).to_be_visible()
    # The current item (its darker background) with its tags, and another one hovered.
    page.hover(f"#s-{first} .session-link")
    problems += check(page, "sidebar filtered by a tag", "#sidebar")
    snap(page, f"tags-sidebar-{scheme}")
    field = open_tags_form(page, first)
    field.fill("y" * 41)
    field.press("Enter")
    expect(item(page, first).get_by_role("alert")).to_be_visible()
    problems += check(page, "tags form with its error", "#sidebar")
    snap(page, f"tags-form-{scheme}")
    assert problems == [], "\n".join(problems)


def test_the_tags_fields_are_16px_on_a_phone(open_page):
    page = open_page(width=390, height=844)
    page.sign_up()
    session_id = converse(page, "On a phone")
    page.click("[data-drawer-open]")
    field = open_tags_form(page, session_id)
    assert field.evaluate("(el) => getComputedStyle(el).fontSize") == "16px"
    field.fill("phone")
    field.press("Enter")
    expect(item(page, session_id).locator(".tag")).to_have_text(["phone"])
    page.reload()
    page.click("[data-drawer-open]")
    select = page.locator("#tag-filter")
    assert select.evaluate("(el) => getComputedStyle(el).fontSize") == "16px"
    page.select_option("#tag-filter", "phone")
    expect(page.locator("#tag-filter-clear")).to_be_visible()
    snap(page, "tags-phone-drawer")
