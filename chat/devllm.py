"""The built-in development LLM: a real OpenAI-compatible HTTP server (SPEC 5.4).

It answers ``/v1/chat/completions`` (streaming and not) and ``/v1/models`` with
deterministic replies built from what it was sent, so the embedded default, the tests and
the benchmarks all run the real SDK code path offline.

Per-request knobs, for tests and benchmarks, in the last user message (``[dev:tokens=500]``,
``[dev:token_ms=20]``, ``[dev:first_token_ms=300]``, ``[dev:fault=die]``,
``[dev:echo=context]`` — the reply is the messages it was sent, in order, each whole as
``role: content``) or in the request body's ``parlor`` object (the SDK's ``extra_body``).
Faults: ``500`` (or any 4xx/5xx code), ``die`` (the connection is cut mid-stream),
``hang`` (no answer until the client gives up), ``malformed`` (a chunk that is not JSON)
and ``odd_text`` (text a database cannot store: a NUL, half of a surrogate pair, bytes
that are not UTF-8, as byte-level tokenizers make).
"""

import asyncio
import hashlib
import json
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

# What GET /v1/models lists, so that an LLM picker is real offline; any name answers.
MODELS = ("parlor-dev", "parlor-dev-mini", "parlor-dev-large")
HINT = re.compile(r"\[dev:(\w+)=([\w.-]+)\]")
TICKER = re.compile(r"\b[A-Z]{2,5}\b")
TITLE_MARK = "reply with only a short title"
SUMMARY_MARK = "summarize the conversation"
WORDS_TEXT = (
    "A steady plan beats a clever one. Small risks add up over time, so keep notes, test "
    "ideas on paper first, measure what happened, and adjust the plan when the data says so "
    "rather than when the mood does."
)
WORDS = WORDS_TEXT.split(" ")


@dataclass
class DevConfig:
    """Server-wide defaults; every request may override them."""

    tokens: int = 60
    first_token_ms: float = 0.0
    token_ms: float = 0.0


@dataclass
class DevStats:
    """What the server saw, so tests can check it from outside the SDK."""

    requests: int = 0
    completed: int = 0
    disconnects: int = 0
    last_request: dict = field(default_factory=dict)
    # How many completions each model name was asked for.
    models: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "completed": self.completed,
            "disconnects": self.disconnects,
        }


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _options(body: dict, config: DevConfig, last_user: str) -> dict:
    options = {
        "tokens": config.tokens,
        "first_token_ms": config.first_token_ms,
        "token_ms": config.token_ms,
        "fault": "",
        "echo": "",
    }
    for key, value in HINT.findall(last_user):
        options[key] = value
    extra = body.get("parlor")
    if isinstance(extra, dict):
        options.update(extra)
    for key in ("tokens",):
        options[key] = max(1, int(float(options[key])))
    for key in ("first_token_ms", "token_ms"):
        options[key] = max(0.0, float(options[key]))
    options["fault"] = str(options["fault"] or "")
    options["echo"] = str(options["echo"] or "")
    return options


def _split(text: str) -> list[str]:
    """Split text into stream tokens: words with the whitespace that follows them."""
    return re.findall(r"\S+\s*|\s+", text)


def _configuration_reply(system: str) -> str:
    lines = [line.strip() for line in system.splitlines() if line.strip().startswith("- ")]
    if not lines:
        return "I was not given any model configuration in this conversation."
    return "This model is configured as follows:\n\n" + "\n".join(lines) + "\n"


def _title_reply(user: str) -> str:
    words = HINT.sub("", user).split()[:6]
    title = " ".join(words).strip(" ?!.,:;") or "New conversation"
    return title[:1].upper() + title[1:]


def _summary_reply(messages: list[dict]) -> str:
    points = []
    for message in messages:
        if message.get("role") != "user":
            continue
        content = _text(message.get("content"))
        for line in content.splitlines():
            if line.startswith("user: "):
                points.append(" ".join(line[6:].split()[:8]))
    points = points[-12:] or ["(nothing yet)"]
    return "Summary of the conversation so far: the user asked about " + "; ".join(points) + "."


def _default_reply(seed_text: str, tokens: int, question: str = "") -> str:
    """Return a deterministic Markdown reply of exactly ``tokens`` stream tokens.

    It quotes the question and says what this model can do, so the offline demo reads
    as an answer; deterministic filler makes up the requested length.
    """
    # The filler reads as sentences; which one it starts at depends on the prompt.
    seed = int(hashlib.sha256(seed_text.encode()).hexdigest()[:8], 16)
    starts = [0] + [i + 1 for i, word in enumerate(WORDS) if word.endswith(".")][:-1]
    start = starts[seed % len(starts)]
    words = [WORDS[(start + i) % len(WORDS)] for i in range(max(tokens, 4))]
    middle = len(words) // 2
    quote = " ".join(HINT.sub("", question).replace("*", "").replace("`", "").split())
    if len(quote) > 80:
        quote = quote[:79].rstrip() + "…"
    intro = (
        (f"You asked: *{quote}*\n\n" if quote else "")
        + "I am Parlor's built-in development model, answering offline and the same way "
        "every time. Ask me *what this model is configured for* in a model conversation, "
        "or about its *trades*, *positions* or *summary* in a run conversation.\n\n"
    )
    text = (
        "**Here is a deterministic reply.**\n\n"
        + intro
        + " ".join(words[:middle])
        + "\n\n- "
        + " ".join(words[middle:])
        + "\n- `done`"
    )
    return "".join(_split(text)[:tokens])


