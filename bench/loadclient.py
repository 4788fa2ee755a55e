"""Load client for streamed chat replies over SSE (aiohttp), the peer kit's logic in-tree.

The same measurement as ``../shared/peers/stream_client.py`` (kept here so the bench is
self-contained), for two protocols:

- ``openai``: ``POST /v1/chat/completions`` with ``stream: true`` on the upstream directly;
  tokens are chunks whose ``choices[0].delta.content`` is not empty;
- ``parlor``: Parlor's ``POST /api/chat/stream`` (``{"message", "session"}``, bearer token),
  ``data: {json}`` events of type session/token/done/error (SPEC 4.2); a ``token`` event may
  carry several tokens.

``closed_loop`` sends ``requests`` requests with at most ``concurrency`` in flight and
records per request the time to the first content token (TTFT), the total time and the
tokens received; tokens are counted as the fake upstream's ``tokN`` words in the joined
text, so a relay that coalesces chunks is counted right. It returns p50/p95/p99 (linear
interpolation, as the peer kit), tokens/s over the wall time of the timed phase, and the CPU
milliseconds per request of each watched process tree, from ``/proc``.

By hand: ``python -m bench.loadclient --protocol parlor --base-url http://127.0.0.1:8000
--path /api/chat/stream -H "Authorization: Bearer $TOKEN" -c 50 -n 500``.
"""

import argparse
import asyncio
import json
import os
import re
import statistics
import time
import uuid

import aiohttp

TOK_RE = re.compile(r"tok\d+")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> float:
    """utime+stime (s) of a process and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rfind(")") + 2 :].split()
        pid, ppid = int(d), int(rest[1])
        children.setdefault(ppid, []).append(pid)
        cpu[pid] = (int(rest[11]) + int(rest[12])) / CLK_TCK
    total, stack = 0.0, [root]
    while stack:
        p = stack.pop()
        total += cpu.get(p, 0.0)
        stack.extend(children.get(p, []))
    return total


def tree_pids(root: int) -> list[int]:
    """The pids of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        children.setdefault(int(st[st.rfind(")") + 2 :].split()[1]), []).append(int(d))
    out, stack = [], [root]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(children.get(p, []))
    return out


