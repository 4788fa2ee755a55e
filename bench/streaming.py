"""WebSocket relay figures (``/ws/chat/``, ``?token=`` auth) against the upstream directly.

Runs against a started server and the bench's fake upstream (``bench.__main__`` starts
them); the baseline is the same request sent to the upstream directly with the bench's
SSE load client logic (``bench.loadclient``), in the same run, with the same pattern.
Per-request speeds are ``[dev:…]`` hints in the message, which the fake upstream honours.
Percentiles are the load client's (linear interpolation); figures are medians over rounds.

1. ``one_stream``: one socket, 200-token replies with no delay, one at a time, Parlor and
   direct interleaved, rotating over 5 conversations created before timing. TTFT through
   Parlor runs from sending the ``send`` frame to the first ``token`` event with content;
   directly, from the POST to the first chunk with content.
2. ``streams_200``: 200 sockets, each its own user and conversation. ``burst``: all send
   their first message at once (200 new conversations and title jobs; once). Then per
   round every socket sends one message (50 tokens at 40 ms/token, a 2 s reply) after a
   random pause up to one reply's length, so ~200 streams are in flight; direct gets 200
   concurrent requests with the same pattern. Added TTFT p95 over direct.
3. ``throughput``: 100 sockets at once, 200-token replies with no delay; tokens (``tokN``
   words) relayed per second of wall time vs the same 100 requests directly, and server
   CPU milliseconds per reply.
"""

import asyncio
import json
import random
import time
import uuid

import aiohttp

from bench import loadclient
from bench.loadclient import TOK_RE, pct, tree_cpu_s

ONE_STREAM_REPLIES = 30
ONE_STREAM_SESSIONS = 5
STREAMS = 200
STREAM_TOKEN_MS = 40
STREAM_TOKENS = 50
THROUGHPUT_STREAMS = 100
PHASE_TIMEOUT = 120.0
TARGETS = {
    "added_ttft_p50_ms": 5.0,
    "added_ttft_p95_ms": 10.0,
    "added_ttft_p95_ms_200_streams": 100.0,
    "relayed_over_direct": 0.8,
}


def _summary(samples_ms: list[float]) -> dict:
    return {
        "n": len(samples_ms),
        "p50_ms": round(pct(samples_ms, 50), 2),
        "p95_ms": round(pct(samples_ms, 95), 2),
        "max_ms": round(max(samples_ms), 2) if samples_ms else None,
    }


def _median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return round(values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2, 2)


def _medians(rounds: list[dict]) -> dict:
    return {
        "p50_ms": _median([r["p50_ms"] for r in rounds]),
        "p95_ms": _median([r["p95_ms"] for r in rounds]),
        "per_round": [{"p50_ms": r["p50_ms"], "p95_ms": r["p95_ms"]} for r in rounds],
    }


def _added(parlor: dict, direct: dict) -> dict:
    def ratio(a, b):
        return round(a / b, 3) if a is not None and b else None

    return {
        "p50_ms": round(parlor["p50_ms"] - direct["p50_ms"], 2),
        "p95_ms": round(parlor["p95_ms"] - direct["p95_ms"], 2),
        "ratio_p50": ratio(parlor["p50_ms"], direct["p50_ms"]),
        "ratio_p95": ratio(parlor["p95_ms"], direct["p95_ms"]),
    }


class _Socket:
    """One WebSocket client of /ws/chat/."""

    def __init__(self, url: str, origin: str):
        self.url = url
        self.origin = origin
        self.ws = None

    async def open(self) -> "_Socket":
        from websockets.asyncio.client import connect

        self.ws = await connect(
            self.url, origin=self.origin, max_size=None, ping_interval=None, open_timeout=60
        )
        return self

    async def reply(self, session: str, content: str) -> dict:
        """Send one message; return TTFT, the ``session`` event time and tokens relayed."""
        started = time.perf_counter()
        await self.ws.send(json.dumps({"type": "send", "session": session, "content": content}))
        first = None
        stored = None
        message = None
        parts: list[str] = []
        events = 0
        while True:
            event = json.loads(await self.ws.recv())
            kind = event.get("type")
            if event.get("session") not in (None, session):
                continue
            mine = message is None or event.get("message") in (None, message)
            if kind == "session":
                message = event.get("message")
                stored = time.perf_counter()
            elif kind == "token" and mine:
                text = event.get("content") or ""
                if text:
                    events += 1
                    if first is None:
                        first = time.perf_counter()
                    parts.append(text)
            elif kind == "done" and mine:
                end = time.perf_counter()
                text = "".join(parts)
                return {
                    "ttft_ms": ((first or end) - started) * 1000,
                    "session_ms": ((stored or started) - started) * 1000,
                    "tokens": len(TOK_RE.findall(text)),
                    "token_events": events,
                    "chars": len(text),
                    "length": event.get("length"),
                    "end": end,
                }
            elif kind == "error" and (mine or event.get("session") is None):
                raise RuntimeError(f"Parlor answered an error: {event}")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