def _tool_call(tools: list, user: str) -> dict | None:
    names = {t.get("function", {}).get("name") for t in tools if isinstance(t, dict)}
    lowered = user.lower()
    if "get_open_positions" in names and "position" in lowered:
        return {"name": "get_open_positions", "arguments": {}}
    if "get_trades" in names and "trade" in lowered:
        arguments: dict = {}
        symbols = [s for s in TICKER.findall(user) if s not in {"I", "OK", "PNL", "P&L"}]
        if symbols:
            arguments["symbol"] = symbols[0]
        return {"name": "get_trades", "arguments": arguments}
    if "get_run_summary" in names and any(
        word in lowered for word in ("summary", "how did", "performance", "pnl", "p&l")
    ):
        return {"name": "get_run_summary", "arguments": {}}
    return None


def compose(body: dict, config: DevConfig) -> tuple[dict, dict]:
    """Return the reply (``text`` or ``tool_call``) for a request, and its options."""
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise ValueError("messages must be a list")
    system = "\n".join(_text(m.get("content")) for m in messages if m.get("role") == "system")
    users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
    last_user = users[-1] if users else ""
    options = _options(body, config, last_user)
    last = messages[-1] if messages else {}
    lowered_system = system.lower()
    if last.get("role") == "tool":
        results = []
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            results.append(_text(message.get("content")))
        text = "Here is what I found in the run's data:\n\n" + "\n".join(
            f"- {result}" for result in reversed(results)
        )
        return {"text": text}, options
    if TITLE_MARK in lowered_system:
        return {"text": _title_reply(last_user)}, options
    if SUMMARY_MARK in lowered_system:
        return {"text": _summary_reply(messages)}, options
    if options["echo"] == "context":
        # The messages it was sent, in order, each whole (SPEC 4.6): what a test needs
        # to see exactly what a reply's context held.
        return {"text": "\n".join(_echo_line(m) for m in messages)}, options
    tools = body.get("tools") or []
    if tools:
        call = _tool_call(tools, last_user)
        if call is not None:
            return {"tool_call": call}, options
    if "configur" in last_user.lower():
        return {"text": _configuration_reply(system)}, options
    return {"text": _default_reply(last_user + system, options["tokens"], last_user)}, options


def _echo_line(message: dict) -> str:
    return f"{message.get('role')}: {_text(message.get('content'))}"


def _prompt_tokens(body: dict) -> int:
    return sum(len(_text(m.get("content")).split()) for m in body.get("messages") or [])


def _chunk(cid: str, model: str, delta: dict, finish=None) -> dict:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _tool_call_payload(call: dict, cid: str) -> dict:
    return {
        "id": "call_" + cid[-12:],
        "type": "function",
        "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
    }


