"""The development LLM as an HTTP server: OpenAI's wire format, knobs, concurrency."""

import asyncio
import json
import os
import subprocess
import sys
import time

import aiohttp
import pytest
from django.conf import settings

from chat.devllm import free_port


async def post(base_url, body):
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base_url}/chat/completions", json=body) as response,
    ):
        return response.status, response.headers.get("Content-Type", ""), await response.read()


def sse_payloads(raw: bytes) -> list:
    blocks = [b for b in raw.decode().split("\n\n") if b]
    assert all(b.startswith("data: ") for b in blocks)
    return [b[6:] for b in blocks]


async def test_models_lists_the_dev_model(dev_llm):
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{dev_llm.base_url}/models") as response,
    ):
        body = await response.json()
    assert body["data"][0]["id"] == "parlor-dev"


async def test_streaming_uses_openai_chunks_with_a_final_usage_chunk(dev_llm):
    status, content_type, raw = await post(
        dev_llm.base_url,
        {
            "model": "parlor-dev",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hi"}],
            "parlor": {"tokens": 5},
        },
    )
    payloads = sse_payloads(raw)
    assert (status, content_type) == (200, "text/event-stream")
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert len(text.split()) == 5


async def test_non_streaming_answer_and_bad_request(dev_llm):
    status, _, raw = await post(
        dev_llm.base_url, {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    )
    body = json.loads(raw)
    assert status == 200 and body["object"] == "chat.completion"
    assert body["usage"]["completion_tokens"] == len(
        body["choices"][0]["message"]["content"].split()
    )
    status, _, raw = await post(dev_llm.base_url, {"model": "m", "messages": "nope"})
    assert status == 400 and "messages must be a list" in json.loads(raw)["error"]["message"]


async def test_summary_and_configuration_come_from_the_prompt(dev_llm):
    _, _, raw = await post(
        dev_llm.base_url,
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Config:\n- Name: Alpha\n- Style: swing"},
                {"role": "user", "content": "How are you configured?"},
            ],
        },
    )
    answer = json.loads(raw)["choices"][0]["message"]["content"]
    assert answer.endswith("- Name: Alpha\n- Style: swing\n")
    _, _, raw = await post(
        dev_llm.base_url,
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Summarize the conversation below."},
                {"role": "user", "content": "user: what about hedging\nassistant: ok"},
            ],
        },
    )
    summary = json.loads(raw)["choices"][0]["message"]["content"]
    assert summary == "Summary of the conversation so far: the user asked about what about hedging."


async def test_two_hundred_concurrent_streams_all_complete(dev_llm):
    body = {
        "model": "m",
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
        "parlor": {"tokens": 20, "token_ms": 1},
    }
    completed = dev_llm.stats.completed
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one():
            async with http.post(f"{dev_llm.base_url}/chat/completions", json=body) as response:
                return (await response.read()).endswith(b"data: [DONE]\n\n")

        results = await asyncio.gather(*(one() for _ in range(200)))
    assert all(results)
    assert dev_llm.stats.completed - completed == 200


def test_llm_devserver_command_serves_http():
    port = free_port()
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings.test")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "llm_devserver", "--port", str(port), "--tokens", "7"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        body = None
        deadline = time.monotonic() + 20
        while body is None and time.monotonic() < deadline:
            try:
                body = asyncio.run(
                    post(
                        f"http://127.0.0.1:{port}/v1",
                        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                    )
                )
            except aiohttp.ClientConnectionError:
                time.sleep(0.1)
        assert body is not None, process.stdout.read1().decode() if process.poll() else ""
        answer = json.loads(body[2])
        assert answer["usage"]["completion_tokens"] == 7
    finally:
        process.terminate()
        process.wait(10)


def test_llm_devserver_command_refuses_bad_options():
    result = subprocess.run(
        [sys.executable, "manage.py", "llm_devserver", "--tokens", "0"],
        cwd=settings.BASE_DIR,
        env=dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings.test"),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert b"--tokens must be >= 1" in result.stderr


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
