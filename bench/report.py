"""The summary of a bench run: one row per figure with its target (SPEC 6, issue 9)."""

CPU_MS_PER_REPLY = 10.0
C1_ADDED_P50_MS = 5.0
C1_ADDED_P95_MS = 10.0
WS200_ADDED_P95_MS = 100.0
RELAYED_OVER_DIRECT = 0.8
TWO_OVER_ONE = 1.6
PAGES_SPREAD = 0.10
SUMMARIES_PER_10 = 1
PAGE_P95_MS = 20.0
SIDEBAR_P95_MS = 30.0


def g(d, *keys):
    for key in keys:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _n(value, digits=1, unit=""):
    if value is None:
        return "—"
    if isinstance(value, float) and abs(value) >= 1000:
        return f"{value:,.0f}{unit}"
    if isinstance(value, int) and abs(value) >= 1000:
        return f"{value:,}{unit}"
    return f"{round(value, digits):g}{unit}" if isinstance(value, float) else f"{value}{unit}"


def _pair(a, b, unit=" ms"):
    if a is None and b is None:
        return "—"
    return f"{_n(a)} / {_n(b)}{unit}"


def _met(ok):
    if ok is None:
        return "—"
    return "yes" if ok else "**no**"


def _failed(part) -> str | None:
    if part is None:
        return None
    if isinstance(part, dict) and part.get("failed"):
        return f"FAILED: {str(part.get('error'))[:160]}"
    if isinstance(part, dict) and part.get("skipped"):
        return f"skipped: {part['skipped']}"
    return None


def _sse_clients(c: str) -> str:
    """``c1`` → "SSE 1 client", ``c50`` → "SSE 50 clients"."""
    return f"SSE {c[1:]} client{'s' if c != 'c1' else ''}"


def _failed_leg(add, label: str, leg: dict, direct: dict) -> bool:
    """Add the row of a leg that failed (or whose direct leg did); return whether so."""
    if not (leg.get("failed") or direct.get("failed")):
        return False
    add(label, f"FAILED: {str(leg.get('error') or direct.get('error'))[:160]}")
    return True


def _signed(value) -> str:
    return "—" if value is None else f"{value:+.1f}"


def _floor_rows(add, c: str, floor: dict | None, direct: dict) -> None:
    """The floor relay's figures (no target: a calibration of the machine and the path)."""
    if floor is None:
        return
    label = f"{_sse_clients(c)}, the floor relay (peer kit)"
    if _failed_leg(add, label, floor, direct):
        return
    if c == "c1":
        versus = f"added {_pair(floor['added_ttft_p50_ms'], floor['added_ttft_p95_ms'])}"
    else:
        versus = f"p50 ×{_n(floor['ttft_p50_ratio'], 2)}"
    add(
        f"{label}: TTFT p50 / p95",
        _pair(floor["ttft_ms_p50"], floor["ttft_ms_p95"]),
        _pair(direct["ttft_ms_p50"], direct["ttft_ms_p95"]),
        versus,
    )
    add(
        f"{label}: tokens/s, server CPU per reply",
        f"{_n(floor['tokens_per_s'])}, {_n(g(floor, 'cpu_ms_per_req', 'server'), 1, ' ms')}",
        _n(direct["tokens_per_s"]),
        f"×{_n(floor['tokens_per_s_ratio'], 3)}",
    )


