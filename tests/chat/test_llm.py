"""chat.llm over the real SDK and HTTP against the development LLM."""

import pytest

from chat import llm
from chat.devllm import free_port

TRADES_TOOL = [{"type": "function", "function": {"name": "get_trades", "parameters": {}}}]


async def collect(content, **kwargs):
    events = []
    async for event in llm.stream_chat(
        messages=[{"role": "user", "content": content}], model="parlor-dev", **kwargs
    ):
        events.append(event)
    return events


async def test_stream_yields_text_and_usage(dev_llm):
    events = await collect("Hello [dev:tokens=12]")
    text = "".join(e.text for e in events)
    usage = [e.usage for e in events if e.usage]
    assert text.startswith("**Here is a deterministic reply.**")
    assert usage == [llm.Usage(prompt_tokens=2, completion_tokens=12)]


async def test_stream_is_deterministic(dev_llm):
    first = "".join(e.text for e in await collect("Same question"))
    second = "".join(e.text for e in await collect("Same question"))
    assert first == second


async def test_tool_call_is_assembled_from_its_chunks(dev_llm):
    events = await collect("Show my NVDA trades", tools=TRADES_TOOL)
    calls = [call for e in events for call in e.tool_calls]
    assert [(c.name, c.parsed_arguments()) for c in calls] == [("get_trades", {"symbol": "NVDA"})]
    assert calls[0].id.startswith("call_")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("x [dev:fault=500]", "The language model answered with an error (HTTP 500)."),
        (
            "x [dev:fault=429]",
            "The language model is busy (rate limited); please try again shortly.",
        ),
        ("x [dev:fault=401]", "The language model refused the server's credentials."),
        ("x [dev:fault=die]", "The connection to the language model broke off mid-reply."),
        ("x [dev:fault=malformed]", "The language model sent a malformed response."),
        ("x [dev:fault=hang]", "The language model did not answer within 0.3 seconds."),
        ("x [dev:fault=hang_mid]", "The language model did not answer within 0.3 seconds."),
    ],
)
async def test_upstream_failures_become_llm_errors_with_a_reason(
    dev_llm, settings, content, reason
):
    settings.LLM_TIMEOUT = 0.3
    with pytest.raises(llm.LLMError) as caught:
        await collect(content)
    assert caught.value.reason == reason
    # The provider's own words go to the log, never to the user.
    assert "Injected" not in caught.value.reason


async def test_text_the_database_cannot_store_arrives_as_replacement_characters(dev_llm):
    """NUL, half of a surrogate pair and bytes that are not UTF-8 become U+FFFD."""
    text = "".join(e.text for e in await collect("x [dev:fault=odd_text]"))
    assert "\x00" not in text
    assert text.encode("utf-8")  # no lone surrogate survives
    assert text.count("\ufffd") >= 3
    assert text.startswith("before") and text.endswith("after")


async def test_refused_connection_is_an_llm_error(settings):
    settings.LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(llm.LLMError, match="could not be reached"):
        await collect("hello")
    with pytest.raises(llm.LLMError, match="could not be reached"):
        await llm.complete(messages=[{"role": "user", "content": "x"}], model="m")


async def test_complete_returns_the_whole_answer(dev_llm):
    title = await llm.complete(
        messages=[
            {"role": "system", "content": "Reply with only a short title for this."},
            {"role": "user", "content": "what is a good stop loss for scalping?"},
        ],
        model="parlor-dev",
    )
    assert title == "What is a good stop loss"


async def test_embedded_default_starts_the_dev_llm_in_process(settings):
    settings.LLM_BASE_URL = ""
    assert llm.base_url().startswith("http://127.0.0.1:")
    answer = await llm.complete(messages=[{"role": "user", "content": "hi"}], model="parlor-dev")
    assert answer.startswith("**Here is a deterministic reply.**")
