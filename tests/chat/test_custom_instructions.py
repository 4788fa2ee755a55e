"""Custom instructions (settings, SPEC 4.6 and 5.2) reach the LLM: after the general
prompt in a general conversation, after the model's configuration in a model's one.

The end-to-end tests read the system prompt as the development LLM received it
(``[dev:echo=context]``), through the real socket and SDK."""

import pytest
from channels.db import database_sync_to_async

from accounts import services as account_services
from chat import prompting, streaming
from chat.models import ChatSession
from tests.factories import ModelFactory, UserFactory

from .conftest import finish, open_socket, receive_until, start, tokens_text

ABOUT = "I teach maths to 12-year-olds in Lyon."
STYLE = "Answer in three sentences at most."


def instruct(user, *, about_me=ABOUT, response_style=STYLE):
    account_services.profile_update(user=user, about_me=about_me, response_style=response_style)


@pytest.mark.django_db
def test_a_general_prompt_ends_with_the_instructions(user):
    instruct(user)
    prompt = prompting.system_prompt(start(user))
    assert prompt.startswith(prompting.GENERAL_PROMPT)
    assert prompt.endswith(
        f"About the user, in their own words:\n{ABOUT}\n\n"
        f"How the user wants answers, in their own words:\n{STYLE}"
    )


@pytest.mark.django_db
def test_only_what_is_set_is_added(user):
    session = start(user)
    assert prompting.system_prompt(session) == prompting.GENERAL_PROMPT
    instruct(user, about_me="", response_style=STYLE)
    prompt = prompting.system_prompt(ChatSession.objects.get(pk=session.pk))
    assert "About the user" not in prompt and prompt.endswith(STYLE)


@pytest.mark.django_db
def test_a_model_conversation_keeps_its_instructions_and_adds_these_after(user):
    model = ModelFactory(owner=user, instructions="Prefer liquid large caps.")
    instruct(user)
    prompt = prompting.system_prompt(start(user, model_id=model.pk))
    assert prompt.index("Prefer liquid large caps.") < prompt.index(ABOUT) < prompt.index(STYLE)


@pytest.mark.django_db
def test_the_owners_instructions_only(user, other_user):
    instruct(other_user, about_me="Someone else entirely.", response_style="")
    assert "Someone else" not in prompting.system_prompt(start(user))


@pytest.mark.django_db
def test_a_new_conversation_reads_the_instructions_with_no_query(django_assert_num_queries):
    user = UserFactory(about_me=ABOUT)
    prepared = streaming.prepare(user=user, content="First question")
    with django_assert_num_queries(0):
        prompt = prompting.system_prompt(prepared.reply.session)
    assert ABOUT in prompt


@pytest.mark.django_db
def test_a_conversation_read_without_its_owner_costs_one_query(user, django_assert_num_queries):
    instruct(user)
    session = ChatSession.objects.get(pk=start(user).pk)
    with django_assert_num_queries(1):
        assert prompting.custom_instructions(session).endswith(STYLE)


async def ask(user, content: str, **fields) -> list[str]:
    socket = await open_socket(user)
    await socket.send_json_to({"type": "send", "content": content, **fields})
    events = await receive_until(socket, timeout=10)
    await finish(socket)
    assert events[-1]["type"] == "done", events
    return tokens_text(events).splitlines()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("dev_llm")
async def test_the_llm_is_sent_the_instructions_and_follows_a_change():
    user = await database_sync_to_async(UserFactory)()
    await database_sync_to_async(instruct)(user)
    echoed = await ask(user, "Who am I? [dev:echo=context]")
    assert echoed[0] == f"system: {prompting.GENERAL_PROMPT}"
    assert ABOUT in echoed and STYLE in echoed
    assert echoed[-1] == "user: Who am I? [dev:echo=context]"

    # Changed in the settings: the next reply of the same conversation is sent the new ones
    # (the system prompt: what comes before the first question; the first reply quoted
    # the old ones).
    await database_sync_to_async(instruct)(user, about_me="I am a pilot.", response_style="")
    echoed = await ask(user, "And now? [dev:echo=context]")
    system = echoed[: echoed.index("user: Who am I? [dev:echo=context]")]
    assert "I am a pilot." in system
    assert ABOUT not in system and STYLE not in system


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("dev_llm")
async def test_a_model_conversation_sends_the_instructions_after_the_model_configuration():
    user = await database_sync_to_async(UserFactory)()
    model = await database_sync_to_async(ModelFactory)(owner=user, instructions="Swing only.")
    await database_sync_to_async(instruct)(user)
    echoed = "\n".join(await ask(user, "Hi [dev:echo=context]", model=model.pk))
    assert echoed.index("Swing only.") < echoed.index(ABOUT) < echoed.index(STYLE)