def rows(results: dict, peer_ttft_ratio: float, peer_tps_ratio: float) -> list[dict]:
    """Every headline figure as {figure, parlor, direct, versus, target, met}."""
    out = []

    def add(figure, parlor="—", direct="—", versus="—", target="—", met=None):
        out.append(
            {
                "figure": figure,
                "parlor": parlor,
                "direct": direct,
                "versus": versus,
                "target": target,
                "met": met,
            }
        )

    sse = results.get("sse")
    if sse is not None:
        failure = _failed(sse)
        if failure:
            add("SSE relay", failure)
        for c in ("c1", "c50"):
            d = g(sse, c, "direct") or {}
            _floor_rows(add, c, g(sse, c, "floor"), d)
            for kind in ("new", "existing"):
                leg = g(sse, c, kind)
                if leg is None:
                    continue
                label = f"{_sse_clients(c)}, {kind} conversations"
                if _failed_leg(add, label, leg, d):
                    continue
                cpu = g(leg, "cpu_ms_per_req", "server")
                if leg.get("errors"):
                    add(
                        f"{label}: failed requests",
                        f"{leg['errors']} in {len(leg.get('per_round', []))} round(s), "
                        f"figures from {leg['rounds']}: "
                        f"{'; '.join(leg.get('error_samples', []))[:160]}",
                        met=False,
                    )
                if c == "c1":
                    a50, a95 = leg["added_ttft_p50_ms"], leg["added_ttft_p95_ms"]
                    add(
                        f"{label}: TTFT p50 / p95",
                        _pair(leg["ttft_ms_p50"], leg["ttft_ms_p95"]),
                        _pair(d["ttft_ms_p50"], d["ttft_ms_p95"]),
                        f"added {_pair(a50, a95)}",
                        f"added ≤ {C1_ADDED_P50_MS:g} / ≤ {C1_ADDED_P95_MS:g} ms",
                        a50 <= C1_ADDED_P50_MS and a95 <= C1_ADDED_P95_MS,
                    )
                else:
                    limit = peer_ttft_ratio / 4
                    ratio = leg["ttft_p50_ratio"]
                    add(
                        f"{label}: TTFT p50 / p95",
                        _pair(leg["ttft_ms_p50"], leg["ttft_ms_p95"]),
                        _pair(d["ttft_ms_p50"], d["ttft_ms_p95"]),
                        f"p50 ×{_n(ratio, 2)}",
                        f"≤ ¼ Open WebUI's: p50 ≤ ×{limit:.2f} direct",
                        ratio is not None and ratio <= limit,
                    )
                    floor = 3 * peer_tps_ratio
                    tps_ratio = leg["tokens_per_s_ratio"]
                    add(
                        f"{label}: tokens/s",
                        _n(leg["tokens_per_s"]),
                        _n(d["tokens_per_s"]),
                        f"×{_n(tps_ratio, 3)}",
                        f"≥ 3× Open WebUI's: ≥ ×{floor:.3f} direct",
                        tps_ratio is not None and tps_ratio >= floor,
                    )
                add(
                    f"{label}: server CPU per reply",
                    _n(cpu, 1, " ms"),
                    f"{_n(g(d, 'cpu_ms_per_req', 'upstream'), 1, ' ms')} (upstream)",
                    "—",
                    f"≤ {CPU_MS_PER_REPLY:g} ms",
                    cpu is not None and cpu <= CPU_MS_PER_REPLY,
                )
                above = leg.get("over_floor")
                if above:
                    add(
                        f"{label}: above the floor relay",
                        f"TTFT p50 {_signed(above['ttft_p50_ms'])} ms, CPU "
                        f"{_signed(above['cpu_ms_per_reply'])} ms, tokens/s "
                        f"×{_n(above['tokens_per_s_ratio'], 2)}",
                    )

    ws = results.get("ws")
    if ws is not None:
        failure = _failed(ws)
        if failure:
            add("WebSocket relay", failure)
        one = g(ws, "one_stream")
        if one is not None:
            if one.get("failed"):
                add("WebSocket 1 stream", f"FAILED: {str(one.get('error'))[:160]}")
            else:
                add(
                    "WebSocket 1 stream: TTFT p50 / p95",
                    _pair(one["parlor"]["p50_ms"], one["parlor"]["p95_ms"]),
                    _pair(one["direct"]["p50_ms"], one["direct"]["p95_ms"]),
                    f"added {_pair(one['added']['p50_ms'], one['added']['p95_ms'])}",
                    f"added ≤ {C1_ADDED_P50_MS:g} / ≤ {C1_ADDED_P95_MS:g} ms",
                    one["met"],
                )
        many = g(ws, "streams_200")
        if many is not None:
            if many.get("failed"):
                add("WebSocket 200 streams", f"FAILED: {str(many.get('error'))[:160]}")
            else:
                burst = g(many, "burst_first_message", "parlor") or {}
                add(
                    f"WebSocket {many['streams']} first messages at once: TTFT p50 / p95",
                    _pair(burst.get("p50_ms"), burst.get("p95_ms")),
                )
                add(
                    f"WebSocket {many['streams']} streams at {many['token_ms']} ms/token: "
                    "TTFT p50 / p95",
                    _pair(many["parlor"]["p50_ms"], many["parlor"]["p95_ms"]),
                    _pair(many["direct"]["p50_ms"], many["direct"]["p95_ms"]),
                    f"added p95 {_n(many['added']['p95_ms'], 1, ' ms')}",
                    f"added p95 ≤ {WS200_ADDED_P95_MS:g} ms",
                    many["met"],
                )
        tput = g(ws, "throughput")
        if tput is not None:
            if tput.get("failed"):
                add("WebSocket throughput", f"FAILED: {str(tput.get('error'))[:160]}")
            else:
                add(
                    f"WebSocket relayed tokens/s ({tput['streams']} sockets)",
                    _n(tput["parlor_tokens_per_second"]),
                    _n(tput["direct_tokens_per_second"]),
                    f"×{_n(tput['ratio_to_direct'], 3)}",
                    f"≥ ×{RELAYED_OVER_DIRECT:g} direct",
                    tput["met"],
                )
                add(
                    "WebSocket throughput: server CPU per reply",
                    _n(tput["server_cpu_ms_per_reply"], 1, " ms"),
                    target=f"≤ {CPU_MS_PER_REPLY:g} ms",
                    met=tput["server_cpu_ms_per_reply"] is not None
                    and tput["server_cpu_ms_per_reply"] <= CPU_MS_PER_REPLY,
                )

    workers = results.get("workers")
    if workers is not None:
        _workers_rows(add, workers, "uvicorn --workers, Redis")
        nginx = workers.get("behind_nginx")
        if nginx is not None:
            _workers_rows(add, nginx, "behind nginx, Redis")

    pages = results.get("pages")
    if pages is not None:
        failure = _failed(pages)
        if failure:
            add("Database work per reply, long conversation", failure)
        else:
            small, large = g(pages, "sizes", "1000") or {}, g(pages, "sizes", "5000") or {}
            ratio = pages.get("pages_ratio_5000_over_1000")
            add(
                "Pages touched per reply, 1,000 / 5,000 messages",
                _pair(small.get("pages_per_reply"), large.get("pages_per_reply"), ""),
                versus=f"×{_n(ratio, 3)}",
                target=f"within {PAGES_SPREAD:.0%}",
                met=pages.get("pages_met"),
            )
            add(
                "Summary requests per 10 replies, 1,000 / 5,000 messages",
                _pair(small.get("summary_requests"), large.get("summary_requests"), ""),
                target=f"≤ {SUMMARIES_PER_10}",
                met=pages.get("summary_met"),
            )
            slow = pages.get("reply_1000_tokens_5ms") or {}
            add(
                "Rows written by a 1,000-token reply at 5 ms/token",
                _n(slow.get("rows_written")),
                target="bounded, not per token",
                met=slow.get("bounded"),
            )

    reads = results.get("reads")
    if reads is not None:
        failure = _failed(reads)
        if failure:
            add("Read paths", failure)
        else:
            newest, deep = reads["message_page_newest_of_1000"], reads["message_page_deep_of_1000"]
            side = reads["sidebar_first_page_of_10000"]
            add(
                "50-message page of 1,000, newest / deep: p95 (queries)",
                f"{_n(newest['p95_ms'], 2)} / {_n(deep['p95_ms'], 2)} ms "
                f"({newest['queries']} / {deep['queries']})",
                target=f"≤ {PAGE_P95_MS:g} ms, constant queries",
                met=max(newest["p95_ms"], deep["p95_ms"]) <= PAGE_P95_MS,
            )
            add(
                "Sidebar of 10,000 conversations: p95 (queries)",
                f"{_n(side['p95_ms'], 2)} ms ({side['queries']})",
                target=f"≤ {SIDEBAR_P95_MS:g} ms, constant queries",
                met=side["p95_ms"] <= SIDEBAR_P95_MS,
            )
    tree = results.get("tree")
    if tree is not None:
        failure = _failed(tree)
        if failure:
            add("Message tree", failure)
        else:
            single, branched = tree["single_path"], tree["tree"]
            for name, label in (
                ("page", "50-message page (with versions)"),
                ("page_html", "50-message page as HTML"),
                ("context", "next reply's context"),
            ):
                add(
                    f"1,000-message tree, 50 branches: {label}, p50 / p95 (queries)",
                    f"{_n(branched[name]['p50_ms'], 2)} / {_n(branched[name]['p95_ms'], 2)} ms "
                    f"({branched[name]['queries']})",
                    direct=f"one path: {_n(single[name]['p50_ms'], 2)} ms "
                    f"({single[name]['queries']})",
                    versus=f"×{tree[f'{name}_p50_ratio']}",
                )
            add(
                "Switching versions, early / late fork: p50 (queries)",
                f"{_n(g(branched, 'switch_early', 'p50_ms'), 2)} / "
                f"{_n(g(branched, 'switch_late', 'p50_ms'), 2)} ms "
                f"({g(branched, 'switch_early', 'queries')} / "
                f"{g(branched, 'switch_late', 'queries')})",
            )
    report = results.get("report")
    if report is not None:
        failure = _failed(report)
        if failure:
            add("chat_report --details --json", failure)
        else:
            add(
                f"chat_report --details --json on "
                f"{_n(g(report, 'data_set', 'conversations'))} conversations: p50 (queries)",
                f"{_n(report['p50_ms'])} ms ({report['queries']}); without --details "
                f"{_n(report.get('without_details_p50_ms'))} ms "
                f"({report.get('queries_without_details')})",
                target="constant queries",
            )
    writes = results.get("writes")
    if writes is not None:
        failure = _failed(writes)
        if failure:
            add("DB writes of a 1,000-token reply (at the cursor)", failure)
        else:
            per = ", ".join(
                f"{r['writes_reply_start']}+{r['writes_during_generation']} "
                f"at {r['token_ms']} ms/token"
                for r in writes.get("reply_1000_tokens", [])
            )
            replies = writes.get("reply_1000_tokens", [])
            bounded = all(r["writes_during_generation"] < r["tokens"] / 10 for r in replies)
            if not replies or not all(r["writes_total"] for r in replies):
                bounded = None  # nothing seen at Django's cursor: not measured
                per += " (no writes seen at Django's cursor)"
            add(
                "DB writes of a 1,000-token reply, start+generation (at the cursor)",
                per,
                target="bounded, not per token",
                met=bounded,
            )
    up = results.get("upstream")
    if up is not None and not _failed(up):
        add(
            "Upstream called directly at 50 clients: dev LLM / fake, chunks/s",
            f"{_n(g(up, 'devllm_c50', 'chunks_per_s'))} / "
            f"{_n(g(up, 'fake_upstream_c50', 'chunks_per_s'))}",
            versus=f"faster: {up.get('faster_at_c50')}",
        )
    return out


