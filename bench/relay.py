"""SSE relay figures, peer-style (issue 9): Parlor beside its upstream called directly.

Every leg is a closed loop of ``bench.loadclient`` (the peer kit's client logic): ``c``
clients at once, ``n`` requests, 200-token replies with no delay from the bench's fake
upstream. Legs of one round run back to back, interleaved, so drift on a shared machine
hits them alike; figures are medians over the rounds.

- ``direct``: the load client on the upstream's ``/v1/chat/completions`` (the limit);
- ``new``: Parlor's ``POST /api/chat/stream``, each request a new conversation;
- ``existing``: each client slot keeps sending into its own conversation, created (with
  its title) before timing;
- ``floor`` (when the peer kit's ``floor_relay.py`` is there, on PostgreSQL): the leanest
  Django relay of the same stream, which stores each reply with three writes and keeps
  no guarantee. What Parlor pays above it, on the same machine in the same rounds, is
  the price of what it guarantees; its figures also show how fast the machine is today.

Per leg: TTFT p50/p95/p99, tokens/s delivered over the wall time, and the server's CPU
milliseconds per reply (utime+stime of its whole process tree, from /proc). Ratios and
"added" milliseconds are against ``direct`` of the same rounds.
"""

import asyncio
import statistics
import time

from bench import loadclient

LEG_TIMEOUT = 90.0
KEYS = (
    "ttft_ms_p50",
    "ttft_ms_p95",
    "ttft_ms_p99",
    "total_ms_p50",
    "total_ms_p95",
    "tokens_per_s",
    "req_per_s",
    "tokens_per_req_mean",
    "chunks_per_req_mean",
    "session_event_ms_p50",
    "session_event_ms_p95",
    "machine_cpu_busy",
)


def machine_cpu() -> tuple[int, int]:
    """The machine's busy and total CPU time so far, in jiffies (``/proc/stat``)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def aggregate(runs: list[dict]) -> dict:
    """Medians over the rounds that ran, with every round's headline figures."""
    good = [r for r in runs if "error" not in r and r.get("ok")]
    # Rounds with failed requests are kept only when no round ran clean; the leg then
    # reports its errors (and does not meet its targets).
    clean = [r for r in good if not r.get("errors")]
    good = clean or good
    out: dict = {"rounds": len(good)}
    if not good:
        out["failed"] = True
        out["error"] = next(
            (r.get("error") or "; ".join(r.get("error_samples", [])) for r in runs),
            "no round ran",
        )
        return out
    for key in KEYS:
        if any(key in r for r in good):
            out[key] = median([r.get(key) for r in good])
    names = sorted({n for r in good for n in r.get("cpu_ms_per_req", {})})
    out["cpu_ms_per_req"] = {n: median([r["cpu_ms_per_req"].get(n) for r in good]) for n in names}
    out["requests_per_round"] = [r["requests"] for r in good]
    if any(r["requests"] < r.get("requests_planned", r["requests"]) for r in good):
        out["note"] = "time-boxed: fewer requests than planned in some rounds"
    out["errors"] = sum(r.get("errors", 0) for r in runs)
    samples = sorted({s for r in runs for s in r.get("error_samples", [])})
    if samples or any("error" in r for r in runs):
        out["error_samples"] = (samples + [r["error"] for r in runs if "error" in r])[:5]
    out["per_round"] = [
        {
            k: r.get(k)
            for k in ("ttft_ms_p50", "ttft_ms_p95", "tokens_per_s", "cpu_ms_per_req", "errors")
        }
        if "error" not in r
        else {"error": r["error"]}
        for r in runs
    ]
    return out


def versus(leg: dict, direct: dict) -> dict:
    """Added milliseconds and ratios of a leg's medians against direct's."""
    if leg.get("failed") or direct.get("failed"):
        return {}

    def ratio(a, b):
        return round(a / b, 3) if a is not None and b else None

    return {
        "added_ttft_p50_ms": round(leg["ttft_ms_p50"] - direct["ttft_ms_p50"], 2),
        "added_ttft_p95_ms": round(leg["ttft_ms_p95"] - direct["ttft_ms_p95"], 2),
        "ttft_p50_ratio": ratio(leg["ttft_ms_p50"], direct["ttft_ms_p50"]),
        "ttft_p95_ratio": ratio(leg["ttft_ms_p95"], direct["ttft_ms_p95"]),
        "tokens_per_s_ratio": ratio(leg["tokens_per_s"], direct["tokens_per_s"]),
    }


async def run_leg(label: str, skip: dict, **kwargs) -> dict:
    """One closed loop; a failure or timeout is recorded, never raised (a timed-out leg
    is skipped in later rounds)."""
    if label in skip:
        return {"error": skip[label]}
    try:
        return await asyncio.wait_for(loadclient.closed_loop(label=label, **kwargs), LEG_TIMEOUT)
    except TimeoutError:
        skip[label] = f"skipped: timed out after {LEG_TIMEOUT:g} s in an earlier round"
        return {"error": f"timed out after {LEG_TIMEOUT:g} s"}
    except Exception as exc:  # noqa: BLE001 - a failing leg is a result
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