class _Direct:
    """The same requests sent to the upstream directly, with the load client's logic."""

    def __init__(self, upstream_url: str, connections: int):
        self.url = f"{upstream_url}/chat/completions"
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections * 2))
        self.timeout = aiohttp.ClientTimeout(total=120)

    async def reply(self, content: str) -> dict:
        body = {
            "model": "fake-model",
            "stream": True,
            "messages": [{"role": "user", "content": content}],
        }
        rec = await loadclient.one_request(
            self.session, self.url, {"Content-Type": "application/json"}, body, self.timeout
        )
        if not rec["ok"]:
            raise RuntimeError(f"direct request failed: {rec['error']}")
        return {
            "ttft_ms": rec["ttft"] * 1000,
            "tokens": rec["words"],
            "end": time.perf_counter(),
        }

    async def close(self) -> None:
        await self.session.close()


async def _open_all(url: str, origin: str, tokens: list[str]) -> list[_Socket]:
    sockets = []
    # Open in batches: 200 handshakes at once would measure the accept queue, not relaying.
    for i in range(0, len(tokens), 50):
        sockets += await asyncio.gather(
            *(_Socket(f"{url}?token={t}", origin).open() for t in tokens[i : i + 50])
        )
    return sockets


def _out_of_budget(started: float, budget: float | None, r: int, rounds: int, log, name) -> bool:
    """True (and say so) when a part has used its time budget before its last round."""
    if budget and r + 1 < rounds and time.perf_counter() - started > budget:
        log(f"  {name}: stopping after {r + 1} of {rounds} rounds (time budget {budget:g} s)")
        return True
    return False


async def one_stream(
    ws_url, origin, token, direct: _Direct, rounds: int, replies: int, budget=None, log=print
) -> dict:
    content = "How do streams work?"
    per_round_parlor, per_round_direct, per_round_session = [], [], []
    started = time.perf_counter()
    for r in range(rounds):
        sock = await _Socket(f"{ws_url}?token={token}", origin).open()
        try:
            sessions = [str(uuid.uuid4()) for _ in range(ONE_STREAM_SESSIONS)]
            for session in sessions:  # creates them (and their title jobs) before timing
                await sock.reply(session, content)
            await direct.reply(content)  # a warm connection, as Parlor's to its upstream
            await asyncio.sleep(0.5)
            parlor, stored, direct_ttft = [], [], []
            for i in range(replies):
                result = await sock.reply(sessions[i % len(sessions)], content)
                parlor.append(result["ttft_ms"])
                stored.append(result["session_ms"])
                direct_ttft.append((await direct.reply(content))["ttft_ms"])
        finally:
            await sock.close()
        per_round_parlor.append(_summary(parlor))
        per_round_session.append(_summary(stored))
        per_round_direct.append(_summary(direct_ttft))
        if _out_of_budget(started, budget, r, rounds, log, "one stream"):
            break
    p, d = _medians(per_round_parlor), _medians(per_round_direct)
    added = _added(p, d)
    return {
        "rounds": len(per_round_parlor),
        "replies_per_round": replies,
        "tokens_per_reply": 200,
        "parlor": p,
        "parlor_session_event": _medians(per_round_session),
        "direct": d,
        "added": added,
        "target_added_p50_ms": TARGETS["added_ttft_p50_ms"],
        "target_added_p95_ms": TARGETS["added_ttft_p95_ms"],
        "met": added["p50_ms"] <= TARGETS["added_ttft_p50_ms"]
        and added["p95_ms"] <= TARGETS["added_ttft_p95_ms"],
    }


