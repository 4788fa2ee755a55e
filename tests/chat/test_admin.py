"""The Django admin for staff: pages load, and changes go through the services."""

import json

import pytest
from django.urls import reverse

from chat import services
from chat.models import ChatSession, Message
from models_app import services as model_services
from models_app.models import Model, Run
from tests.factories import ModelFactory, RunFactory, TradeFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    staff = UserFactory(username="staff", is_staff=True, is_superuser=True)
    client.force_login(staff)
    return client


@pytest.fixture
def data(user, model, run):
    TradeFactory.create_batch(3, run=run)
    general = services.reply_start(user=user, content="Hello from general").session
    model_session = services.reply_start(user=user, content="About my model", model_id=model.pk)
    run_session = services.reply_start(user=user, content="About my run", run_id=run.pk)
    return general, model_session.session, run_session.session


def test_staff_can_load_every_changelist_and_change_page(staff_client, data, model, run):
    general, *_ = data
    message = Message.objects.first()
    trade = run.trades.first()
    urls = [
        reverse("admin:chat_chatsession_changelist"),
        reverse("admin:chat_chatsession_change", args=[general.pk]),
        reverse("admin:chat_message_changelist"),
        reverse("admin:chat_message_change", args=[message.pk]),
        reverse("admin:models_app_model_changelist"),
        reverse("admin:models_app_model_change", args=[model.pk]),
        reverse("admin:models_app_run_changelist"),
        reverse("admin:models_app_run_change", args=[run.pk]),
        reverse("admin:models_app_trade_changelist"),
        reverse("admin:models_app_trade_change", args=[trade.pk]),
    ]
    for url in urls:
        response = staff_client.get(url)
        assert response.status_code == 200, url
    page = staff_client.get(reverse("admin:chat_chatsession_change", args=[general.pk]))
    assert b"Hello from general" in page.content  # the read-only message inline


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("context=general", {"general"}),
        ("context=model", {"model"}),
        ("context=run", {"run"}),
        ("context=detached", set()),
        ("is_active__exact=1", {"general", "model", "run"}),
        ("archived__exact=1", set()),
        ("q=About+my", {"model", "run"}),
    ],
)
def test_session_changelist_filters(staff_client, data, query, expected):
    by_id = dict(zip(("general", "model", "run"), (s.pk for s in data), strict=True))
    response = staff_client.get(reverse("admin:chat_chatsession_changelist") + "?" + query)
    assert response.status_code == 200
    shown = {s.pk for s in response.context["cl"].result_list}
    assert shown == {by_id[name] for name in expected}


def test_session_changelist_filters_by_user_and_searches_usernames(staff_client, data, user):
    other = services.conversation_start(user=UserFactory(username="someone-else"))[0]
    url = reverse("admin:chat_chatsession_changelist")
    by_user = staff_client.get(f"{url}?user__id__exact={user.pk}").context["cl"].result_list
    assert {s.pk for s in by_user} == {s.pk for s in data}
    found = staff_client.get(f"{url}?q=someone-else").context["cl"].result_list
    assert [s.pk for s in found] == [other.pk]


def test_message_changelist_filters_by_role_and_searches_content(staff_client, data):
    url = reverse("admin:chat_message_changelist")
    users = staff_client.get(f"{url}?role__exact=user").context["cl"].result_list
    assert {m.role for m in users} == {"user"} and len(users) == 3
    streaming = staff_client.get(f"{url}?status__exact=streaming").context["cl"].result_list
    assert len(streaming) == 3
    found = staff_client.get(f"{url}?q=my+run").context["cl"].result_list
    assert [m.content for m in found] == ["About my run"]


def test_messages_are_read_only_in_the_admin(staff_client, data):
    message = Message.objects.first()
    response = staff_client.post(
        reverse("admin:chat_message_change", args=[message.pk]), {"content": "tampered"}
    )
    assert response.status_code == 403
    assert staff_client.get(reverse("admin:chat_message_add")).status_code == 403
    message.refresh_from_db()
    assert message.content != "tampered"