async def sse_phase(
    *,
    server_base: str,
    token: str,
    upstream_url: str,
    server_pid: int,
    upstream_pid: int,
    rounds: int,
    n1: int,
    n50: int,
    warmup_n: int,
    leg_seconds: tuple[float | None, float | None] = (None, None),
    floor: tuple[str, int] | None = None,
    log=print,
) -> dict:
    """SSE at 1 and 50 clients, new and existing conversations, against direct.

    ``leg_seconds`` (1 client, 50 clients): no request of a leg starts after that long.
    ``floor``: the floor relay's base URL and pid, run as a leg of its own.
    """
    direct_url = f"{upstream_url}/chat/completions"
    sse_url = f"{server_base}/api/chat/stream"
    auth = {"Authorization": f"Bearer {token}"}
    parlor = dict(url=sse_url, headers=auth, protocol="parlor")
    direct = dict(url=direct_url, protocol="openai")
    watch_server = {"server": server_pid, "upstream": upstream_pid}
    watch_direct = {"upstream": upstream_pid}
    if floor is not None:
        floor_leg = dict(url=f"{floor[0]}/api/chat/stream", protocol="parlor")
        watch_floor = {"server": floor[1], "upstream": upstream_pid}
    legs = []
    for (c, n), limit in zip(((1, n1), (50, n50)), leg_seconds, strict=True):
        legs.append((f"direct_c{c}", dict(direct, concurrency=c, requests=n, watch=watch_direct)))
        if floor is not None:
            legs.append(
                (
                    f"floor_c{c}",
                    dict(
                        floor_leg,
                        concurrency=c,
                        requests=n,
                        watch=watch_floor,
                        max_seconds=limit,
                    ),
                )
            )
        legs += [
            (
                f"new_c{c}",
                dict(parlor, concurrency=c, requests=n, watch=watch_server, max_seconds=limit),
            ),
            (
                f"existing_c{c}",
                dict(
                    parlor,
                    concurrency=c,
                    requests=n,
                    watch=watch_server,
                    reuse_conversations=True,
                    max_seconds=limit,
                ),
            ),
        ]
    skip: dict = {}
    # Unrecorded warm-up of both paths.
    warmup = dict(concurrency=50, requests=warmup_n, max_seconds=10)
    await run_leg("warmup_direct", skip, **dict(direct, **warmup))
    if floor is not None:
        await run_leg("warmup_floor", skip, **dict(floor_leg, **warmup))
    warm = await run_leg("warmup_parlor", skip, **dict(parlor, **warmup))
    if "error" in warm or not warm.get("ok"):
        log(f"  warm-up through Parlor failed: {warm.get('error') or warm.get('error_samples')}")
    # The slots' conversations of the "existing" legs, made once (with their titles) and
    # kept over the rounds: each slot keeps sending into its own.
    for label, kwargs in legs:
        if kwargs.get("reuse_conversations"):
            try:
                kwargs["conversations"] = await loadclient.create_conversations(
                    url=sse_url, headers=auth, count=kwargs["concurrency"]
                )
            except Exception as exc:  # noqa: BLE001 - the leg fails, not the phase
                log(f"  {label}: {exc}")
                skip[label] = f"{type(exc).__name__}: {exc}"[:300]
    runs: dict[str, list] = {label: [] for label, _ in legs}
    for r in range(rounds):
        for label, kwargs in legs:
            started = time.perf_counter()
            result = await run_leg(label, skip, **kwargs)
            runs[label].append(result)
            took = time.perf_counter() - started
            log(f"  round {r + 1}/{rounds} {label}: {_line(result)} ({took:.1f} s)")
    out: dict = {}
    for c in (1, 50):
        d = aggregate(runs[f"direct_c{c}"])
        block = {"direct": d}
        kinds = ("new", "existing")
        if floor is not None:
            kinds = ("floor", *kinds)
        for kind in kinds:
            leg = aggregate(runs[f"{kind}_c{c}"])
            leg.update(versus(leg, d))
            if kind != "floor" and "floor" in block:
                leg["over_floor"] = over_floor(leg, block["floor"])
            block[kind] = leg
        out[f"c{c}"] = block
    return out


def over_floor(leg: dict, floor: dict) -> dict:
    """What a Parlor leg pays above the floor relay's leg of the same rounds."""
    if leg.get("failed") or floor.get("failed"):
        return {}
    cpu, floor_cpu = _server_cpu(leg), _server_cpu(floor)
    return {
        "ttft_p50_ms": round(leg["ttft_ms_p50"] - floor["ttft_ms_p50"], 2),
        "ttft_p95_ms": round(leg["ttft_ms_p95"] - floor["ttft_ms_p95"], 2),
        "cpu_ms_per_reply": round(cpu - floor_cpu, 2) if None not in (cpu, floor_cpu) else None,
        "tokens_per_s_ratio": round(leg["tokens_per_s"] / floor["tokens_per_s"], 3)
        if floor["tokens_per_s"]
        else None,
    }