def table(results: dict, args) -> str:
    found = rows(results, args.peer_ttft_ratio, args.peer_tps_ratio)
    results["summary"] = found
    setup = results.get("setup", {})
    servers = setup.get("servers", {})
    runtime = ", ".join(
        f"{name}: uvloop {info.get('uvloop')}, httptools {info.get('httptools')}"
        for name, info in servers.items()
    )
    lines = [
        "",
        f"## Parlor bench, {results.get('started_at', '')}, {setup.get('cpus')} CPUs, "
        f"{setup.get('database')}, {setup.get('rounds')} round(s), load at start "
        f"{', '.join(f'{x:.2f}' for x in setup.get('load_average_at_start', []))}",
        "",
        f"Servers: {runtime or '—'}",
        "",
        "| Figure | Parlor | Direct | vs direct | Target | Met |",
        "|---|---|---|---|---|---|",
    ]

    def cell(value) -> str:
        return " ".join(str(value).split()).replace("|", "\\|")

    for row in found:
        row = {k: cell(v) if k != "met" else v for k, v in row.items()}
        lines.append(
            f"| {row['figure']} | {row['parlor']} | {row['direct']} | {row['versus']} | "
            f"{row['target']} | {_met(row['met'])} |"
        )
    return "\n".join(lines)


