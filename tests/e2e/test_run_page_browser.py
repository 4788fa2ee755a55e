"""A run's page in Chromium: "New conversation about this run" starts a new conversation
each time, the page lists them, and it has no serious or critical axe violation; the
model form refuses a negative buying power with the service's message."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.test_accessibility import check

pytestmark = pytest.mark.e2e

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

CREATE_RUN = """async ([modelId, token]) => {
  const response = await fetch(`/api/models/${modelId}/runs/`, {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRFToken": token},
    body: JSON.stringify({
      status: "completed", starting_capital: "10000.00", ending_equity: "10450.00",
      started_at: "2026-01-05T14:30:00Z", ended_at: "2026-01-05T16:00:00Z",
      trades: [{symbol: "AAPL", side: "buy", quantity: "10", price: "150.00",
                executed_at: "2026-01-05T14:35:00Z", realized_pnl: "450.00"}],
    }),
  });
  if (response.status !== 201) throw new Error(await response.text());
  return (await response.json()).id;
}"""


def new_conversation_from_the_run_page(page, run_page: str) -> str:
    page.open(run_page)
    page.click("text=New conversation about this run")
    page.wait_for_url(re.compile(r"/m/\d+/runs/\d+/new$"))
    expect(page.locator(".chat-header")).to_contain_text("Run #")
    page.send("How did this run go?")
    page.wait_for_url(re.compile(rf"/c/{UUID}$"))
    page.wait_idle()
    return page.url.rsplit("/", 1)[1]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_run_page_starts_new_conversations_and_lists_them(open_page, scheme):
    page = open_page(color_scheme=scheme)
    page.sign_up()
    page.open("/models/new/")
    page.fill("#id_name", "Runner")
    page.fill("#id_buying_power", "-5")
    page.click(".form-card button[type=submit]")
    expect(page.locator(".field-error")).to_contain_text("Buying power cannot be negative.")
    problems = check(page, "model form refusing a negative buying power")
    page.fill("#id_buying_power", "5000")
    page.click(".form-card button[type=submit]")
    page.wait_for_url(re.compile(r"/models/\d+/$"))
    model_id = re.search(r"/models/(\d+)/", page.url).group(1)
    token = page.csrf_token()
    run_id = page.evaluate(CREATE_RUN, [model_id, token])
    run_page = f"/models/{model_id}/runs/{run_id}/"

    page.reload()
    page.click("text=Conversations and details")
    page.wait_for_url(page.base + run_page)
    expect(page.locator("main")).to_contain_text("No conversations about this run yet.")

    first = new_conversation_from_the_run_page(page, run_page)
    second = new_conversation_from_the_run_page(page, run_page)
    assert first != second

    page.open(run_page)
    listed = page.locator("[data-run-conversations] [data-conversation]")
    expect(listed).to_have_count(2)
    assert [listed.nth(i).get_attribute("data-conversation") for i in range(2)] == [
        second,
        first,
    ]
    expect(listed.first).to_contain_text("Current")
    problems += check(page, "run page")
    page.screenshot_to(f"run-page-{scheme}")
    listed.last.locator("a").click()
    page.wait_for_url(page.base + f"/c/{first}")
    assert problems == [], "\n".join(problems)
    assert page.problems == []
