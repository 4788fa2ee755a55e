"""Choosing the LLM that answers (SPEC 4.6): the provider's list (the development LLM's
``GET /v1/models`` over real HTTP), the conversation's LLM on creation, PATCH, a send and
the chat header's picker, and the replies written by it."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache
from django.test import AsyncClient

from accounts import services as account_services
from accounts.tokens import token_issue
from chat import llm, selectors, services
from chat.devllm import DevConfig, DevLLMThread
from chat.models import ChatSession, Message
from core.exceptions import UnknownLLM
from tests.factories import ModelFactory, UserFactory

from .conftest import HTMX, finish, open_socket, receive_until, start

# The development LLM over real HTTP (a test may point at one of its own instead).
pytestmark = pytest.mark.usefixtures("dev_llm")

DEV_LLMS = ["parlor-dev", "parlor-dev-large", "parlor-dev-mini"]


@pytest.fixture(autouse=True)
def fresh_llm_list():
    """Each test asks the provider anew: the list is cached per provider URL."""
    cache.clear()
    yield
    cache.clear()


# The provider's list ------------------------------------------------------------------


def test_the_llms_are_the_providers_with_llm_model_first():
    assert llm.available_llms() == DEV_LLMS


def test_the_allow_list_keeps_the_listed_names_it_names(settings):
    settings.LLM_MODELS = ["parlor-dev-mini", "not-at-this-provider"]
    assert llm.available_llms() == ["parlor-dev", "parlor-dev-mini"]


def test_the_list_is_cached_and_an_unreachable_provider_offers_llm_model(settings):
    server = DevLLMThread(DevConfig(tokens=3, first_token_ms=0, token_ms=0)).start()
    settings.LLM_BASE_URL = server.base_url
    try:
        assert llm.available_llms() == DEV_LLMS
    finally:
        server.stop()
    # The provider is gone: the cached list still answers, without asking it.
    assert llm.available_llms() == DEV_LLMS
    cache.clear()
    assert llm.available_llms() == ["parlor-dev"]
    # Not asked again at once: every chat page wants the list.
    assert cache.get(f"{llm.MODELS_CACHE_KEY}:{server.base_url}") == []


# The conversation's LLM ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_conversation_started_with_an_llm_keeps_it(user):
    session = start(user, llm="parlor-dev-mini")
    assert ChatSession.objects.get(pk=session.pk).effective_llm == "parlor-dev-mini"


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["gpt-nonexistent", "PARLOR-DEV", "x" * 500])
def test_an_llm_not_offered_starts_nothing(user, name):
    with pytest.raises(UnknownLLM) as caught:
        start(user, llm=name)
    assert (caught.value.code, caught.value.field) == ("unknown_llm", "llm")
    assert not ChatSession.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_a_general_conversation_keeps_the_default_llm_it_started_with(user):
    account_services.profile_update(
        user=user, default_llm="parlor-dev-large", llms=llm.available_llms
    )
    session = start(user)
    account_services.profile_update(user=user, default_llm="", llms=llm.available_llms)
    assert ChatSession.objects.get(pk=session.pk).effective_llm == "parlor-dev-large"
    assert start(user).effective_llm == "parlor-dev"


@pytest.mark.django_db
def test_a_model_conversation_follows_its_models_llm(user):
    model = ModelFactory(owner=user, llm="parlor-dev-large")
    session = start(user, model_id=model.pk)
    assert session.llm == ""
    assert selectors.session_get(user=user, session_id=session.pk).effective_llm == (
        "parlor-dev-large"
    )
    model.llm = "parlor-dev-mini"
    model.save()
    assert selectors.session_get(user=user, session_id=session.pk).effective_llm == (
        "parlor-dev-mini"
    )


@pytest.mark.django_db
def test_changing_the_llm_and_going_back_to_the_default(user):
    account_services.profile_update(
        user=user, default_llm="parlor-dev-mini", llms=llm.available_llms
    )
    session = start(user)
    changed = services.conversation_update(user=user, session_id=session.pk, llm="parlor-dev-large")
    assert changed.effective_llm == "parlor-dev-large"
    reset = services.conversation_update(user=user, session_id=session.pk, llm="")
    assert reset.effective_llm == "parlor-dev-mini"


@pytest.mark.django_db
def test_an_unknown_llm_in_an_update_changes_nothing(user):
    session = start(user)
    with pytest.raises(UnknownLLM):
        services.conversation_update(
            user=user, session_id=session.pk, title="New title", llm="nope"
        )
    row = ChatSession.objects.get(pk=session.pk)
    assert (row.title, row.llm) == (session.title, session.llm)


# Replies are written by it -------------------------------------------------------------


@database_sync_to_async
def reply_llms(session_id) -> list[str]:
    return list(
        Message.objects.filter(session_id=session_id, role=Message.Role.ASSISTANT)
        .order_by("pk")
        .values_list("llm", flat=True)
    )


async def ask(socket, **frame) -> list[dict]:
    await socket.send_json_to({"type": "send", **frame})
    return await receive_until(socket, timeout=10)


@pytest.mark.django_db(transaction=True)
async def test_a_send_with_an_llm_is_answered_by_it_and_keeps_it(dev_llm):
    user = await database_sync_to_async(UserFactory)()
    asked = dev_llm.stats.models["parlor-dev-mini"]
    socket = await open_socket(user)
    first = await ask(socket, content="Hello", llm="parlor-dev-mini")
    session = first[0]["session"]
    second = await ask(socket, content="And again", session=session)
    third = await ask(socket, content="Bigger now", session=session, llm="parlor-dev-large")
    await finish(socket)

    assert [events[-1]["type"] for events in (first, second, third)] == ["done"] * 3
    assert await reply_llms(session) == ["parlor-dev-mini", "parlor-dev-mini", "parlor-dev-large"]
    # The title is made by LLM_TITLE_MODEL; the two replies by the chosen LLM.
    assert dev_llm.stats.models["parlor-dev-mini"] == asked + 2
    row = await database_sync_to_async(ChatSession.objects.get)(pk=session)
    assert row.llm == "parlor-dev-large"


@pytest.mark.django_db(transaction=True)
async def test_a_send_with_an_unknown_llm_is_refused_and_stores_nothing(dev_llm):
    user = await database_sync_to_async(UserFactory)()
    socket = await open_socket(user)
    refused = await ask(socket, content="Hello", llm="gpt-nonexistent")
    typed = await ask(socket, content="Hello", llm=7)
    await finish(socket)
    assert (refused[-1]["type"], refused[-1]["code"]) == ("error", "unknown_llm")
    assert (typed[-1]["type"], typed[-1]["code"]) == ("error", "invalid")
    assert not await database_sync_to_async(ChatSession.objects.filter(user=user).exists)()


@pytest.mark.django_db(transaction=True)
async def test_a_model_conversation_is_answered_by_its_models_llm(dev_llm):
    user = await database_sync_to_async(UserFactory)()
    model = await database_sync_to_async(ModelFactory)(owner=user, llm="parlor-dev-large")
    socket = await open_socket(user)
    events = await ask(socket, content="What is this model for?", model=model.pk)
    await finish(socket)
    assert await reply_llms(events[0]["session"]) == ["parlor-dev-large"]


@pytest.mark.django_db(transaction=True)
async def test_an_sse_body_may_choose_the_llm(dev_llm):
    user = await database_sync_to_async(UserFactory)()
    raw, _ = await database_sync_to_async(token_issue)(user=user)
    response = await AsyncClient().post(
        "/api/chat/stream",
        data={"message": "Hi over SSE", "llm": "parlor-dev-mini"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert response.status_code == 200
    body = b"".join([chunk async for chunk in response.streaming_content]).decode()
    session = body.split('"session":"', 1)[1].split('"', 1)[0]
    await asyncio.sleep(0)
    assert await reply_llms(session) == ["parlor-dev-mini"]
    refused = await AsyncClient().post(
        "/api/chat/stream",
        data={"message": "Hi", "llm": "nope"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "unknown_llm")


# The chat header's picker ----------------------------------------------------------------


@pytest.mark.django_db
def test_the_header_offers_the_llms_and_shows_the_conversations(web, user):
    session = start(user, llm="parlor-dev-large")
    page = web.get(session.get_absolute_url()).content.decode()
    picker = page.split('id="llm-picker"', 1)[1].split("</form>", 1)[0]
    assert f'hx-post="/c/{session.pk}/llm"' in picker
    assert '<label for="llm-select"' in page
    for name in DEV_LLMS:
        assert f'<option value="{name}"' in picker
    assert '<option value="parlor-dev-large" selected>' in picker
    new_chat = web.get("/new").content.decode()
    assert (
        'id="llm-picker"' in new_chat
        and "hx-post" not in new_chat.split('id="llm-picker"')[1].split(">")[0]
    )
    assert '<option value="parlor-dev" selected>' in new_chat


@pytest.mark.django_db
def test_a_new_model_chat_shows_its_models_llm(web, user):
    model = ModelFactory(owner=user, llm="parlor-dev-mini")
    page = web.get(f"/m/{model.pk}/new").content.decode()
    assert '<option value="parlor-dev-mini" selected>' in page


@pytest.mark.django_db
def test_the_picker_saves_the_choice_at_once(web, user):
    session = start(user)
    response = web.post(f"/c/{session.pk}/llm", {"llm": "parlor-dev-mini"}, **HTMX)
    assert response.status_code == 204
    assert ChatSession.objects.get(pk=session.pk).llm == "parlor-dev-mini"


@pytest.mark.django_db
def test_the_picker_says_why_a_choice_is_refused_and_changes_nothing(web, user):
    session = start(user)
    response = web.post(f"/c/{session.pk}/llm", {"llm": "gpt-nonexistent"}, **HTMX)
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    assert "is not an LLM offered here" in response.content.decode()
    assert ChatSession.objects.get(pk=session.pk).llm == session.llm
    assert web.post(f"/c/{session.pk}/llm", {"llm": "nope"}).status_code == 400


@pytest.mark.django_db
def test_someone_elses_conversation_is_not_found(client_for, user, other_user):
    session = start(other_user)
    response = client_for(user).post(f"/c/{session.pk}/llm", {"llm": "parlor-dev-mini"}, **HTMX)
    assert response.status_code == 404
    assert ChatSession.objects.get(pk=session.pk).llm == ""
