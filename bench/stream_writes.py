"""Database writes and frames of one long reply (``python -m bench.stream_writes``).

A 1,000-token reply from the development LLM over HTTP, through the real engine, with
every INSERT/UPDATE counted at the database cursor and every token frame counted on the
session's channel-layer group. Two speeds: as fast as the dev LLM can stream, and
~200 tokens/s (5 ms a token), which is faster than real providers.
"""

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOKENS = 1000


def _count_writes():
    from django.db.backends import utils

    writes: list[str] = []
    original = utils.CursorWrapper._execute_with_wrappers

    def counting(self, sql, params, many, executor):
        if sql.lstrip().upper().startswith(("UPDATE", "INSERT")):
            writes.append(sql.split('"')[1] if '"' in sql else sql[:30])
        return original(self, sql, params, many, executor)

    utils.CursorWrapper._execute_with_wrappers = counting
    return writes


async def _one_reply(user, token_ms: float, writes: list[str]) -> dict:
    from channels.db import database_sync_to_async
    from channels.layers import get_channel_layer

    from chat import engine, services

    content = f"Bench [dev:tokens={TOKENS}] [dev:token_ms={token_ms}]"
    writes.clear()
    reply = await database_sync_to_async(services.reply_start)(user=user, content=content)
    start_writes = len(writes)
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(engine.session_group(reply.session.pk), channel)
    started = time.perf_counter()
    engine.start_generation(reply)
    frames = 0
    first = None
    while True:
        event = (await layer.receive(channel))["event"]
        if event["type"] == "token":
            frames += 1
            first = first or time.perf_counter()
        if event["type"] in ("done", "error"):
            break
    elapsed = time.perf_counter() - started
    streaming = time.perf_counter() - (first or started)
    await engine.drain(10)
    generation_writes = writes[start_writes:]
    return {
        "token_ms": token_ms,
        "tokens": TOKENS,
        "seconds": round(elapsed, 3),
        "frames": frames,
        "frames_per_second": round(frames / streaming, 1) if streaming > 0 else None,
        "writes_reply_start": start_writes,
        "writes_during_generation": len(generation_writes),
        "writes_total": len(writes),
        "writes_by_table": {t: generation_writes.count(t) for t in sorted(set(generation_writes))},
        "status": event["type"],
    }


def run() -> dict:
    """Return write and frame counts of a 1,000-token reply at two speeds."""
    from django.conf import settings

    from accounts.models import User
    from chat.devllm import DevConfig, DevLLMThread

    server = DevLLMThread(DevConfig(first_token_ms=0, token_ms=0)).start()
    settings.LLM_BASE_URL = server.base_url
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    writes = _count_writes()
    user = User.objects.create_user(f"bench-stream-{time.time_ns()}", password="x")

    async def main():
        return [await _one_reply(user, token_ms, writes) for token_ms in (0, 5)]

    try:
        return {"reply_1000_tokens": asyncio.run(main())}
    finally:
        server.stop()


if __name__ == "__main__":
    from bench.__main__ import setup_django

    with tempfile.TemporaryDirectory() as tmpdir:
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        setup_django(tmpdir)
        print(json.dumps(run(), indent=2))