class DevLLM:
    """The aiohttp application and its counters."""

    def __init__(self, config: DevConfig | None = None):
        self.config = config or DevConfig()
        self.stats = DevStats()
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_get("/v1/models", self.models)
        self.app.router.add_post("/v1/chat/completions", self.completions)
        self.app.router.add_get("/_dev/stats", self.stats_view)

    async def models(self, request: web.Request) -> web.Response:
        data = [{"id": name, "object": "model", "owned_by": "dev"} for name in MODELS]
        return web.json_response({"object": "list", "data": data})

    async def stats_view(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.as_dict())

    async def completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            reply, options = compose(body, self.config)
        except (ValueError, TypeError, AttributeError) as exc:
            return web.json_response(
                {"error": {"message": f"Bad request: {exc}", "type": "invalid_request_error"}},
                status=400,
            )
        with self.stats.lock:
            self.stats.requests += 1
            self.stats.last_request = body
            self.stats.models[str(body.get("model") or "")] += 1
        fault = options["fault"]
        if fault.isdigit():
            status = int(fault)
            return web.json_response(
                {"error": {"message": f"Injected failure ({status}).", "type": "dev_fault"}},
                status=status,
            )
        if fault == "hang":
            try:
                await asyncio.sleep(3600)
            finally:
                with self.stats.lock:
                    self.stats.disconnects += 1
        model = str(body.get("model") or "parlor-dev")
        cid = (
            "chatcmpl-" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
        )
        if not body.get("stream"):
            return await self._complete(body, reply, options, cid, model)
        return await self._stream(request, body, reply, options, cid, model)

    async def _complete(self, body, reply, options, cid, model) -> web.Response:
        await asyncio.sleep(options["first_token_ms"] / 1000)
        message: dict = {"role": "assistant", "content": reply.get("text")}
        finish = "stop"
        completion = len(_split(reply.get("text") or ""))
        if "tool_call" in reply:
            message["tool_calls"] = [_tool_call_payload(reply["tool_call"], cid)]
            finish = "tool_calls"
            completion = 10
        with self.stats.lock:
            self.stats.completed += 1
        return web.json_response(
            {
                "id": cid,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {
                    "prompt_tokens": _prompt_tokens(body),
                    "completion_tokens": completion,
                    "total_tokens": _prompt_tokens(body) + completion,
                },
            }
        )

    async def _stream(self, request, body, reply, options, cid, model) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        fault = options["fault"]
        sent = 0

        async def emit(payload) -> None:
            transport = request.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("client went away")
            if isinstance(payload, bytes):
                await response.write(b"data: " + payload + b"\n\n")
                return
            data = payload if isinstance(payload, str) else json.dumps(payload)
            await response.write(f"data: {data}\n\n".encode())

        try:
            await asyncio.sleep(options["first_token_ms"] / 1000)
            await emit(_chunk(cid, model, {"role": "assistant", "content": ""}))
            if "tool_call" in reply:
                call = _tool_call_payload(reply["tool_call"], cid)
                head = {"index": 0, "id": call["id"], "type": "function"}
                head["function"] = {"name": call["function"]["name"], "arguments": ""}
                await emit(_chunk(cid, model, {"tool_calls": [head]}))
                arguments = call["function"]["arguments"]
                for part in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
                    delta = {"tool_calls": [{"index": 0, "function": {"arguments": part}}]}
                    await emit(_chunk(cid, model, delta))
                sent = 10
                finish = "tool_calls"
            elif fault == "odd_text":
                head = json.dumps(_chunk(cid, model, {"content": "@"})).encode()
                pieces = [b'"before a\\u0000b"', b'"\\ud83d"', b'"\xf0\x9f"', b'"after"']
                for piece in pieces:
                    await emit(head.replace(b'"@"', piece))
                    sent += 1
                finish = "stop"
            else:
                tokens = _split(reply["text"])
                cut = len(tokens) // 2 if fault in ("die", "malformed", "hang_mid") else None
                delay = options["token_ms"] / 1000
                for i, token in enumerate(tokens):
                    if i == cut:
                        if fault == "malformed":
                            await emit("{this is not json")
                        elif fault == "hang_mid":
                            await asyncio.sleep(3600)
                        else:
                            # Cut the connection without ending the chunked body.
                            request.transport.abort()
                            return response
                    if delay and i:
                        await asyncio.sleep(delay)
                    elif i % 64 == 63:
                        await asyncio.sleep(0)  # let other streams run between bursts
                    await emit(_chunk(cid, model, {"content": token}))
                    sent += 1
                finish = "stop"
            await emit(_chunk(cid, model, {}, finish))
            options_in = body.get("stream_options") or {}
            if isinstance(options_in, dict) and options_in.get("include_usage"):
                prompt = _prompt_tokens(body)
                usage = _chunk(cid, model, {})
                usage["choices"] = []
                usage["usage"] = {
                    "prompt_tokens": prompt,
                    "completion_tokens": sent,
                    "total_tokens": prompt + sent,
                }
                await emit(usage)
            await emit("[DONE]")
            await response.write_eof()
        except asyncio.CancelledError:
            with self.stats.lock:
                self.stats.disconnects += 1
            raise
        except ConnectionError:
            with self.stats.lock:
                self.stats.disconnects += 1
            return response
        with self.stats.lock:
            self.stats.completed += 1
        return response


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class DevLLMThread:
    """The development LLM served from a daemon thread with its own event loop."""

    def __init__(self, config: DevConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.server = DevLLM(config)
        self.host = host
        self.port = port
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._serve, name="parlor-devllm", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def stats(self) -> DevStats:
        return self.server.stats

    def start(self) -> "DevLLMThread":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the development LLM did not start")
        return self

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def setup():
            self._runner = web.AppRunner(
                self.server.app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True
            )
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
            await site.start()
            sockets = site._server.sockets  # noqa: SLF001 - the bound port when asked for 0
            self.port = sockets[0].getsockname()[1]

        self.loop.run_until_complete(setup())
        self._ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        if self._runner is None:
            return

        async def cleanup():
            await self._runner.cleanup()

        future = asyncio.run_coroutine_threadsafe(cleanup(), self.loop)
        try:
            future.result(5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)


_embedded: DevLLMThread | None = None
_embedded_lock = threading.Lock()


def embedded_base_url() -> str:
    """Start the in-process development LLM once and return its base URL."""
    global _embedded
    with _embedded_lock:
        if _embedded is None:
            _embedded = DevLLMThread(DevConfig(tokens=60, first_token_ms=150, token_ms=15)).start()
        return _embedded.base_url
