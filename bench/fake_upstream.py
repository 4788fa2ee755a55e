"""The bench's upstream: a minimal OpenAI-compatible fake LLM server (aiohttp).

A copy of the peer kit's ``fake_openai.py`` (``../shared/peers/``), so Parlor's figures here
and beside Open WebUI come from the same upstream; kept in the repository so the bench is
self-contained. Differences, all opt-in or invisible to a relay:

- per-request knobs in the last user message, the development LLM's hints
  (``[dev:tokens=50]``, ``[dev:token_ms=40]``, ``[dev:first_token_ms=20]``), so one process
  serves every speed the bench needs;
- ``GET /_stats`` also counts requests by kind: ``summary`` (a system message containing
  "Summarize the conversation"), ``title`` ("Reply with only a short title"), else ``chat``.

Endpoints:
  GET  /v1/models                       (also /models)
  POST /v1/chat/completions             (also /chat/completions) stream true/false
  GET  /_stats

Each reply consists of N tokens "tok0 ", "tok1 ", ...; when streaming, every SSE chunk
carries exactly one token, followed by a final chunk with finish_reason="stop" (and usage)
and ``data: [DONE]``.

    python bench/fake_upstream.py --port 8900 --tokens 200 --token-delay-ms 0
"""

import argparse
import asyncio
import json
import os
import re
import time
import uuid

from aiohttp import web

HINT = re.compile(r"\[dev:(\w+)=([\w.-]+)\]")
SUMMARY_MARK = "summarize the conversation"
TITLE_MARK = "reply with only a short title"


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", default=os.environ.get("FAKE_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("FAKE_PORT", "8900")))
    p.add_argument("--tokens", type=int, default=int(os.environ.get("FAKE_TOKENS", "200")))
    p.add_argument(
        "--first-delay-ms", type=float, default=float(os.environ.get("FAKE_FIRST_DELAY_MS", "0"))
    )
    p.add_argument(
        "--token-delay-ms", type=float, default=float(os.environ.get("FAKE_TOKEN_DELAY_MS", "0"))
    )
    p.add_argument("--model", default=os.environ.get("FAKE_MODEL", "fake-model"))
    p.add_argument("--honor-max-tokens", action="store_true")
    a = p.parse_args(argv)
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        p.error("refusing to bind a non-loopback address")
    return a


ARGS = None
STATS = {
    "requests": 0,
    "streamed": 0,
    "active": 0,
    "by_kind": {"chat": 0, "title": 0, "summary": 0},
}


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _kind(messages) -> str:
    system = " ".join(
        _text(m.get("content"))
        for m in messages
        if isinstance(m, dict) and m.get("role") == "system"
    ).lower()
    if SUMMARY_MARK in system:
        return "summary"
    if TITLE_MARK in system:
        return "title"
    return "chat"


def _options(body, messages) -> tuple[int, float, float]:
    n = ARGS.tokens
    first = ARGS.first_delay_ms
    gap = ARGS.token_delay_ms
    users = [
        _text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"
    ]
    for key, value in HINT.findall(users[-1] if users else ""):
        try:
            if key == "tokens":
                n = max(1, int(float(value)))
            elif key == "token_ms":
                gap = max(0.0, float(value))
            elif key == "first_token_ms":
                first = max(0.0, float(value))
        except ValueError:
            pass
    if ARGS.honor_max_tokens:
        m = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(m, int) and m > 0:
            n = min(n, m)
    return n, first / 1000.0, gap / 1000.0


async def models(request):
    return web.json_response(
        {
            "object": "list",
            "data": [
                {"id": ARGS.model, "object": "model", "created": 1700000000, "owned_by": "fake"}
            ],
        }
    )


async def chat_completions(request):
    try:
        body = await request.json()
    except Exception:
        return web.json_response(
            {"error": {"message": "invalid JSON", "type": "invalid_request_error"}}, status=400
        )
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        messages = []
    STATS["requests"] += 1
    STATS["by_kind"][_kind(messages)] += 1
    n, first, gap = _options(body, messages)
    model = body.get("model") or ARGS.model
    cid = "chatcmpl-" + uuid.uuid4().hex[:24]
    created = int(time.time())
    prompt_tokens = sum(
        len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict)
    )
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": n,
        "total_tokens": prompt_tokens + n,
    }

    if not body.get("stream"):
        if first:
            await asyncio.sleep(first)
        if gap and n > 1:
            await asyncio.sleep(gap * (n - 1))
        text = "".join(f"tok{i} " for i in range(n))
        return web.json_response(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )

    STATS["streamed"] += 1
    STATS["active"] += 1
    resp = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Connection": "keep-alive",
        },
    )
    try:
        await resp.prepare(request)
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}

        def chunk(delta, finish=None, extra=None):
            d = dict(base)
            d["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
            if extra:
                d.update(extra)
            return b"data: " + json.dumps(d, separators=(",", ":")).encode() + b"\n\n"

        if first:
            await asyncio.sleep(first)
        for i in range(n):
            if i and gap:
                await asyncio.sleep(gap)
            delta = {"content": f"tok{i} "}
            if i == 0:
                delta = {"role": "assistant", "content": f"tok{i} "}
            await resp.write(chunk(delta))
        await resp.write(chunk({}, "stop", {"usage": usage}))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
    except ConnectionResetError:
        pass
    finally:
        STATS["active"] -= 1
    return resp


async def stats(request):
    return web.json_response(STATS)


def main(argv=None):
    global ARGS
    ARGS = parse_args(argv)
    app = web.Application(client_max_size=16 * 1024 * 1024)
    for prefix in ("/v1", ""):
        app.router.add_get(prefix + "/models", models)
        app.router.add_post(prefix + "/chat/completions", chat_completions)
    app.router.add_get("/_stats", stats)
    print(
        f"fake upstream on http://{ARGS.host}:{ARGS.port} tokens={ARGS.tokens} "
        f"first_delay_ms={ARGS.first_delay_ms} token_delay_ms={ARGS.token_delay_ms}",
        flush=True,
    )
    web.run_app(app, host=ARGS.host, port=ARGS.port, access_log=None, print=None, backlog=1024)


if __name__ == "__main__":
    main()
