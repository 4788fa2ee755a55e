// Parlor chat stream: one WebSocket per page (/ws/chat/), replies token by token.
// Protocol (SPEC 4.2) — client frames: send, stop, subscribe; server events: session,
// status, token, title, done, error. No dependencies, no build step.
(function () {
  "use strict";

  const pane = document.querySelector("[data-chat]");
  if (!pane) return;

  const scroller = document.getElementById("messages");
  const list = document.getElementById("message-list");
  const form = document.getElementById("composer");
  const input = document.getElementById("composer-input");
  const sendButton = document.getElementById("send-btn");
  const stopButton = document.getElementById("stop-btn");
  const hint = document.getElementById("composer-hint");
  const hintText = hint ? hint.textContent : "";

  const state = {
    session: pane.dataset.session || "",
    ephemeral: !pane.dataset.session,
    model: pane.dataset.model || "",
    run: pane.dataset.run || "",
    urlBase: pane.dataset.urlBase || "/c/",
    readOnly: pane.dataset.readOnly === "1",
    busy: false,
    pending: null, // the assistant bubble waiting for its message id
    pendingUser: null, // the user's bubble waiting for its message id
    text: new Map(), // message id -> text streamed so far
    replaceNext: new Set(), // ids whose next token is the replay of the whole reply so far
    stopRequested: false,
    socket: null,
    outbox: [],
    retryDelay: 500,
  };

  // Scroll to the newest message before htmx looks at the "load older" sentinel, so
  // history is only fetched when the person scrolls up to it.
  scroller.scrollTop = scroller.scrollHeight;

  function nearBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
  }

  function scrollDown(force) {
    if (force || nearBottom()) scroller.scrollTop = scroller.scrollHeight;
  }

  function uuid4() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    // randomUUID needs a secure context; getRandomValues does not.
    const bytes = window.crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, function (b) {
      return b.toString(16).padStart(2, "0");
    }).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
  }

  // ---------- The socket ----------

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(scheme + "//" + location.host + "/ws/chat/");
    state.socket = socket;
    socket.addEventListener("open", function () {
      state.retryDelay = 500;
      subscribe();
      while (state.outbox.length && socket.readyState === WebSocket.OPEN) {
        socket.send(state.outbox.shift());
      }
    });
    socket.addEventListener("message", function (event) {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      if (data && typeof data.type === "string") handle(data);
    });
    socket.addEventListener("close", function () {
      if (state.socket === socket) state.socket = null;
      window.setTimeout(connect, state.retryDelay);
      state.retryDelay = Math.min(state.retryDelay * 2, 8000);
    });
  }

  function transmit(frame) {
    const text = JSON.stringify(frame);
    if (state.socket && state.socket.readyState === WebSocket.OPEN) {
      state.socket.send(text);
    } else {
      state.outbox.push(text);
    }
  }

  // Follow the open conversation: a reply in progress (after a reload, or started in
  // another tab) is replayed from its start and then continues live.
  function subscribe() {
    if (state.ephemeral || !state.session) return;
    list.querySelectorAll('.msg-assistant[data-status="streaming"]').forEach(function (bubble) {
      state.replaceNext.add(bubble.dataset.messageId);
      setBusy(true);
    });
    const frame = JSON.stringify({ type: "subscribe", session: state.session });
    if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(frame);
  }

  // ---------- Messages in the page ----------

  function removeEmptyState() {
    const empty = document.getElementById("empty-chat");
    if (empty) empty.remove();
  }

  function makeBubble(role, messageId) {
    const article = document.createElement("article");
    article.className = "msg msg-" + role;
    const main = document.createElement("div");
    main.className = "msg-main";
    const label = document.createElement("h3");
    label.className = "visually-hidden";
    label.textContent = role === "user" ? "You said" : "Assistant replied";
    main.appendChild(label);
    if (role === "assistant") {
      const avatar = document.createElement("div");
      avatar.className = "avatar";
      avatar.setAttribute("aria-hidden", "true");
      article.appendChild(avatar);
      const status = document.createElement("div");
      status.className = "msg-status";
      main.appendChild(status);
      article.classList.add("streaming");
      article.dataset.status = "streaming";
    }
    const body = document.createElement("div");
    body.className = "msg-body plain";
    main.appendChild(body);
    article.appendChild(main);
    if (messageId) setMessageId(article, messageId);
    removeEmptyState();
    list.appendChild(article);
    return article;
  }

  function setMessageId(bubble, messageId) {
    bubble.id = "msg-" + messageId;
    bubble.dataset.messageId = String(messageId);
  }

  function bubbleFor(messageId, create) {
    if (messageId !== undefined && messageId !== null) {
      const found = document.getElementById("msg-" + messageId);
      if (found) return found;
    }
    if (state.pending) {
      const bubble = state.pending;
      state.pending = null;
      if (messageId !== undefined && messageId !== null) setMessageId(bubble, messageId);
      return bubble;
    }
    if (!create) return null;
    // A reply started elsewhere (another tab): show the question it answers above it.
    const bubble = makeBubble("assistant", messageId);
    if (messageId && state.session && window.htmx) {
      const url = "/c/" + state.session + "/messages/" + messageId + "?question=1";
      window.htmx.ajax("GET", url, { target: bubble, swap: "beforebegin" });
    }
    return bubble;
  }

  function setBody(bubble, text) {
    const body = bubble.querySelector(".msg-body");
    body.classList.add("plain");
    body.classList.remove("markdown");
    body.textContent = text;
  }

  function setStatusLine(bubble, text) {
    const line = bubble && bubble.querySelector(".msg-status");
    if (line) line.textContent = text || "";
  }

  function finish(bubble, status) {
    bubble.classList.remove("streaming");
    bubble.dataset.status = status;
    setStatusLine(bubble, "");
    state.text.delete(bubble.dataset.messageId);
  }

  function showError(bubble, reason) {
    let box = bubble.querySelector(".msg-error");
    if (!box) {
      box = document.createElement("div");
      box.className = "msg-error";
      box.setAttribute("role", "alert");
      const text = document.createElement("span");
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "btn btn-small";
      retry.dataset.retry = "";
      retry.textContent = "Retry";
      box.append(text, " ", retry);
      bubble.querySelector(".msg-main").appendChild(box);
    }
    box.querySelector("span").textContent = reason || "The reply failed.";
  }

  function updateTitle(sessionId, title) {
    if (!sessionId || !title) return;
    document.querySelectorAll('[data-title-for="' + CSS.escape(sessionId) + '"]').forEach(function (el) {
      el.textContent = title;
    });
    if (sessionId === state.session) document.title = title + " · Parlor";
  }

  function refreshSidebar() {
    const groups = document.getElementById("session-groups");
    // A rename in progress would be lost by a refresh; the next one catches up.
    if (!groups || !window.htmx || groups.querySelector(".renaming")) return;
    window.htmx.trigger(groups, "refresh");
  }

  // ---------- Server events ----------

  function handle(event) {
    if (event.session && state.session && event.session !== state.session) {
      // Another conversation (e.g. another tab's): only its title matters here.
      if (event.type === "title") updateTitle(event.session, event.title);
      return;
    }
    switch (event.type) {
      case "session":
        onSession(event);
        break;
      case "status": {
        const bubble =
          (event.message && document.getElementById("msg-" + event.message)) ||
          state.pending ||
          list.querySelector(".msg-assistant.streaming");
        setStatusLine(bubble, event.content);
        // A status means a tool ran: once done, the server's rendering lists the tools.
        if (bubble) bubble.dataset.usedTools = "1";
        break;
      }
      case "token":
        onToken(event);
        break;
      case "title":
        updateTitle(event.session, event.title);
        break;
      case "done":
        onDone(event);
        break;
      case "error":
        onError(event);
        break;
    }
  }

  function onSession(event) {
    if (!event.session) return;
    const wasEphemeral = state.ephemeral;
    state.session = event.session;
    state.ephemeral = false;
    pane.dataset.session = event.session;
    const heading = document.getElementById("chat-title");
    if (heading) heading.dataset.titleFor = event.session;
    if (event.title) updateTitle(event.session, event.title);
    if (event.message && state.pending) setMessageId(state.pending, event.message);
    if (event.user_message && state.pendingUser) setMessageId(state.pendingUser, event.user_message);
    state.pendingUser = null;
    if (wasEphemeral) {
      // The conversation now exists: give it its address without reloading.
      history.replaceState(null, "", state.urlBase + event.session);
      refreshSidebar();
    }
  }

  // A subscribe replays the conversation's last reply; one already shown finished
  // (complete, stopped or failed) is left as the server rendered it.
  function isFinished(messageId) {
    const shown = messageId ? document.getElementById("msg-" + messageId) : null;
    return Boolean(shown && shown.dataset.status && shown.dataset.status !== "streaming");
  }

  function onToken(event) {
    if (isFinished(event.message)) return;
    const bubble = bubbleFor(event.message, true);
    const id = bubble.dataset.messageId || "";
    let text = state.text.get(id);
    if (text === undefined) {
      text = state.replaceNext.has(id) ? "" : bubble.querySelector(".msg-body").textContent;
    }
    state.replaceNext.delete(id);
    // Tokens carry their offset in the reply: a replay from 0 replaces what is shown.
    if (typeof event.offset === "number" && event.offset <= text.length) {
      text = text.slice(0, event.offset);
    }
    text += event.content || "";
    state.text.set(id, text);
    setStatusLine(bubble, "");
    setBody(bubble, text);
    setBusy(true);
    scrollDown(false);
  }

  function onDone(event) {
    if (isFinished(event.message)) return;
    const bubble = bubbleFor(event.message, true);
    const wasStreaming = bubble.classList.contains("streaming");
    state.replaceNext.delete(bubble.dataset.messageId);
    const body = bubble.querySelector(".msg-body");
    body.classList.remove("plain");
    body.classList.add("markdown");
    // Server-rendered and sanitised (markdown-it without raw HTML, then nh3).
    body.innerHTML = event.html || "";
    const stopped = state.stopRequested || event.status === "stopped";
    finish(bubble, stopped ? "stopped" : "complete");
    if (stopped && !bubble.querySelector(".msg-note")) {
      const note = document.createElement("p");
      note.className = "msg-note";
      note.textContent = "Stopped";
      bubble.querySelector(".msg-main").appendChild(note);
    }
    setBusy(false);
    scrollDown(false);
    if (wasStreaming) refreshSidebar();
    if (bubble.dataset.usedTools && bubble.dataset.messageId && window.htmx) {
      const url = "/c/" + state.session + "/messages/" + bubble.dataset.messageId;
      window.htmx.ajax("GET", url, { target: bubble, swap: "outerHTML" });
    }
  }

  function onError(event) {
    if (isFinished(event.message)) return;
    const bubble = event.message ? bubbleFor(event.message, false) : state.pending;
    if (!bubble) {
      // A refused frame (empty, too long, rate limited…): nothing is streaming.
      showHint(event.error || "Something went wrong.");
      if (!list.querySelector(".msg-assistant.streaming")) setBusy(false);
      return;
    }
    if (bubble === state.pending) state.pending = null;
    const id = bubble.dataset.messageId;
    if (id && state.text.has(id)) setBody(bubble, state.text.get(id));
    finish(bubble, "error");
    showError(bubble, event.error);
    setBusy(false);
    scrollDown(false);
    refreshSidebar();
  }

  // ---------- Composer ----------

  function showHint(text) {
    if (!hint) return;
    hint.textContent = text || hintText;
    hint.classList.toggle("error", Boolean(text));
  }

  function canSend() {
    return !state.busy && !state.readOnly && input && input.value.trim() !== "";
  }

  function refreshComposer() {
    if (!input) return;
    sendButton.disabled = !canSend();
    sendButton.hidden = state.busy;
    stopButton.hidden = !state.busy;
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 200) + "px";
  }

  function setBusy(busy) {
    state.busy = busy;
    if (!busy) state.stopRequested = false;
    refreshComposer();
  }

  function send(content) {
    if (state.ephemeral) state.session = uuid4();
    const frame = { type: "send", session: state.session, content: content, client_id: uuid4() };
    if (state.ephemeral) {
      if (state.model) frame.model = Number(state.model);
      if (state.run) frame.run = Number(state.run);
    }
    const mine = makeBubble("user");
    state.pendingUser = mine;
    mine.dataset.raw = content;
    mine.querySelector(".msg-body").textContent = content;
    state.pending = makeBubble("assistant");
    showHint("");
    setBusy(true);
    scrollDown(true);
    transmit(frame);
  }

  if (form && input) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!canSend()) return;
      const content = input.value;
      input.value = "";
      send(content);
      refreshComposer();
    });

    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        if (canSend()) form.requestSubmit();
      }
    });

    input.addEventListener("input", refreshComposer);

    stopButton.addEventListener("click", function () {
      if (!state.session || state.ephemeral) return;
      state.stopRequested = true;
      transmit({ type: "stop", session: state.session });
    });
  }

  list.addEventListener("click", function (event) {
    const retry = event.target instanceof Element ? event.target.closest("[data-retry]") : null;
    if (!retry || state.busy) return;
    // Retry sends again the question the failed reply answered.
    let node = retry.closest(".msg");
    while (node && !node.classList.contains("msg-user")) node = node.previousElementSibling;
    if (node && node.dataset.raw) send(node.dataset.raw);
  });

  // Older messages go in above what is on screen: keep the view where it was.
  let fromBottom = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    const target = event.detail.target;
    if (target && target.classList && target.classList.contains("older-loader")) {
      fromBottom = scroller.scrollHeight - scroller.scrollTop;
    }
  });
  document.addEventListener("htmx:afterSwap", function () {
    if (fromBottom === null) return;
    scroller.scrollTop = scroller.scrollHeight - fromBottom;
    fromBottom = null;
  });

  refreshComposer();
  if (input && !state.readOnly && window.matchMedia("(min-width: 769px)").matches) input.focus();
  connect();
})();