def test_make_active_switches_the_active_session_through_the_service(staff_client, user, data):
    general, *_ = data
    newer, _ = services.conversation_start(user=user)
    general.refresh_from_db()
    stamps = (general.updated_at, general.activity_at)
    assert general.is_active is False
    response = staff_client.post(
        reverse("admin:chat_chatsession_changelist"),
        {"action": "make_active", "_selected_action": [str(general.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    general.refresh_from_db()
    newer.refresh_from_db()
    assert (general.is_active, newer.is_active) == (True, False)
    # The service's rule: switching is not activity.
    assert (general.updated_at, general.activity_at) == stamps


def test_make_active_on_a_detached_session_warns_and_changes_nothing(staff_client, user, data):
    _, model_session, _ = data
    model_services.model_delete(user=user, model_id=model_session.model_id)
    response = staff_client.post(
        reverse("admin:chat_chatsession_changelist"),
        {"action": "make_active", "_selected_action": [str(model_session.pk)]},
        follow=True,
    )
    assert b"can be read but not continued" in response.content
    model_session.refresh_from_db()
    assert model_session.is_active is False


def test_renaming_in_the_admin_is_a_user_rename(staff_client, data):
    general, *_ = data
    response = staff_client.post(
        reverse("admin:chat_chatsession_change", args=[general.pk]),
        {
            "title": "Renamed by staff",
            "pinned": "on",
            "archived": "",
            # The read-only message inline still posts its (empty) management form.
            "messages-TOTAL_FORMS": "0",
            "messages-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    general.refresh_from_db()
    assert (general.title, general.title_source, general.pinned) == (
        "Renamed by staff",
        ChatSession.TitleSource.USER,
        True,
    )
    assert not services.conversation_set_auto_title(session_id=general.pk, title="Auto")


def test_deleting_a_model_in_the_admin_keeps_its_conversations(staff_client, data, model, run):
    _, model_session, run_session = data
    response = staff_client.post(
        reverse("admin:models_app_model_delete", args=[model.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not Model.objects.filter(pk=model.pk).exists()
    assert not Run.objects.filter(pk=run.pk).exists()
    for session in (model_session, run_session):
        session.refresh_from_db()
        assert session.is_active is False
        assert "deleted model" in session.detached_label
        assert session.messages.count() == 2


def test_bulk_deleting_runs_in_the_admin_keeps_their_conversations(staff_client, user, data, run):
    _, model_session, run_session = data
    second = RunFactory(model=run.model)
    response = staff_client.post(
        reverse("admin:models_app_run_changelist"),
        {"action": "delete_selected", "_selected_action": [run.pk, second.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not Run.objects.filter(pk__in=[run.pk, second.pk]).exists()
    run_session.refresh_from_db()
    model_session.refresh_from_db()
    assert (run_session.is_active, run_session.messages.count()) == (False, 2)
    assert "deleted run" in run_session.detached_label
    assert (model_session.is_active, model_session.detached_label) == (True, "")


def test_bulk_deleting_models_in_the_admin_keeps_their_conversations(staff_client, user, data):
    _, model_session, _ = data
    spare = ModelFactory(owner=user)
    response = staff_client.post(
        reverse("admin:models_app_model_changelist"),
        {
            "action": "delete_selected",
            "_selected_action": [model_session.model_id, spare.pk],
            "post": "yes",
        },
    )
    assert response.status_code == 302
    assert not Model.objects.exists()
    model_session.refresh_from_db()
    assert model_session.detached_label and model_session.messages.count() == 2


def test_deleting_a_conversation_in_the_admin_deletes_its_messages(staff_client, data):
    general, *_ = data
    response = staff_client.post(
        reverse("admin:chat_chatsession_delete", args=[general.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not ChatSession.objects.filter(pk=general.pk).exists()
    assert not Message.objects.filter(session_id=general.pk).exists()


def test_non_staff_users_are_sent_to_the_admin_login(client, user):
    client.force_login(user)
    response = client.get(reverse("admin:chat_chatsession_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_export_downloads_the_selected_conversations_as_json(staff_client, data):
    general, model_session, _ = data
    url = reverse("admin:chat_chatsession_changelist")
    one = staff_client.post(url, {"action": "export", "_selected_action": [str(general.pk)]})
    assert one.status_code == 200
    assert one["Content-Disposition"].startswith('attachment; filename="parlor-')
    exported = json.loads(one.content)
    assert exported["format"] == "parlor.conversation"
    assert "Hello from general" in one.content.decode()
    both = staff_client.post(
        url, {"action": "export", "_selected_action": [str(general.pk), str(model_session.pk)]}
    )
    assert len(json.loads(both.content)) == 2


@pytest.mark.django_db(transaction=True)
def test_summarize_now_writes_the_summary_with_the_development_llm(
    staff_client, user, dev_llm, settings
):
    settings.SUMMARY_THRESHOLD = 4
    settings.CONTEXT_MESSAGES = 2
    session, _ = services.conversation_start(user=user)
    for number in range(4):
        reply = services.reply_start(user=user, content=f"Question {number}", session_id=session.pk)
        services.reply_finish(
            message_id=reply.assistant_message.pk, content=f"Answer {number}", status="complete"
        )
    short, _ = services.conversation_start(user=user)
    url = reverse("admin:chat_chatsession_changelist")
    response = staff_client.post(
        url,
        {"action": "summarize_now", "_selected_action": [str(session.pk), str(short.pk)]},
        follow=True,
    )
    assert b"Summaries updated: 1 of 2" in response.content
    session.refresh_from_db()
    assert session.summary
    last_covered = session.messages.order_by("-created_at", "-id")[2]
    assert session.summary_until_id == last_covered.pk
