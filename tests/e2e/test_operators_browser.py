"""People in the loop in real Chromium (issue 15, SPEC 4.6): a user asks for a person, an
operator (another browser) sees the queue update, joins, and they talk live; the operator
has a reply suggested, edits and sends it, and leaves; the assistant then answers the user
again, knowing what the operator said."""

import re
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ROOT, _server_env
from tests.e2e.test_accessibility import check

pytestmark = pytest.mark.e2e

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture
def grant(e2e_workdir, e2e_llm):
    """Give a username the operator role, as the README says: ``manage.py grant_operator``
    against the live server's database."""

    def run(username: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", "grant_operator", username],
            cwd=ROOT,
            env=_server_env(e2e_workdir, e2e_llm.base_url),
            check=True,
            timeout=60,
            capture_output=True,
        )

    return run


def test_a_user_and_an_operator_talk_live_and_the_assistant_steps_back(open_page, grant):
    user = open_page()
    user.sign_up()
    operator = open_page()
    operator_name = operator.sign_up()
    grant(operator_name)

    # The operator watches the queue: nobody waits yet.
    operator.open("/operator/")
    waiting = operator.locator("[data-waiting]")
    expect(waiting).to_have_text("0")

    # The user chats with the assistant, then asks for a person.
    user.send("Hello there [dev:tokens=6]")
    user.wait_for_url(re.compile(rf"/c/{UUID}$"))
    user.wait_idle()
    session_id = user.url.rsplit("/", 1)[1]
    user.get_by_role("button", name="Talk to a person").click()
    expect(user.locator("#people-line")).to_contain_text("You asked for a person")
    expect(user.get_by_role("button", name="Talk to a person")).to_be_hidden()

    # The operator's queue updates by itself, and they join.
    expect(waiting).to_have_text("1", timeout=10_000)
    item = operator.locator(f'[data-queue-item="{session_id}"]')
    item.get_by_role("button", name="Join").click()
    operator.wait_for_url(re.compile(rf"/operator/c/{session_id}$"))
    expect(operator.locator("#people-line")).to_contain_text("You are answering")
    expect(operator.locator("#message-list .msg-user")).to_contain_text("Hello there")

    # The user's tab shows the join live.
    expect(user.locator(".msg-event").last).to_have_text(
        f"{operator_name} from support joined the conversation."
    )
    expect(user.locator("#people-line")).to_contain_text(f"{operator_name} from support is")

    # The user's next message goes to the operator, not to the assistant.
    replies_before = user.locator("#message-list .msg-assistant").count()
    user.send("Why was my order rejected?")
    expect(operator.locator("#message-list .msg-user").last).to_contain_text(
        "Why was my order rejected?"
    )
    user.wait_for_timeout(1_000)  # an AI reply, if one came, would have begun by now
    expect(user.locator("#message-list .msg-assistant")).to_have_count(replies_before)
    user.wait_idle()

    # The operator answers in person; the user sees it live, marked as from a person.
    operator.send("I am looking at your order now.")
    answer = user.locator("#message-list .msg-operator").last
    expect(answer).to_contain_text("I am looking at your order now.")
    expect(answer.locator(".msg-author")).to_contain_text(operator_name)

    # "Suggest a reply": a draft streams into the operator's composer; edited, then sent.
    operator.get_by_role("button", name="Suggest a reply").click()
    composer = operator.locator("#composer-input")
    expect(composer).not_to_have_value("", timeout=10_000)
    expect(operator.get_by_role("button", name="Suggest a reply")).to_be_enabled()
    draft = composer.input_value()
    composer.fill(draft.strip() + " Edited by support: the limit price was outside the band.")
    composer.press("Enter")
    expect(user.locator("#message-list .msg-operator").last).to_contain_text(
        "Edited by support: the limit price was outside the band."
    )
    # The owner never saw the draft before it was sent.
    expect(user.locator("#message-list .msg-operator")).to_have_count(2)
    assert check(operator, "operator conversation") == []

    # The operator leaves; the conversation is the assistant's again.
    operator.get_by_role("button", name="Leave").click()
    operator.wait_for_url(re.compile(r"/operator/$"))
    expect(user.locator(".msg-event").last).to_contain_text(
        f"{operator_name} left the conversation."
    )
    expect(user.get_by_role("button", name="Talk to a person")).to_be_visible()

    # The next message gets a streamed AI reply that knows what the operator said.
    user.send("What did support tell me? [dev:echo=context]")
    reply = user.locator("#message-list .msg-assistant").last
    expect(reply).to_contain_text("I am looking at your order now.", timeout=15_000)
    expect(reply).to_contain_text("the limit price was outside the band")
    user.wait_idle()
    assert check(user, "chat after an operator left") == []

    # After a reload the operator's messages are still there, marked as theirs.
    user.reload()
    expect(user.locator("#message-list .msg-operator")).to_have_count(2)
    expect(user.locator("#message-list .msg-operator .msg-author").first).to_contain_text(
        operator_name
    )
    assert not user.problems, user.problems


def test_people_without_the_role_get_no_queue(open_page):
    page = open_page()
    page.sign_up()
    response = page.open("/operator/")
    assert response.status == 404
    expect(page.get_by_role("link", name="Operator queue")).to_have_count(0)
