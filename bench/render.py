"""How the chat page draws a streaming reply: frames per second and client CPU.

A 4,000-token Markdown reply (paragraphs, bold, lists, code blocks, a table) arrives in
frames every 16 ms, as the server coalesces them, in headless Chromium (Playwright, the
system's Chromium as the e2e tests use), once per way of drawing it:

- ``incremental``: what the page does (static/js/markdown.js): settled blocks rendered
  once by markdown-it + DOMPurify with the server's allow-list, the tail re-rendered on
  the next animation frame;
- ``full``: the whole reply rendered again by markdown-it + DOMPurify at every frame;
- ``server_settled``: the server's own HTML (chat.rendering, computed here beforehand,
  so no round trip is counted) for the settled blocks, the unsettled tail as plain text
  (raw ``**`` and all until its block settles);
- ``plain``: the text only (the page before issue 11), a floor.

Each runs at the machine's speed and with the CPU slowed 4x (a phone). Reported: frames
per second while it streams (animation frames that ran), the main thread's busy time
(CDP ``TaskDuration``) per second of stream and in all, the drawing code's own time per
frame (p50/p95/max), long tasks (> 50 ms), and the time of the last render.

    .venv/bin/python -m bench --only render
"""

import json
import os
import random
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "static"
CHROMIUM = os.environ.get("PARLOR_CHROMIUM") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
TOKENS = 4000
FRAME_MS = 16  # the server's FRAME_INTERVAL
TOKENS_PER_FRAME = 8  # 500 tokens/s: a fast model; 8 s of stream
STRATEGIES = ("incremental", "full", "server_settled", "plain")
THROTTLES = (1, 4)
# Not run: full re-rendering with the CPU slowed 4x (11 fps, 449 long tasks, 75 s of them
# in a trial run: it alone took minutes).
SKIP = {("full", 4)}

WORDS = [
    *[
        "the",
        "plan",
        "keeps",
        "risk",
        "small",
        "while",
        "the",
        "position",
        "grows",
        "with",
        "each",
        "confirmed",
        "move",
    ],
    *[
        "and",
        "every",
        "trade",
        "is",
        "logged",
        "so",
        "the",
        "review",
        "can",
        "measure",
        "what",
        "worked",
        "and",
        "adjust",
    ],
    *["the", "rules", "next", "week"],
]


def reply_text(tokens: int = TOKENS, seed: int = 11) -> str:
    """Return a deterministic Markdown reply of about ``tokens`` word tokens."""
    rng = random.Random(seed)
    parts: list[str] = []
    count = 0

    def words(n: int) -> str:
        out = []
        for _ in range(n):
            word = rng.choice(WORDS)
            roll = rng.random()
            if roll < 0.05:
                word = f"**{word}**"
            elif roll < 0.08:
                word = f"*{word}*"
            elif roll < 0.10:
                word = f"`{word}()`"
            out.append(word)
        return " ".join(out)

    section = 0
    while count < tokens:
        section += 1
        parts.append(f"## Part {section}: {words(4)}")
        count += 6
        for _ in range(2):
            n = rng.randint(40, 80)
            parts.append(words(n) + ".")
            count += n
        items = rng.randint(3, 6)
        parts.append("\n".join(f"- {words(rng.randint(6, 14))}" for _ in range(items)))
        count += items * 10
        if section % 2 == 0:
            lines = [f"    value_{i} = compute({words(3).replace('*', '')!r})" for i in range(8)]
            parts.append("```python\ndef step(state):\n" + "\n".join(lines) + "\n```")
            count += 60
        if section % 3 == 0:
            rows = "\n".join(
                f"| {rng.choice(WORDS)} | {rng.randint(1, 999)} | {words(3)} |" for _ in range(5)
            )
            parts.append("| name | size | note |\n|---|---:|---|\n" + rows)
            count += 40
    return "\n\n".join(parts) + "\n"


def frames(text: str) -> list[str]:
    """Split ``text`` into stream frames of TOKENS_PER_FRAME tokens (words + whitespace)."""
    tokens = re.findall(r"\S+\s*|\s+", text)
    return [
        "".join(tokens[i : i + TOKENS_PER_FRAME]) for i in range(0, len(tokens), TOKENS_PER_FRAME)
    ]