def process_cpu_s(pid: int) -> float:
    """utime+stime (s) of one process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return 0.0
    rest = st[st.rfind(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def pct(values, q):
    """Percentile ``q`` (0-100) with linear interpolation, as the peer kit computes it."""
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


async def one_request(session, url, headers, body, timeout, protocol="openai", conv=None):
    """Send one streamed request; return its record (ttft, total in seconds; tokens)."""
    if protocol == "parlor":
        # A new conversation (client-chosen UUID) unless one is given.
        body = {"message": body["messages"][0]["content"], "session": conv or str(uuid.uuid4())}
    rec = {
        "ok": False,
        "ttft": None,
        "session_event": None,
        "total": None,
        "chunks": 0,
        "words": 0,
        "status": None,
        "error": None,
    }
    t0 = time.perf_counter()
    text_parts = []
    done = False
    message = None
    try:
        async with session.post(url, json=body, headers=headers, timeout=timeout) as resp:
            rec["status"] = resp.status
            if resp.status != 200:
                rec["error"] = f"HTTP {resp.status}: {(await resp.text())[:200]}"
                return rec
            buf = b""
            async for data in resp.content.iter_any():
                buf += data
                while True:
                    # SSE events are separated by blank lines; handle \n and \r\n.
                    i = buf.find(b"\n")
                    if i < 0:
                        break
                    line = buf[:i].rstrip(b"\r")
                    buf = buf[i + 1 :]
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        done = True
                        continue
                    try:
                        obj = json.loads(payload)
                    except ValueError:
                        continue
                    if protocol == "parlor":
                        kind = obj.get("type")
                        if kind == "session":
                            message = obj.get("message")
                            rec["session_event"] = time.perf_counter() - t0
                            continue
                        mine = message is None or obj.get("message") in (None, message)
                        if kind in ("done", "error") and mine:
                            done = kind == "done"
                            if kind == "error":
                                rec["error"] = f"error event: {obj.get('error')}"[:200]
                            continue
                        content = obj.get("content") if kind == "token" and mine else None
                    else:
                        choices = obj.get("choices") or []
                        if not choices:
                            continue
                        content = (choices[0].get("delta") or {}).get("content")
                    if content:
                        if rec["ttft"] is None:
                            rec["ttft"] = time.perf_counter() - t0
                        rec["chunks"] += 1
                        text_parts.append(content)
        rec["total"] = time.perf_counter() - t0
        rec["words"] = len(TOK_RE.findall("".join(text_parts)))
        rec["done"] = done
        rec["ok"] = rec["ttft"] is not None and (done or protocol == "openai")
        if not rec["ok"] and not rec["error"]:
            rec["error"] = (
                "no content tokens" if rec["ttft"] is None else "stream ended without done"
            )
    except Exception as e:  # noqa: BLE001 - the benchmark records every failure
        rec["error"] = f"{type(e).__name__}: {e}"[:200]
        rec["total"] = time.perf_counter() - t0
    return rec


async def closed_loop(
    *,
    url: str,
    headers: dict | None = None,
    protocol: str = "openai",
    concurrency: int = 1,
    requests: int = 20,
    prompt: str = "Say something.",
    model: str = "fake-model",
    reuse_conversations: bool = False,
    watch: dict[str, int] | None = None,
    warmup: int = 2,
    timeout: float = 60.0,
    label: str = "",
    title_settle: float = 1.0,
    max_seconds: float | None = None,
    conversations: list[str] | None = None,
    identities: list[dict] | None = None,
) -> dict:
    """Run one closed-loop load and return its summary (see the module docstring).

    With ``max_seconds``, no request starts after that many seconds of the timed phase
    (those in flight finish): a slow server gets fewer requests, not a longer run.
    ``conversations``: existing conversations for the slots (``reuse_conversations``),
    made with ``create_conversations``, instead of new ones made before timing.
    ``identities``: headers (a user's token) that the requests in flight take one each,
    so that ``concurrency`` clients are as many users; by default all share ``headers``.
    """
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": prompt}]}
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    connector = aiohttp.TCPConnector(limit=max(concurrency, 1) * 2, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(warmup):
            await one_request(session, url, all_headers, body, client_timeout, protocol)
        results: list[dict] = []
        convs: asyncio.Queue = asyncio.Queue()
        if reuse_conversations and conversations:
            for c in conversations[:concurrency]:
                convs.put_nowait(c)
        elif reuse_conversations:
            # One conversation per concurrent slot, created (first message, title) before timing.
            ids = [str(uuid.uuid4()) for _ in range(concurrency)]
            created = await asyncio.gather(
                *(
                    one_request(session, url, all_headers, body, client_timeout, protocol, c)
                    for c in ids
                )
            )
            failed = [r["error"] for r in created if not r["ok"]]
            if failed:
                raise RuntimeError(f"creating the conversations failed: {failed[0]}")
            await asyncio.sleep(title_settle)  # let the title jobs finish
            for c in ids:
                convs.put_nowait(c)
        sem = asyncio.Semaphore(concurrency)

        deadline = None

        who: asyncio.Queue = asyncio.Queue()
        for extra in identities or ():
            who.put_nowait({**all_headers, **extra})

        async def worker():
            async with sem:
                if deadline is not None and time.perf_counter() > deadline:
                    return
                conv = await convs.get() if reuse_conversations else None
                sender = await who.get() if identities else all_headers
                results.append(
                    await one_request(session, url, sender, body, client_timeout, protocol, conv)
                )
                if identities:
                    who.put_nowait(sender)
                if conv:
                    convs.put_nowait(conv)

        watch = watch or {}
        cpu0 = {name: tree_cpu_s(pid) for name, pid in watch.items()}
        t0 = time.perf_counter()
        if max_seconds:
            deadline = t0 + max_seconds
        await asyncio.gather(*(worker() for _ in range(requests)))
        wall = time.perf_counter() - t0
        cpu = {name: tree_cpu_s(pid) - cpu0[name] for name, pid in watch.items()}
    out = summarize(results, wall, cpu, label=label, url=url, concurrency=concurrency)
    out["requests_planned"] = requests
    return out


async def create_conversations(
    *, url: str, headers: dict, count: int, prompt: str = "Say something.", settle: float = 1.0
) -> list[str]:
    """Start ``count`` conversations at once (first message and title), return their ids."""
    all_headers = {"Content-Type": "application/json", **headers}
    body = {"messages": [{"role": "user", "content": prompt}]}
    ids = [str(uuid.uuid4()) for _ in range(count)]
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=max(count, 1) * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        created = await asyncio.gather(
            *(one_request(session, url, all_headers, body, timeout, "parlor", c) for c in ids)
        )
    failed = [r["error"] for r in created if not r["ok"]]
    if failed:
        raise RuntimeError(f"creating the conversations failed: {failed[0]}")
    await asyncio.sleep(settle)  # let the title jobs finish
    return ids


def _round(value):
    """Two decimals; None instead of NaN (no samples), so the report stays valid JSON."""
    return None if value != value else round(value, 2)


def summarize(results, wall, cpu, *, label="", url="", concurrency=1) -> dict:
    ok = [r for r in results if r["ok"]]
    errs = [r for r in results if not r["ok"]]
    ttft = [r["ttft"] * 1000 for r in ok]
    total = [r["total"] * 1000 for r in ok]
    session_event = [r["session_event"] * 1000 for r in ok if r.get("session_event") is not None]
    chunks = sum(r["chunks"] for r in ok)
    words = sum(r["words"] for r in ok)
    per_req_tps = [r["words"] / r["total"] for r in ok if r["total"]]
    n = len(results)
    out = {
        "label": label,
        "url": url,
        "concurrency": concurrency,
        "requests": n,
        "ok": len(ok),
        "errors": len(errs),
        "wall_s": round(wall, 3),
        "ttft_ms_p50": _round(pct(ttft, 50)),
        "ttft_ms_p95": _round(pct(ttft, 95)),
        "ttft_ms_p99": _round(pct(ttft, 99)),
        "total_ms_p50": _round(pct(total, 50)),
        "total_ms_p95": _round(pct(total, 95)),
        "tokens_total": words,
        "tokens_per_req_mean": round(words / len(ok), 1) if ok else 0,
        "chunks_per_req_mean": round(chunks / len(ok), 1) if ok else 0,
        "tokens_per_s": round(words / wall, 1) if wall else 0,
        "chunks_per_s": round(chunks / wall, 1) if wall else 0,
        "per_req_tokens_per_s_p50": round(statistics.median(per_req_tps), 1) if per_req_tps else 0,
        "req_per_s": round(len(ok) / wall, 2) if wall else 0,
        "cpu_s": {name: round(c, 3) for name, c in cpu.items()},
        "cpu_ms_per_req": {name: round(1000 * c / n, 2) if n else None for name, c in cpu.items()},
        "error_samples": sorted({r["error"] for r in errs if r["error"]})[:5],
    }
    if session_event:
        out["session_event_ms_p50"] = _round(pct(session_event, 50))
        out["session_event_ms_p95"] = _round(pct(session_event, 95))
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--base-url", default="http://127.0.0.1:8900")
    p.add_argument("--path", default="/v1/chat/completions")
    p.add_argument("-H", "--header", action="append", help='extra header "Name: value"')
    p.add_argument("--model", default="fake-model")
    p.add_argument("--prompt", default="Say something.")
    p.add_argument("-c", "--concurrency", type=int, default=1)
    p.add_argument("-n", "--requests", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reuse-conversations", action="store_true")
    p.add_argument("--protocol", choices=["openai", "parlor"], default="openai")
    p.add_argument("--watch-pid", type=int, action="append", default=[])
    args = p.parse_args()
    headers = {}
    for h in args.header or []:
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()
    summary = asyncio.run(
        closed_loop(
            url=args.base_url.rstrip("/") + args.path,
            headers=headers,
            protocol=args.protocol,
            concurrency=args.concurrency,
            requests=args.requests,
            prompt=args.prompt,
            model=args.model,
            reuse_conversations=args.reuse_conversations,
            watch={str(pid): pid for pid in args.watch_pid},
            warmup=args.warmup,
        )
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