async def streams_200(
    ws_url, origin, tokens, direct: _Direct, rounds, server_pid, log, budget=None
) -> dict:
    sockets = await _open_all(ws_url, origin, tokens)
    sessions = [str(uuid.uuid4()) for _ in sockets]
    out: dict = {"streams": len(sockets)}
    try:
        started = time.perf_counter()
        burst = await asyncio.gather(
            *(
                s.reply(x, "Tell me about concurrency.")
                for s, x in zip(sockets, sessions, strict=True)
            )
        )
        out["burst_first_message"] = {
            "tokens_per_reply": 200,
            "seconds": round(time.perf_counter() - started, 2),
            "parlor": _summary([r["ttft_ms"] for r in burst]),
            "parlor_session_event": _summary([r["session_ms"] for r in burst]),
        }
        log(
            f"  burst of {len(sockets)} first messages: TTFT p50 "
            f"{out['burst_first_message']['parlor']['p50_ms']} / p95 "
            f"{out['burst_first_message']['parlor']['p95_ms']} ms"
        )
        await asyncio.sleep(1.0)  # let the title jobs finish
        content = (
            f"Tell me about concurrency. [dev:token_ms={STREAM_TOKEN_MS}] "
            f"[dev:tokens={STREAM_TOKENS}]"
        )
        spread = STREAM_TOKEN_MS * STREAM_TOKENS / 1000

        async def spaced(reply):
            # Independent users: sends spread over one reply's length.
            await asyncio.sleep(random.uniform(0, spread))
            return await reply()

        parlor_rounds, direct_rounds, session_rounds, cpu_rounds, rates = [], [], [], [], []
        rounds_started = time.perf_counter()
        for r in range(rounds):
            cpu0 = tree_cpu_s(server_pid)
            t0 = time.perf_counter()
            results = await asyncio.gather(
                *(
                    spaced(lambda s=s, x=x: s.reply(x, content))
                    for s, x in zip(sockets, sessions, strict=True)
                )
            )
            elapsed = time.perf_counter() - t0
            cpu_rounds.append(1000 * (tree_cpu_s(server_pid) - cpu0) / len(results))
            rates.append(sum(x["tokens"] for x in results) / elapsed)
            direct_results = await asyncio.gather(
                *(spaced(lambda: direct.reply(content)) for _ in sockets)
            )
            parlor_rounds.append(_summary([x["ttft_ms"] for x in results]))
            session_rounds.append(_summary([x["session_ms"] for x in results]))
            direct_rounds.append(_summary([x["ttft_ms"] for x in direct_results]))
            log(
                f"  round {r + 1}/{rounds} 200 streams at {STREAM_TOKEN_MS} ms/token: Parlor "
                f"TTFT p50 {parlor_rounds[-1]['p50_ms']} / p95 {parlor_rounds[-1]['p95_ms']} ms, "
                f"direct p50 {direct_rounds[-1]['p50_ms']} / p95 {direct_rounds[-1]['p95_ms']} ms"
            )
            if _out_of_budget(rounds_started, budget, r, rounds, log, "streams"):
                break
        p, d = _medians(parlor_rounds), _medians(direct_rounds)
        added = _added(p, d)
        out.update(
            {
                "rounds": len(parlor_rounds),
                "token_ms": STREAM_TOKEN_MS,
                "tokens_per_reply": STREAM_TOKENS,
                "offered_tokens_per_second": round(len(sockets) * 1000 / STREAM_TOKEN_MS),
                "parlor": p,
                "parlor_session_event": _medians(session_rounds),
                "direct": d,
                "added": added,
                "tokens_relayed_per_second": _median(rates),
                "server_cpu_ms_per_reply": _median(cpu_rounds),
                "target_added_p95_ms": TARGETS["added_ttft_p95_ms_200_streams"],
                "met": added["p95_ms"] <= TARGETS["added_ttft_p95_ms_200_streams"],
            }
        )
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    return out


