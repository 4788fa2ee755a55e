"""The one client of the LLM: the ``openai`` SDK's AsyncOpenAI, streaming (SPEC 5.1).

Without ``LLM_BASE_URL`` the built-in development LLM is started in-process on a free
port and the SDK is pointed at it, so the embedded default runs the same code path as a
real provider. Every upstream failure becomes ``LLMError`` with a reason people can read.
"""

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import openai
from django.conf import settings

# The HTTP clients log every request at INFO: one line per reply would drown the log.
for _name in ("httpx", "httpx2"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class LLMError(Exception):
    """The LLM could not answer; ``reason`` is shown to the user."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str = ""

    def parsed_arguments(self) -> dict:
        try:
            value = json.loads(self.arguments or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class StreamEvent:
    """One thing the stream produced: a piece of text, the tool calls, or the usage."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None


# One client per event loop and configuration: an httpx pool belongs to the loop it
# was created on, and tests start servers on new ports under new loops.
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = weakref.WeakKeyDictionary()


def base_url() -> str:
    """Return the configured provider's URL, or the embedded development LLM's."""
    if settings.LLM_BASE_URL:
        return settings.LLM_BASE_URL
    from .devllm import embedded_base_url

    return embedded_base_url()


def client() -> openai.AsyncOpenAI:
    """Return the AsyncOpenAI client for the running loop and the current settings."""
    loop = asyncio.get_running_loop()
    key = (base_url(), settings.OPENAI_API_KEY, float(settings.LLM_TIMEOUT))
    per_loop = _clients.setdefault(loop, {})
    found = per_loop.get(key)
    if found is None:
        found = openai.AsyncOpenAI(
            base_url=key[0],
            api_key=key[1] or "not-needed",
            timeout=openai.Timeout(key[2], connect=min(key[2], 10.0)),
            # A retried stream would repeat tokens already shown; the user retries instead.
            max_retries=0,
        )
        per_loop[key] = found
    return found


def describe(exc: BaseException) -> str:
    """Return a readable reason for an upstream failure."""
    if isinstance(exc, LLMError):
        return exc.reason
    if isinstance(exc, openai.APITimeoutError):
        return f"The language model did not answer within {settings.LLM_TIMEOUT:g} seconds."
    if isinstance(exc, openai.APIConnectionError):
        return "The language model could not be reached (connection failed)."
    if isinstance(exc, openai.APIStatusError):
        detail = ""
        body = exc.body
        if isinstance(body, dict):
            error = body.get("error", body)
            if isinstance(error, dict):
                detail = str(error.get("message") or "")
        reason = f"The language model answered with HTTP {exc.status_code}"
        return f"{reason}: {detail}" if detail else reason + "."
    if isinstance(exc, (ValueError, openai.APIResponseValidationError)):
        return "The language model sent a malformed response."
    name = type(exc).__name__
    if "Timeout" in name:
        return f"The language model did not answer within {settings.LLM_TIMEOUT:g} seconds."
    return f"The connection to the language model broke off ({name})."


async def stream_chat(
    *, messages: list[dict], model: str, tools: list | None = None, extra_body=None
) -> AsyncIterator[StreamEvent]:
    """Yield the reply of the LLM as it streams; raise LLMError on any upstream failure.

    Closing the generator (``aclosing``, or cancelling the task iterating it) closes the
    upstream HTTP stream.
    """
    kwargs = {}
    if tools:
        kwargs["tools"] = tools
    if extra_body:
        kwargs["extra_body"] = extra_body
    try:
        stream = await client().chat.completions.create(
            model=model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            **kwargs,
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise LLMError(describe(exc)) from exc
    calls: dict[int, ToolCall] = {}
    try:
        async for chunk in stream:
            if chunk.usage is not None:
                yield StreamEvent(
                    usage=Usage(
                        prompt_tokens=chunk.usage.prompt_tokens or 0,
                        completion_tokens=chunk.usage.completion_tokens or 0,
                    )
                )
            for choice in chunk.choices or ():
                delta = choice.delta
                if delta is None:
                    continue
                if delta.content:
                    yield StreamEvent(text=delta.content)
                for call in delta.tool_calls or ():
                    entry = calls.setdefault(call.index, ToolCall(id="", name=""))
                    if call.id:
                        entry.id = call.id
                    if call.function is not None:
                        entry.name += call.function.name or ""
                        entry.arguments += call.function.arguments or ""
    except asyncio.CancelledError:
        raise
    except GeneratorExit:
        raise
    except Exception as exc:
        if isinstance(exc, openai.APIConnectionError) and not isinstance(
            exc, openai.APITimeoutError
        ):
            raise LLMError("The connection to the language model broke off mid-reply.") from exc
        raise LLMError(describe(exc)) from exc
    finally:
        await stream.close()
    if calls:
        yield StreamEvent(tool_calls=[calls[index] for index in sorted(calls)])


async def complete(*, messages: list[dict], model: str, max_tokens: int = 200) -> str:
    """Return the LLM's whole (non-streamed) answer; raise LLMError on failure."""
    try:
        response = await client().chat.completions.create(
            model=model, messages=messages, max_tokens=max_tokens
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise LLMError(describe(exc)) from exc
    if not response.choices:
        raise LLMError("The language model sent an empty answer.")
    return response.choices[0].message.content or ""
