// Parlor Markdown in the browser, rendered as the server renders a finished reply
// (chat/rendering.py): markdown-it with the same options, then DOMPurify with the same
// allow-list, which the page carries (data-markdown-rules, from chat.rendering). Plus a view
// that renders a streaming reply incrementally: the blocks that can no longer change are
// rendered once, and only the unsettled tail is rendered again as the reply grows, with
// its unfinished inline markup closed so that `**bold` is already bold.
// Needs the vendored static/vendor/markdown-it and static/vendor/dompurify.
(function () {
  "use strict";

  // The same as chat/rendering.py; the page's data-markdown-rules is what counts.
  const FALLBACK_RULES = {
    tags: ["p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul", "ol",
      "li", "a", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td"],
    attributes: { a: ["href", "title"], code: ["class"], th: ["align"], td: ["align"] },
    url_schemes: ["http", "https", "mailto"],
    link_rel: "noopener noreferrer nofollow",
  };

  let engine = null;

  function readRules() {
    const element = document.querySelector("[data-markdown-rules]");
    if (!element) return FALLBACK_RULES;
    try {
      return JSON.parse(element.dataset.markdownRules);
    } catch (err) {
      return FALLBACK_RULES;
    }
  }

  function escapeRegExp(text) {
    return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }

  function makeEngine(rules) {
    const md = window.markdownit("commonmark", { html: false, linkify: false, breaks: true }).enable([
      "table",
      "strikethrough",
    ]);
    const purify = window.DOMPurify(window); // an instance of our own: its hooks are ours
    const perTag = {};
    const allAttributes = new Set();
    Object.keys(rules.attributes).forEach(function (tag) {
      perTag[tag] = new Set(rules.attributes[tag]);
      rules.attributes[tag].forEach(function (name) {
        allAttributes.add(name);
      });
    });
    // nh3 allows attributes per tag; DOMPurify's list is global, so narrow it here.
    purify.addHook("uponSanitizeAttribute", function (node, data) {
      const allowed = perTag[node.nodeName.toLowerCase()];
      if (!allowed || !allowed.has(data.attrName)) data.keepAttr = false;
    });
    purify.addHook("afterSanitizeAttributes", function (node) {
      if (node.nodeName === "A") node.setAttribute("rel", rules.link_rel);
    });
    const schemes = rules.url_schemes.map(escapeRegExp).join("|");
    const config = {
      ALLOWED_TAGS: rules.tags.slice(),
      ALLOWED_ATTR: Array.from(allAttributes),
      // The listed schemes, or a relative URL (what nh3 lets through as well).
      ALLOWED_URI_REGEXP: new RegExp("^(?:(?:" + schemes + "):|[^a-z]|[a-z+.\\-]+(?:[^a-z+.\\-:]|$))", "i"),
      ALLOW_DATA_ATTR: false,
      ALLOW_ARIA_ATTR: false,
      ALLOW_UNKNOWN_PROTOCOLS: false,
      KEEP_CONTENT: true,
    };
    const fragmentConfig = Object.assign({}, config, { RETURN_DOM_FRAGMENT: true });
    return {
      html: function (text) {
        return purify.sanitize(md.render(text), config);
      },
      fragment: function (text) {
        return purify.sanitize(md.render(text), fragmentConfig);
      },
    };
  }

  function getEngine() {
    if (!engine) engine = makeEngine(readRules());
    return engine;
  }

  // ---------- Where the settled part of a growing text ends ----------

  const FENCE = /^ {0,3}(`{3,}|~{3,})/;
  const LIST_ITEM = /^ {0,3}(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)/;
  const BLANK = /^[ \t]*$/;

  // Return the index in `text` (at or after `from`, a block start) up to which the blocks
  // are final: whatever follows cannot change how they render. A block ends at a blank
  // line followed by a line that starts a new block at the margin, or at a closing code
  // fence; not inside a list (an item after a blank line would join it and make it loose).
  function settledEnd(text, from) {
    let end = from;
    let pos = from;
    let fence = null;
    let blankAfter = -1; // the index after a run of blank lines, waiting for the next line
    let list = false;
    while (pos < text.length) {
      const newline = text.indexOf("\n", pos);
      if (newline === -1) break; // an unfinished line decides nothing yet
      const line = text.slice(pos, newline);
      const next = newline + 1;
      if (fence) {
        const close = FENCE.exec(line);
        if (close && close[1][0] === fence[0] && close[1].length >= fence.length && BLANK.test(line.slice(close[0].length))) {
          fence = null;
          if (!list) end = next;
        }
      } else if (BLANK.test(line)) {
        blankAfter = next;
      } else {
        if (blankAfter !== -1) {
          const startsBlock = !/^[ \t]/.test(line) && !(list && LIST_ITEM.test(line));
          if (startsBlock) {
            end = blankAfter;
            list = false;
          }
          blankAfter = -1;
        }
        if (LIST_ITEM.test(line)) list = true;
        const open = FENCE.exec(line);
        if (open && !(open[1][0] === "`" && line.slice(open[0].length).indexOf("`") !== -1)) {
          fence = open[1];
        }
      }
      pos = next;
    }
    return end;
  }

  // ---------- The unsettled tail, shown as it will render ----------

  // An unfinished line that is markup only so far: a run of one marker ("-", "* *", "##",
  // "```", "==="), an ordered list's number, or a table's delimiter row.
  const MARKUP_ONLY = /^ {0,3}(?:([-+*=_#>`~])[ \t]*(?:\1[ \t]*)*|\d{1,9}[.)]?[ \t]*|\|?[ \t:|-]*)$/;
  const TABLE_ROW = /^ {0,3}\|/;
  const TABLE_DELIMITER = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;
  const BLOCK_START = /^ {0,3}(?:[-+*]|\d{1,9}[.)]|#{1,6}|>|\|)(?:[ \t]|$)/;

  // Return the fence (its backticks or tildes) still open at the end of `lines`, or null.
  function openFence(lines) {
    let fence = null;
    for (let i = 0; i < lines.length; i++) {
      const match = FENCE.exec(lines[i]);
      if (!match) continue;
      const rest = lines[i].slice(match[0].length);
      if (fence) {
        if (match[1][0] === fence[0] && match[1].length >= fence.length && BLANK.test(rest)) fence = null;
      } else if (!(match[1][0] === "`" && rest.indexOf("`") !== -1)) {
        fence = match[1];
      }
    }
    return fence;
  }

  // Close the inline markup left open at the end of the last paragraph: emphasis, strong,
  // strikethrough, a code span; an unfinished link shows as its text. A marker with
  // nothing after it yet is left out rather than shown.
  function closeInline(paragraph) {
    let text = paragraph;
    // An unfinished link or image: [text](http…  or  [text  →  text
    text = text.replace(/!?\[([^\]\n]*)\]\([^)\s]*$/, "$1");
    text = text.replace(/!?\[([^\]\n]*)$/, "$1");
    const stack = [];
    let i = 0;
    while (i < text.length) {
      const c = text[i];
      if (c === "\\") {
        if (i === text.length - 1) {
          text = text.slice(0, i); // an escape of what has not come yet
          break;
        }
        i += 2;
        continue;
      }
      if (c === "`") {
        let n = 1;
        while (text[i + n] === "`") n++;
        const marker = "`".repeat(n);
        let j = i + n;
        let closed = -1;
        while ((j = text.indexOf(marker, j)) !== -1) {
          if (text[j + n] !== "`" && text[j - 1] !== "`") {
            closed = j;
            break;
          }
          j += n;
        }
        if (closed === -1) {
          stack.push({ marker: marker, at: i });
          break; // the rest is code
        }
        i = closed + n;
        continue;
      }
      if (c === "*" || c === "_" || c === "~") {
        let n = 1;
        while (text[i + n] === c) n++;
        const before = i > 0 ? text[i - 1] : "\n";
        const after = i + n < text.length ? text[i + n] : "\n";
        const opens = !/\s/.test(after);
        const closes = !/\s/.test(before);
        const lineStart = before === "\n";
        if (c === "~") {
          if (i + n === text.length) {
            text = text.slice(0, i); // nothing after it yet
            break;
          }
          if (n === 2) {
            const top = stack[stack.length - 1];
            if (closes && top && top.marker === "~~") stack.pop();
            else if (opens) stack.push({ marker: "~~", at: i });
          }
          i += n;
          continue;
        }
        if (c === "_" && /[\p{L}\p{N}]/u.test(before) && /[\p{L}\p{N}]/u.test(after)) {
          i += n; // snake_case is no emphasis
          continue;
        }
        if (c === "*" && lineStart && n === 1 && /[ \t]/.test(after)) {
          i += n; // a list bullet
          continue;
        }
        let left = n;
        const atEnd = i + n === text.length;
        if (closes) {
          while (left > 0 && stack.length && stack[stack.length - 1].marker[0] === c) {
            const top = stack[stack.length - 1];
            if (top.marker.length > left) break;
            left -= top.marker.length;
            stack.pop();
          }
        }
        if (left > 0 && atEnd) {
          text = text.slice(0, i + (n - left)); // an opener with nothing after it yet
          break;
        }
        if (left > 0 && opens) {
          let at = i + (n - left);
          if (left % 2 === 1) {
            stack.push({ marker: c, at: at });
            at += 1;
            left -= 1;
          }
          while (left >= 2) {
            stack.push({ marker: c + c, at: at });
            at += 2;
            left -= 2;
          }
        }
        i += n;
        continue;
      }
      i += 1;
    }
    // Openers with nothing after them yet are left out, the rest closed innermost first.
    while (stack.length && BLANK.test(text.slice(stack[stack.length - 1].at + stack[stack.length - 1].marker.length))) {
      text = text.slice(0, stack.pop().at);
    }
    if (!stack.length) return text;
    const top = stack[stack.length - 1];
    if (top.marker[0] === "`") {
      // Code keeps its spaces; anything else is closed right after its last character.
      return text + top.marker + closers(stack.slice(0, -1));
    }
    text = text.replace(/[ \t]+$/, "");
    return text + closers(stack);
  }

  function closers(stack) {
    let out = "";
    for (let k = stack.length - 1; k >= 0; k--) out += stack[k].marker;
    return out;
  }

  // Return the tail as it should be shown while it streams.
  function completeTail(tail) {
    const ended = tail.endsWith("\n");
    const lines = (ended ? tail.slice(0, -1) : tail).split("\n");
    if (openFence(lines)) return tail; // markdown-it closes an open fence at the end
    let partial = !ended;
    const last = lines[lines.length - 1];
    // An unfinished line of markup only (a list marker, a heading's #, a setext or
    // table underline, a fence's first backticks) would flash as text: wait for more;
    // but the backticks that close an open fence close it.
    const fence = partial && openFence(lines.slice(0, -1));
    const closing = fence && last.trim()[0] === fence[0] && last.trim().length >= fence.length;
    if (partial && last !== "" && MARKUP_ONLY.test(last) && !closing) {
      lines.pop();
      partial = false;
    }
    // A table shows once its delimiter row is complete; until then its rows would be text.
    let rows = 0;
    while (rows < lines.length && TABLE_ROW.test(lines[lines.length - 1 - rows])) rows++;
    if (rows === 1 || (rows === 2 && (partial || !TABLE_DELIMITER.test(lines[lines.length - 1])))) {
      lines.splice(lines.length - rows, rows);
    }
    // The inline markup of the last block still being written: the last paragraph, or
    // its last line when that starts a block of its own (a list item, a heading…).
    let start = 0;
    for (let k = lines.length - 1; k >= 0; k--) {
      if (BLANK.test(lines[k])) {
        start = k + 1;
        break;
      }
      if (BLOCK_START.test(lines[k])) {
        start = k;
        break;
      }
    }
    const head = lines.slice(0, start);
    const block = closeInline(lines.slice(start).join("\n"));
    return head.length ? head.join("\n") + "\n" + block : block;
  }

  // ---------- The streaming view ----------

  // Render a growing text into `element`, incrementally: settled blocks are rendered once
  // and appended, the tail is rendered again on the next animation frame.
  function StreamView(element) {
    this.element = element;
    this.text = "";
    this.settled = 0; // text[0:settled] is rendered into the nodes before the tail's
    this.tailNodes = [];
    this.tailSource = null;
    this.frame = 0;
    this.renders = 0;
    this.cost = 0; // how long the last render took, ms
    this.renderedAt = 0;
    this.settledText = "";
  }

  // Drawing takes at most about a third of the main thread: after a render that took
  // long (a slow phone, a long tail), a frame or two go by before the next one.
  const RENDER_BUDGET_MS = 6;

  StreamView.prototype.update = function (text) {
    if (text === this.text && this.renders > 0) return;
    if (!text.startsWith(this.settledText)) this.reset();
    this.text = text;
    if (this.frame) return;
    const view = this;
    const run = function (now) {
      if (view.cost > RENDER_BUDGET_MS && now - view.renderedAt < 2 * view.cost) {
        view.frame = window.requestAnimationFrame(run);
        return;
      }
      view.frame = 0;
      view.render();
    };
    this.frame = window.requestAnimationFrame(run);
  };

  StreamView.prototype.reset = function () {
    this.element.replaceChildren();
    this.settled = 0;
    this.settledText = "";
    this.tailNodes = [];
    this.tailSource = null;
  };

  // Render now (what a pending animation frame would do).
  StreamView.prototype.flush = function () {
    if (this.frame) {
      window.cancelAnimationFrame(this.frame);
      this.frame = 0;
    }
    this.render();
  };

  StreamView.prototype.render = function () {
    const started = window.performance.now();
    this.draw();
    this.renderedAt = window.performance.now();
    this.cost = this.renderedAt - started;
  };

  StreamView.prototype.draw = function () {
    const md = getEngine();
    const text = this.text;
    const element = this.element;
    if (this.renders === 0 && this.settled === 0) {
      element.replaceChildren();
      element.classList.remove("plain");
      element.classList.add("markdown");
    }
    this.renders += 1;
    const end = settledEnd(text, this.settled);
    if (end > this.settled) {
      this.removeTail();
      element.appendChild(md.fragment(text.slice(this.settled, end)));
      this.settled = end;
      this.settledText = text.slice(0, end);
    }
    const source = completeTail(text.slice(this.settled));
    if (source === this.tailSource) return;
    this.removeTail();
    this.tailSource = source;
    const fragment = md.fragment(source);
    this.tailNodes = Array.from(fragment.childNodes);
    element.appendChild(fragment);
  };

  StreamView.prototype.removeTail = function () {
    this.tailNodes.forEach(function (node) {
      node.remove();
    });
    this.tailNodes = [];
    this.tailSource = null;
  };

  // End the view with the server's final HTML. Only the blocks that differ from what is
  // shown are replaced (normally none: nothing moves, not even a selection).
  StreamView.prototype.finish = function (html) {
    if (this.frame) {
      window.cancelAnimationFrame(this.frame);
      this.frame = 0;
    }
    const element = this.element;
    element.classList.remove("plain");
    element.classList.add("markdown");
    const incoming = document.createElement("template");
    incoming.innerHTML = html;
    const next = Array.from(incoming.content.childNodes);
    const now = Array.from(element.childNodes);
    let same = 0;
    while (same < next.length && same < now.length && now[same].isEqualNode(next[same])) same++;
    for (let k = same; k < now.length; k++) now[k].remove();
    for (let k = same; k < next.length; k++) element.appendChild(next[k]);
    this.tailNodes = [];
    this.finished = true;
  };

  window.ParlorMarkdown = {
    html: function (text) {
      return getEngine().html(text);
    },
    StreamView: StreamView,
    settledEnd: settledEnd,
    completeTail: completeTail,
  };
})();
