"""The one client of the LLM: the ``openai`` SDK's AsyncOpenAI, streaming (SPEC 5.1).

The SDK makes the request (base URL, key, timeouts, status errors) with its ``post``
(see ``_post``); the stream's body is read as raw SSE lines and each chunk parsed with
orjson. Building the SDK's pydantic object per chunk cost more than everything else a
relayed token does (bench/README.md), and a chunk is a small, stable JSON shape. The
request body is sent as given: through ``create(messages=...)`` the SDK walks every
message of the context through its TypedDict transform first (12 % of the relay's CPU
in a py-spy profile).

Without ``LLM_BASE_URL`` the built-in development LLM is started in-process on a free
port and the SDK is pointed at it, so the embedded default runs the same code path as a
real provider. Every upstream failure becomes ``LLMError`` with a reason people can read;
the provider's own words go to the log, not to the user.
"""

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import httpx2
import openai
import orjson
from django.conf import settings

from .text import clean_json, clean_text

logger = logging.getLogger(__name__)

# The HTTP clients log every request at INFO: one line per reply would drown the log.
for _name in ("httpx", "httpx2", "openai"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class LLMError(Exception):
    """The LLM could not answer; ``reason`` is shown to the user, ``kind`` is counted.

    Kinds: unreachable, timeout, status (an HTTP error), malformed, broken (cut off).
    """

    def __init__(self, reason: str, kind: str = "broken"):
        self.reason = reason
        self.kind = kind
        super().__init__(reason)


MALFORMED = "The language model sent a malformed response."


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str = ""

    def parsed_arguments(self) -> dict | None:
        """Return the arguments as a dict, or None when they are not a JSON object."""
        try:
            value = json.loads(self.arguments or "{}")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


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


# One client per event loop and configuration: an HTTP pool belongs to the loop it was
# created on, and tests start servers on new ports under new loops.
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = weakref.WeakKeyDictionary()


def base_url() -> str:
    """Return the configured provider's URL, or the embedded development LLM's."""
    if settings.LLM_BASE_URL:
        return settings.LLM_BASE_URL
    from .devllm import embedded_base_url

    return embedded_base_url()


CHAT_PATH = "/chat/completions"


class _Client(openai.AsyncOpenAI):
    """The SDK's client, which builds a chat-completions request from its constant part.

    For each request the SDK merges its base URL, headers (credentials, its platform
    headers), query and timeouts again, through pydantic and httpx: 0.15 ms of CPU
    that every reply paid before its first token, for the same result each time. Here
    the first such request's build (the SDK's own ``_build_request``) is kept and later
    ones are that with their body; any request with options of its own (headers,
    query, timeout, a retry) is built by the SDK as before. tests/chat/test_llm_client.py
    checks that both builds give the same request.
    """

    _template: tuple | None = None

    def _build_request(self, options, *, retries_taken=0):
        if not (
            retries_taken == 0
            and options.url == CHAT_PATH
            and options.method == "post"
            and isinstance(options.content, bytes)
            and options.json_data is None
            and not options.params
            and isinstance(options.headers, openai.NotGiven)
            and isinstance(options.timeout, openai.NotGiven)
            and options.files is None
            and options.extra_json is None
            and not self._idempotency_header
        ):
            return super()._build_request(options, retries_taken=retries_taken)
        template = self._template
        if template is None or template[0] != self.api_key:
            built = super()._build_request(options.model_copy(update={"content": b""}))
            headers = [(k, v) for k, v in built.headers.raw if k.lower() != b"content-length"]
            template = self._template = (self.api_key, built.url, headers, built.extensions)
        _, url, headers, extensions = template
        return httpx2.Request(
            "POST", url, headers=headers, content=options.content, extensions=dict(extensions)
        )


def _body(body: dict) -> bytes:
    """Return ``body`` as JSON (orjson; the standard library's escapes for text orjson
    refuses, such as a lone surrogate)."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body).encode()


def client() -> openai.AsyncOpenAI:
    """Return the AsyncOpenAI client for the running loop and the current settings."""
    loop = asyncio.get_running_loop()
    key = (base_url(), settings.OPENAI_API_KEY, float(settings.LLM_TIMEOUT))
    per_loop = _clients.setdefault(loop, {})
    found = per_loop.get(key)
    if found is None:
        found = _Client(
            base_url=key[0],
            api_key=key[1] or "not-needed",
            timeout=openai.Timeout(key[2], connect=min(key[2], 10.0)),
            # A retried stream would repeat tokens already shown; the user retries instead.
            max_retries=0,
            # The SDK's aiohttp transport: its C parser hands over whatever bytes have
            # arrived, where the default client's pure-Python HTTP stack (h11, httpcore)
            # passed each of a stream's chunks through five layers of generators (half
            # the relay's CPU in a py-spy profile).
            http_client=openai.DefaultAioHttpClient(),
        )
        per_loop[key] = found
    return found


MODELS_CACHE_KEY = "parlor:llm-models"
# Seconds a provider that could not list its models is left alone: every chat page asks
# for the list, and must not wait on a provider that hangs each time.
MODELS_RETRY_SECONDS = 30


def available_llms() -> list[str]:
    """Return the LLMs people may pick: the provider's (``GET /v1/models``), limited to
    LLM_MODELS when it is set, LLM_MODEL always first; cached LLM_MODELS_CACHE seconds.

    Sync (the views' and the services' checks). A provider that cannot list its models
    (unreachable, or no such endpoint) leaves LLM_MODEL and the allow-list, kept
    MODELS_RETRY_SECONDS before it is asked again.
    """
    from django.core.cache import cache

    key = f"{MODELS_CACHE_KEY}:{base_url()}"
    listed = cache.get(key)
    if listed is None:
        try:
            with openai.OpenAI(
                base_url=base_url(),
                api_key=settings.OPENAI_API_KEY or "not-needed",
                timeout=min(float(settings.LLM_TIMEOUT), 5.0),
                max_retries=0,
            ) as sync_client:
                listed = sorted(model.id for model in sync_client.models.list())
            cache.set(key, listed, settings.LLM_MODELS_CACHE)
        except openai.OpenAIError as exc:
            logger.warning("the LLM provider did not list its models: %s", type(exc).__name__)
            listed = list(settings.LLM_MODELS)
            cache.set(key, listed, min(MODELS_RETRY_SECONDS, settings.LLM_MODELS_CACHE))
    allowed = settings.LLM_MODELS
    names = [name for name in listed if not allowed or name in allowed]
    default = settings.LLM_MODEL
    return [default, *(name for name in names if name != default)]


def _unreachable(exc: BaseException) -> bool:
    """Return whether ``exc`` was caused by failing to connect at all (refused, no route).

    The SDK's aiohttp transport reports a refused connection as a connect *timeout*.
    """
    seen = 0
    while exc is not None and seen < 6:
        if isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def failure(exc: BaseException) -> LLMError:
    """Return the LLMError for an upstream failure: a generic reason; the detail is logged."""
    if isinstance(exc, LLMError):
        return exc
    if _unreachable(exc):
        return LLMError("The language model could not be reached.", "unreachable")
    if isinstance(exc, openai.APITimeoutError) or "Timeout" in type(exc).__name__:
        return LLMError(
            f"The language model did not answer within {settings.LLM_TIMEOUT:g} seconds.",
            "timeout",
        )
    if isinstance(exc, openai.APIConnectionError):
        return LLMError("The language model could not be reached.", "unreachable")
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error", body)
        kind = error.get("type") or error.get("code") if isinstance(error, dict) else None
        logger.warning("LLM answered HTTP %s (%s)", exc.status_code, kind or "no type")
        if exc.status_code == 429:
            reason = "The language model is busy (rate limited); please try again shortly."
        elif exc.status_code in (401, 403):
            reason = "The language model refused the server's credentials."
        elif exc.status_code == 404:
            reason = "The language model does not offer the model this conversation uses."
        else:
            reason = f"The language model answered with an error (HTTP {exc.status_code})."
        return LLMError(reason, "status")
    if isinstance(exc, ValueError | openai.APIResponseValidationError):
        return LLMError(MALFORMED, "malformed")
    logger.warning("LLM request failed: %s", type(exc).__name__)
    return LLMError("The connection to the language model broke off.", "broken")


def _chunk(payload: bytes) -> dict:
    """Parse one SSE ``data:`` payload; text the database cannot store becomes U+FFFD."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        # orjson refuses lone surrogate escapes ("\ud83d": a tokenizer cut an emoji) and
        # bytes that are not UTF-8; decode leniently and let clean_text mend the strings.
        try:
            return clean_json(json.loads(payload.decode("utf-8", "replace")))
        except (ValueError, RecursionError):
            raise LLMError(MALFORMED, "malformed") from None


def _stream_error(data: dict) -> LLMError:
    error = data.get("error")
    kind = error.get("type") or error.get("code") if isinstance(error, dict) else None
    logger.warning("LLM stream reported an error (%s)", kind or "no type")
    return LLMError("The language model reported an error while answering.", "status")


class _Reader:
    """The state of one streamed answer: SSE lines in, text, tool calls and usage out."""

    def __init__(self):
        self.tail = b""
        self.calls: dict[int, ToolCall] = {}
        self.usage: Usage | None = None
        self.done = False
        self.error: LLMError | None = None

    def feed(self, data: bytes) -> str:
        """Take the bytes of one network read; return the text they complete.

        A chunk that fails leaves its error in ``error``, after the text before it.
        """
        if self.tail:
            data = self.tail + data
        lines = data.split(b"\n")
        self.tail = lines.pop()
        texts = []
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, event names
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                break
            if payload:
                try:
                    self._chunk(payload, texts)
                except (LLMError, AttributeError, TypeError, KeyError) as exc:
                    # A chunk of an unexpected shape (a list where an object belongs, say).
                    self.error = (
                        exc if isinstance(exc, LLMError) else LLMError(MALFORMED, "malformed")
                    )
                    break
        return "".join(texts)

    def _chunk(self, payload: bytes, texts: list[str]) -> None:
        data = _chunk(payload)
        if not isinstance(data, dict):
            raise LLMError(MALFORMED, "malformed")
        if "error" in data:
            raise _stream_error(data)
        usage = data.get("usage")
        if usage:
            self.usage = Usage(
                prompt_tokens=usage.get("prompt_tokens") or 0,
                completion_tokens=usage.get("completion_tokens") or 0,
            )
        for choice in data.get("choices") or ():
            delta = choice.get("delta")
            if not delta:
                continue
            text = delta.get("content")
            if text:
                texts.append(clean_text(text) if "\x00" in text else text)
            for call in delta.get("tool_calls") or ():
                entry = self.calls.setdefault(call.get("index", 0), ToolCall(id="", name=""))
                if call.get("id"):
                    entry.id = call["id"]
                function = call.get("function") or {}
                entry.name += function.get("name") or ""
                entry.arguments += clean_text(function.get("arguments") or "")


async def _post(body: dict, *, stream: bool) -> httpx2.Response:
    """POST ``body`` to the provider's chat completions through the SDK; return the raw
    HTTP response (its body unread when ``stream``).

    The SDK's documented way to make a request of one's own (``client.post`` with
    ``cast_to=httpx.Response``): its base URL, credentials, headers, timeouts and status
    errors, without ``create()``'s per-request transform of the parameters and typed
    response wrapper (a quarter of the SDK's CPU per request, which a reply pays before
    its first token). The body goes out as given (as ``create(extra_body=...)`` sends
    it), as JSON bytes from orjson; ``_Client`` builds the request from its constant part.
    """
    return await client().post(
        CHAT_PATH, cast_to=httpx2.Response, content=_body(body), stream=stream
    )


async def stream_chat(
    *, messages: list[dict], model: str, tools: list | None = None, extra_body=None
) -> AsyncIterator[StreamEvent]:
    """Yield the reply of the LLM as it streams; raise LLMError on any upstream failure.

    One text event per network read (however many chunks it held), then the usage and
    the tool calls. Closing the generator (``aclosing``, or cancelling the task iterating
    it) closes the upstream HTTP stream.
    """
    body = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if tools:
        body["tools"] = tools
    if extra_body:
        body.update(extra_body)
    reader = _Reader()
    response = None
    try:
        response = await _post(body, stream=True)
        async for data in response.aiter_bytes():
            text = reader.feed(data)
            if text:
                yield StreamEvent(text=text)
            if reader.error is not None:
                raise reader.error
            if reader.done:
                break
        if reader.tail and not reader.done:
            text = reader.feed(b"\n")
            if text:
                yield StreamEvent(text=text)
            if reader.error is not None:
                raise reader.error
    except (asyncio.CancelledError, GeneratorExit, LLMError):
        raise
    except (openai.APIConnectionError, httpx2.TransportError) as exc:
        if response is None or isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
            raise failure(exc) from exc
        raise LLMError("The connection to the language model broke off mid-reply.") from exc
    except Exception as exc:
        raise failure(exc) from exc
    finally:
        if response is not None:
            await response.aclose()  # back to the pool, or closed if cut off mid-stream
    if reader.usage is not None:
        yield StreamEvent(usage=reader.usage)
    if reader.calls:
        yield StreamEvent(tool_calls=[reader.calls[index] for index in sorted(reader.calls)])


async def complete(*, messages: list[dict], model: str, max_tokens: int = 200) -> str:
    """Return the LLM's whole (non-streamed) answer, cleaned; raise LLMError on failure."""
    try:
        body = {"model": model, "messages": messages, "max_tokens": max_tokens}
        data = _chunk((await _post(body, stream=False)).content)
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise LLMError("The language model sent an empty answer.", "malformed")
        content = (choices[0].get("message") or {}).get("content") or ""
    except (asyncio.CancelledError, LLMError):
        raise
    except Exception as exc:
        raise failure(exc) from exc
    if not isinstance(content, str):
        raise LLMError(MALFORMED, "malformed")
    return clean_text(content)


async def aclose() -> None:
    """Close the running loop's clients and their pooled connections (a server's
    shutdown; a test's loop before it ends)."""
    for found in _clients.pop(asyncio.get_running_loop(), {}).values():
        await found.close()