async def throughput(
    ws_url, origin, tokens, direct: _Direct, rounds, server_pid, log, budget=None
) -> dict:
    content = "Stream as fast as you can."
    sockets = await _open_all(ws_url, origin, tokens[:THROUGHPUT_STREAMS])
    sessions = [str(uuid.uuid4()) for _ in sockets]
    parlor_rates, direct_rates, cpu, complete = [], [], [], True
    try:
        # Warm-up on a short reply: the conversations exist and their titles are done.
        short = "Warm up [dev:tokens=5]"
        await asyncio.gather(*(s.reply(x, short) for s, x in zip(sockets, sessions, strict=True)))
        await asyncio.sleep(1.0)
        rounds_started = time.perf_counter()
        for r in range(rounds):
            cpu0 = tree_cpu_s(server_pid)
            t0 = time.perf_counter()
            results = await asyncio.gather(
                *(s.reply(x, content) for s, x in zip(sockets, sessions, strict=True))
            )
            elapsed = time.perf_counter() - t0
            cpu.append(1000 * (tree_cpu_s(server_pid) - cpu0) / len(results))
            parlor_rates.append(sum(x["tokens"] for x in results) / elapsed)
            complete = complete and all(x["tokens"] == 200 for x in results)
            t0 = time.perf_counter()
            direct_results = await asyncio.gather(*(direct.reply(content) for _ in sockets))
            direct_rates.append(
                sum(x["tokens"] for x in direct_results) / (time.perf_counter() - t0)
            )
            log(
                f"  round {r + 1}/{rounds} throughput over {len(sockets)} sockets: Parlor "
                f"{parlor_rates[-1]:,.0f} tokens/s, direct {direct_rates[-1]:,.0f}, "
                f"server CPU {cpu[-1]:.1f} ms/reply"
            )
            if _out_of_budget(rounds_started, budget, r, rounds, log, "throughput"):
                break
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    parlor_rate, direct_rate = _median(parlor_rates), _median(direct_rates)
    ratio = round(parlor_rate / direct_rate, 3) if direct_rate else None
    return {
        "rounds": len(parlor_rates),
        "streams": len(sockets),
        "tokens_per_reply": 200,
        "parlor_tokens_per_second": parlor_rate,
        "direct_tokens_per_second": direct_rate,
        "ratio_to_direct": ratio,
        "per_round": [
            {"parlor": round(p), "direct": round(d)}
            for p, d in zip(parlor_rates, direct_rates, strict=True)
        ],
        "every_token_relayed": complete,
        "server_cpu_ms_per_reply": _median(cpu),
        "target_ratio_to_direct": TARGETS["relayed_over_direct"],
        "met": ratio is not None and ratio >= TARGETS["relayed_over_direct"],
    }


async def ws_phase(
    *,
    server_base,
    tokens,
    upstream_url,
    server_pid,
    rounds,
    replies=ONE_STREAM_REPLIES,
    streams=STREAMS,
    budgets=None,
    log=print,
) -> dict:
    """Every WebSocket figure; a part that fails is reported with its error.

    ``tokens``: at least ``streams + 1`` bearer tokens of distinct users. ``budgets``: per
    part, seconds after which no further round starts (at least one always runs).
    """
    ws_url = server_base.replace("http://", "ws://") + "/ws/chat/"
    origin = server_base
    budgets = budgets or {}
    direct = _Direct(upstream_url, streams)
    out: dict = {}
    parts = (
        (
            "one_stream",
            lambda: one_stream(
                ws_url, origin, tokens[-1], direct, rounds, replies, budgets.get("one_stream"), log
            ),
        ),
        (
            "streams_200",
            lambda: streams_200(
                ws_url,
                origin,
                tokens[:streams],
                direct,
                rounds,
                server_pid,
                log,
                budgets.get("streams_200"),
            ),
        ),
        (
            "throughput",
            lambda: throughput(
                ws_url,
                origin,
                tokens[: min(streams, THROUGHPUT_STREAMS)],
                direct,
                rounds,
                server_pid,
                log,
                budgets.get("throughput"),
            ),
        ),
    )
    try:
        for name, part in parts:
            started = time.perf_counter()
            try:
                out[name] = await asyncio.wait_for(part(), PHASE_TIMEOUT)
            except TimeoutError:
                out[name] = {"failed": True, "error": f"timed out after {PHASE_TIMEOUT:g} s"}
            except Exception as exc:  # noqa: BLE001 - a failing part is a result
                out[name] = {"failed": True, "error": f"{type(exc).__name__}: {exc}"[:500]}
            log(f"  websocket {name}: {time.perf_counter() - started:.1f} s")
    finally:
        await direct.close()
    return out