# The page side: feed the frames every FRAME_MS and draw them one way; count animation
# frames, the drawing code's time, and long tasks.
DRIVER = """async ([strategy, chunks, frameMs, settledHtml, finalHtml]) => {
  const body = document.getElementById('body');
  body.replaceChildren();
  const M = window.ParlorMarkdown;
  const drawTimes = [];
  let longTasks = 0, longTaskMs = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) { longTasks += 1; longTaskMs += entry.duration; }
  });
  observer.observe({type: 'longtask', buffered: false});
  let text = '';
  let pending = false;
  const view = strategy === 'incremental' ? new M.StreamView(body) : null;
  if (view) {
    // The page's own scheduling (an animation frame, skipped after a long render): time
    // each render where it happens.
    const render = view.render.bind(view);
    view.render = () => {
      const start = performance.now();
      render();
      drawTimes.push(performance.now() - start);
    };
  }
  // server_settled: blocks as the server renders them, the tail as text.
  let settled = 0, tailNode = null;
  const draw = () => {
    const start = performance.now();
    if (strategy === 'full') {
      body.innerHTML = M.html(text);
    } else if (strategy === 'server_settled') {
      const end = M.settledEnd(text, settled);
      if (end > settled) {
        if (tailNode) tailNode.remove();
        body.insertAdjacentHTML('beforeend', settledHtml[text.slice(settled, end)] || '');
        settled = end;
        tailNode = null;
      }
      if (!tailNode) { tailNode = document.createElement('p'); body.appendChild(tailNode); }
      tailNode.textContent = text.slice(settled);
    } else {
      body.textContent = text;
    }
    drawTimes.push(performance.now() - start);
  };
  let animationFrames = 0;
  let streaming = true;
  const countFrames = () => {
    animationFrames += 1;
    if (streaming) requestAnimationFrame(countFrames);
  };
  requestAnimationFrame(countFrames);
  const started = performance.now();
  await new Promise((resolve) => {
    let i = 0;
    const tick = () => {
      text += chunks[i++];
      // Drawn on the next animation frame, frames that arrive meanwhile coalesced (as
      // the page does); `plain` writes at once, as the old page did.
      if (view) view.update(text);
      else if (strategy === 'plain') draw();
      else if (!pending) {
        pending = true;
        requestAnimationFrame(() => { pending = false; draw(); });
      }
      if (i < chunks.length) setTimeout(tick, frameMs); else resolve();
    };
    tick();
  });
  if (view) view.flush();
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  const seconds = (performance.now() - started) / 1000;
  streaming = false;
  // `done`: the server's HTML (given, as the event carries it).
  const finalStart = performance.now();
  if (strategy === 'incremental') view.finish(finalHtml);
  else body.innerHTML = finalHtml;
  const finalMs = performance.now() - finalStart;
  observer.disconnect();
  const sorted = drawTimes.slice().sort((a, b) => a - b);
  const pct = (p) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
  return {
    seconds, animationFrames, draws: drawTimes.length,
    drawMsTotal: drawTimes.reduce((a, b) => a + b, 0),
    drawMsP50: pct(0.5), drawMsP95: pct(0.95), drawMsMax: sorted[sorted.length - 1],
    longTasks, longTaskMs, finalMs, characters: text.length,
  };
}"""


def _settled_chunks(page, chunks: list[str]) -> list[str]:
    """Return the blocks the page settles while the reply streams, in order."""
    return page.evaluate(
        """(chunks) => { const M = window.ParlorMarkdown; let text = '', settled = 0;
        const out = [];
        for (const chunk of chunks) { text += chunk; const end = M.settledEnd(text, settled);
          if (end > settled) { out.push(text.slice(settled, end)); settled = end; } }
        return out; }""",
        chunks,
    )


def _page_html() -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'></head>"
        "<body class='chat-body'><main class='pane'><div class='messages' id='messages'>"
        "<div class='messages-inner'><article class='msg msg-assistant streaming'>"
        "<div class='msg-main'><div class='msg-body markdown' id='body'></div></div>"
        "</article></div></div></main></body></html>"
    )


