"""A run's page: its facts and trades, "New conversation about this run", and the list of
the user's conversations about that run (and nobody else's, and no other run's)."""

import re
import uuid

import pytest
from django.test import Client
from django.utils import timezone

from chat import selectors as chat_selectors
from chat import services as chat_services
from chat.models import ChatSession, Message
from tests.factories import ChatSessionFactory, ModelFactory, RunFactory, TradeFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def web(user):
    client = Client()
    client.force_login(user)
    return client


def run_url(run) -> str:
    return f"/models/{run.model_id}/runs/{run.pk}/"


def talk(user, content, **context):
    """Send a message as the chat page does, and finish its reply."""
    reply = chat_services.reply_start(user=user, content=content, **context)
    chat_services.reply_finish(
        message_id=reply.assistant_message.pk, content="ok", status=Message.Status.COMPLETE
    )
    return chat_selectors.session_get(user=user, session_id=reply.session.pk)


def listed_ids(html: str) -> list[str]:
    return re.findall(r'data-conversation="([0-9a-f-]{36})"', html)


def test_the_run_page_shows_the_run_its_trades_and_the_new_conversation_button(web, run):
    TradeFactory(run=run, symbol="TSLA", realized_pnl="-54.00")
    response = web.get(run_url(run))
    assert response.status_code == 200
    html = response.content.decode()
    assert f"Run #{run.pk}" in html and run.model.name in html
    assert "TSLA" in html and "-$54.00" in html
    new = f'href="/m/{run.model_id}/runs/{run.pk}/new"'
    assert new in html and "New conversation about this run" in html
    assert "No conversations about this run yet." in html


def test_the_model_page_links_to_each_runs_page(web, run):
    html = web.get(f"/models/{run.model_id}/").content.decode()
    assert f'href="{run_url(run)}"' in html


def test_the_run_page_lists_its_conversations_and_nobody_elses(web, user, other_user, model, run):
    older = talk(user, "First look at the run", run_id=run.pk)
    chat_services.conversation_update(user=user, session_id=older.pk, title="First look")
    newer, _ = chat_services.conversation_start(user=user, run_id=run.pk)
    newer = talk(user, "Second look", session_id=newer.pk)
    chat_services.conversation_update(user=user, session_id=newer.pk, archived=True)
    # Not this run's: the model's own conversation, another run's, and a stray row of
    # another user's pointing at this run.
    talk(user, "About the model", model_id=model.pk)
    talk(user, "About another run", run_id=RunFactory(model=model).pk)
    stray = ChatSessionFactory(user=other_user, model=model, run=run, title="Not yours")

    html = web.get(run_url(run)).content.decode()

    assert listed_ids(html) == [str(newer.pk), str(older.pk)]  # latest activity first
    assert "First look" in html and "Not yours" not in html and str(stray.pk) not in html
    assert f'href="/c/{older.pk}"' in html and f'href="/c/{newer.pk}"' in html
    older.refresh_from_db()
    last_activity = timezone.localtime(older.last_message_at).strftime("%Y-%m-%d %H:%M")
    assert last_activity in html
    assert "Archived" in html
    assert "2 messages" in html


def test_the_run_page_of_someone_else_or_of_another_model_is_404(web, user, other_user, run):
    theirs = RunFactory(model=ModelFactory(owner=other_user))
    mine_elsewhere = ModelFactory(owner=user)
    assert web.get(run_url(theirs)).status_code == 404
    assert web.get(f"/models/{mine_elsewhere.pk}/runs/{run.pk}/").status_code == 404
    assert web.get(f"/models/{run.model_id}/runs/99999999/").status_code == 404
    assert web.get(f"/models/{run.model_id}/runs/{2**64}/").status_code == 404
    anonymous = Client().get(run_url(run))
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]


def test_new_conversation_about_a_run_starts_a_new_one_even_when_one_is_active(web, user, run):
    current = talk(user, "The current one", run_id=run.pk)
    # The run's chat page opens the active conversation ...
    assert web.get(f"/m/{run.model_id}/runs/{run.pk}/chat")["Location"] == f"/c/{current.pk}"

    # ... the button's page is an empty chat about the run, with no conversation yet.
    page = web.get(f"/m/{run.model_id}/runs/{run.pk}/new")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-session=""' in html
    assert f'data-model="{run.model_id}"' in html and f'data-run="{run.pk}"' in html
    assert ChatSession.objects.count() == 1

    # Its first message carries a fresh id with the model and run, as chat.js sends it.
    fresh = talk(
        user, "A new question", session_id=str(uuid.uuid4()), model_id=run.model_id, run_id=run.pk
    )

    assert fresh.pk != current.pk and (fresh.model_id, fresh.run_id) == (run.model_id, run.pk)
    assert fresh.is_active
    current.refresh_from_db()
    assert not current.is_active
    assert listed_ids(web.get(run_url(run)).content.decode()) == [str(fresh.pk), str(current.pk)]


def test_new_conversation_about_someone_elses_run_is_404(web, user, other_user, run):
    theirs = RunFactory(model=ModelFactory(owner=other_user))
    assert web.get(f"/m/{theirs.model_id}/runs/{theirs.pk}/new").status_code == 404
    other_model = ModelFactory(owner=user)
    assert web.get(f"/m/{other_model.pk}/runs/{run.pk}/new").status_code == 404
    assert not ChatSession.objects.exists()