def _workers_rows(add, workers: dict, how: str) -> None:
    """The rows of one/two-worker legs (``relay.workers_phase``'s result), served ``how``."""
    failure = _failed(workers)
    if failure:
        add(f"Two workers ({how})", failure)
        return
    one, two = workers.get("one_worker", {}), workers.get("two_workers", {})
    ratio = workers.get("two_over_one_tokens_per_s")
    for name, leg in (("one worker", one), ("two workers", two)):
        if leg.get("errors") and not leg.get("failed"):
            add(
                f"SSE 50 clients, {name} ({how}): failed requests",
                f"{leg['errors']}: {'; '.join(leg.get('error_samples', []))[:160]}",
                met=False,
            )
    if one.get("failed") or two.get("failed"):
        add(
            f"Two workers / one, 50 clients ({how})",
            f"FAILED: {str(one.get('error') or two.get('error'))[:160]}",
        )
        return
    add(
        f"SSE 50 clients, one / two workers ({how}): tokens/s",
        f"{_n(one.get('tokens_per_s'))} / {_n(two.get('tokens_per_s'))}",
        _n(g(workers, "direct", "tokens_per_s")),
        f"two/one ×{_n(ratio, 3)}"
        + (
            f" (machine's ceiling ×{_n(ceiling, 3)})"
            if (ceiling := workers.get("two_over_one_ceiling"))
            else ""
        ),
        f"≥ ×{TWO_OVER_ONE:g}",
        ratio is not None and ratio >= TWO_OVER_ONE,
    )
    add(
        f"SSE 50 clients, one / two workers ({how}): TTFT p50, CPU per reply, machine busy",
        f"{_n(one.get('ttft_ms_p50'))} / {_n(two.get('ttft_ms_p50'))} ms; "
        f"{_n(g(one, 'cpu_ms_per_req', 'server'))} / "
        f"{_n(g(two, 'cpu_ms_per_req', 'server'))} ms; "
        f"{_percent(one.get('machine_cpu_busy'))} / {_percent(two.get('machine_cpu_busy'))}",
        _n(g(workers, "direct", "ttft_ms_p50"), 1, " ms"),
    )


def _percent(fraction) -> str:
    return "—" if fraction is None else f"{fraction * 100:.0f} %"