def run(*, quick: bool = False) -> dict:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return {"skipped": f"Chromium ({CHROMIUM}) is not installed"}
    from playwright.sync_api import sync_playwright

    from chat.rendering import render_markdown  # plain markdown-it-py + nh3: no Django

    text = reply_text()
    chunks = frames(text)
    throttles = (1,) if quick else THROTTLES
    out: dict = {
        "reply": {
            "tokens": len(re.findall(r"\S+\s*|\s+", text)),
            "characters": len(text),
            "frames": len(chunks),
            "frame_ms": FRAME_MS,
            "tokens_per_frame": TOKENS_PER_FRAME,
        },
        "chromium": CHROMIUM,
        "results": {},
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            out["chromium_version"] = browser.version
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.set_content(_page_html())
            page.add_style_tag(path=str(STATIC / "css" / "app.css"))
            for script in (
                "vendor/markdown-it/markdown-it.min.js",
                "vendor/dompurify/purify.min.js",
                "js/markdown.js",
            ):
                page.add_script_tag(path=str(STATIC / script))
            settled_html = {c: render_markdown(c) for c in _settled_chunks(page, chunks)}
            final_html = render_markdown(text)
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable")
            for throttle in throttles:
                cdp.send("Emulation.setCPUThrottlingRate", {"rate": throttle})
                for strategy in STRATEGIES:
                    if (strategy, throttle) in SKIP:
                        continue
                    before = _metrics(cdp)
                    wall = time.perf_counter()
                    result = page.evaluate(
                        DRIVER, [strategy, chunks, FRAME_MS, settled_html, final_html]
                    )
                    wall = time.perf_counter() - wall
                    after = _metrics(cdp)
                    busy = after["TaskDuration"] - before["TaskDuration"]
                    script = after["ScriptDuration"] - before["ScriptDuration"]
                    layout = (after["LayoutDuration"] - before["LayoutDuration"]) + (
                        after["RecalcStyleDuration"] - before["RecalcStyleDuration"]
                    )
                    seconds = result["seconds"]
                    out["results"][f"{strategy}_cpu{throttle}x"] = {
                        "strategy": strategy,
                        "cpu_throttle": throttle,
                        "stream_seconds": round(seconds, 2),
                        "fps": round(result["animationFrames"] / seconds, 1),
                        "main_thread_busy_ms_per_s": round(busy * 1000 / seconds, 1),
                        "main_thread_busy_s": round(busy, 2),
                        "script_s": round(script, 2),
                        "style_and_layout_s": round(layout, 2),
                        "draws": result["draws"],
                        "draw_ms_p50": round(result["drawMsP50"], 2),
                        "draw_ms_p95": round(result["drawMsP95"], 2),
                        "draw_ms_max": round(result["drawMsMax"], 1),
                        "draw_ms_total": round(result["drawMsTotal"], 1),
                        "long_tasks": result["longTasks"],
                        "long_task_ms": round(result["longTaskMs"], 1),
                        "final_render_ms": round(result["finalMs"], 2),
                        "raw_markup_while_streaming": strategy in ("server_settled", "plain"),
                        "wall_s": round(wall, 2),
                    }
            cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
        finally:
            browser.close()
    out["best"] = _verdict(out["results"])
    return out


def _metrics(cdp) -> dict:
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def _verdict(results: dict) -> str:
    """Say which Markdown strategy measured better (plain is the floor, not a candidate)."""
    lines = []
    for throttle in THROTTLES:
        a = results.get(f"incremental_cpu{throttle}x")
        b = results.get(f"server_settled_cpu{throttle}x")
        c = results.get(f"full_cpu{throttle}x")
        if not (a and b and c):
            continue
        busy = "main_thread_busy_ms_per_s"
        lines.append(
            f"CPU {throttle}x: incremental {a['fps']} fps, {a[busy]} ms/s busy; "
            f"server-settled + text tail {b['fps']} fps, {b[busy]} ms/s; "
            f"full re-render {c['fps']} fps, {c[busy]} ms/s"
        )
    return "; ".join(lines)


def table(results: dict) -> str:
    """Return the render part's own markdown table (appended to the bench's summary)."""
    part = results.get("render")
    if not part:
        return ""
    if part.get("failed") or part.get("skipped"):
        reason = part.get("error") or part.get("skipped")
        return f"\n\n## Streaming render (client)\n\n{reason}"
    reply = part["reply"]
    lines = [
        "",
        "",
        f"## Streaming render (client): a {reply['tokens']:,}-token reply "
        f"({reply['characters']:,} characters) in {reply['frames']} frames of "
        f"{reply['tokens_per_frame']} tokens every {reply['frame_ms']} ms, headless Chromium",
        "",
        "| Strategy | CPU | fps | main thread busy, ms/s | draw p50 / p95 / max, ms "
        "| long tasks | last render, ms | raw markup shown |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in part["results"].values():
        lines.append(
            f"| {row['strategy']} | {row['cpu_throttle']}x | {row['fps']} | "
            f"{row['main_thread_busy_ms_per_s']} | {row['draw_ms_p50']} / {row['draw_ms_p95']} / "
            f"{row['draw_ms_max']} | {row['long_tasks']} ({row['long_task_ms']} ms) | "
            f"{row['final_render_ms']} | {'yes' if row['raw_markup_while_streaming'] else 'no'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(ROOT))
    found = run(quick=os.environ.get("BENCH_QUICK", "") not in ("", "0"))
    print(json.dumps(found, indent=2))
    print(table({"render": found}))