def _server_cpu(leg: dict):
    return leg.get("cpu_ms_per_req", {}).get("server")


def _line(result: dict) -> str:
    if "error" in result:
        return f"FAILED {result['error']}"
    cpu = result.get("cpu_ms_per_req", {}).get("server")
    text = (
        f"ok {result['ok']}/{result['requests']} TTFT p50 {result['ttft_ms_p50']} / p95 "
        f"{result['ttft_ms_p95']} ms, {result['tokens_per_s']:,.0f} tokens/s"
    )
    if cpu is not None:
        text += f", server CPU {cpu} ms/reply"
    if result.get("error_samples"):
        text += f", errors: {result['error_samples'][:2]}"
    return text


async def workers_phase(
    *,
    one: tuple[str, int],
    two: tuple[str, int, list[int]],
    token: str,
    upstream_url: str,
    upstream_pid: int,
    rounds: int,
    n50: int,
    warmup_n: int,
    leg_seconds: float | None = None,
    users: list[str] | None = None,
    log=print,
) -> dict:
    """The same 50-client SSE load (new conversations) on one worker and on two.

    ``users``: a token per user, the clients sending as that many users (a user's sends
    take turns on their row lock, in whichever worker); by default all send as ``token``'s.
    """
    one_base, one_pid = one
    two_base, two_pid, two_workers = two
    auth = {"Authorization": f"Bearer {token}"}
    identities = [{"Authorization": f"Bearer {t}"} for t in users] if users else None
    direct = dict(
        url=f"{upstream_url}/chat/completions",
        protocol="openai",
        concurrency=50,
        requests=n50,
        watch={"upstream": upstream_pid},
    )

    def parlor(base, pid):
        return dict(
            url=f"{base}/api/chat/stream",
            headers=auth,
            protocol="parlor",
            concurrency=50,
            requests=n50,
            watch={"server": pid, "upstream": upstream_pid},
            max_seconds=leg_seconds,
            identities=identities,
        )

    skip: dict = {}
    for base, pid in ((one_base, one_pid), (two_base, two_pid)):
        await run_leg("warmup", skip, **dict(parlor(base, pid), requests=warmup_n, max_seconds=10))
    runs: dict[str, list] = {"direct_c50": [], "one_worker_c50": [], "two_workers_c50": []}
    split_rounds = []
    for r in range(rounds):
        for label, kwargs in (
            ("direct_c50", direct),
            ("one_worker_c50", parlor(one_base, one_pid)),
            ("two_workers_c50", parlor(two_base, two_pid)),
        ):
            before = {p: loadclient.process_cpu_s(p) for p in two_workers}
            started = time.perf_counter()
            busy0, total0 = machine_cpu()
            result = await run_leg(label, skip, **kwargs)
            busy1, total1 = machine_cpu()
            # How much of the machine the leg used (load client, upstream and servers
            # share its cores): near 1, a second worker has no core to run on.
            if total1 > total0:
                result["machine_cpu_busy"] = round((busy1 - busy0) / (total1 - total0), 3)
            runs[label].append(result)
            if label == "two_workers_c50":
                used = [loadclient.process_cpu_s(p) - before[p] for p in two_workers]
                total = sum(used) or 1.0
                split_rounds.append([round(u / total, 2) for u in used])
            took = time.perf_counter() - started
            log(f"  round {r + 1}/{rounds} {label}: {_line(result)} ({took:.1f} s)")
    d = aggregate(runs["direct_c50"])
    one_agg = aggregate(runs["one_worker_c50"])
    one_agg.update(versus(one_agg, d))
    two_agg = aggregate(runs["two_workers_c50"])
    two_agg.update(versus(two_agg, d))
    two_agg["cpu_share_by_worker_per_round"] = split_rounds
    out = {"direct": d, "one_worker": one_agg, "two_workers": two_agg, "users": len(users or [0])}
    if not one_agg.get("failed") and not two_agg.get("failed") and one_agg["tokens_per_s"]:
        out["two_over_one_tokens_per_s"] = round(
            two_agg["tokens_per_s"] / one_agg["tokens_per_s"], 3
        )
        if one_agg.get("machine_cpu_busy"):
            # The most two workers could give on this machine: the one-worker leg's CPU
            # per reply (load client, upstream, database and server) at 100 % busy.
            out["two_over_one_ceiling"] = round(1 / one_agg["machine_cpu_busy"], 3)
        out["two_over_one_ttft_p50"] = (
            round(two_agg["ttft_ms_p50"] / one_agg["ttft_ms_p50"], 3)
            if one_agg["ttft_ms_p50"]
            else None
        )
    return out
