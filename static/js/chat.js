// Parlor chat stream: one WebSocket per page (/ws/chat/), replies token by token.
// Protocol (SPEC 4.2) — client frames: send, stop, subscribe; server events: session,
// status, token, title, done, error. No build step; Markdown comes from markdown.js.
//
// What this page promises the person using it:
// - the connection's state is shown (#connection, role="status"); a dropped socket is
//   reopened with exponential backoff and jitter, the conversation re-subscribed and
//   caught up; a reply on screen only ever grows, and ends with the server's text;
// - nothing typed is lost: a message is held while offline and sent once the socket is
//   back; a refused one goes back into the composer with the reason; drafts are kept
//   per conversation in localStorage until the message is accepted.
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
  const problem = document.getElementById("composer-error");
  const counter = document.getElementById("composer-count");
  const notice = document.getElementById("connection");
  const jump = document.getElementById("jump-latest");
  const temporaryToggle = document.querySelector("[data-temporary-toggle]");
  const temporaryBanner = document.querySelector("[data-temporary-banner]");
  const shareMenu = document.querySelector("[data-share-menu]");
  const Markdown = window.ParlorMarkdown;

  const RETRY_BASE_MS = 500;
  const RETRY_CAP_MS = 15000;
  const NOTICE_AFTER_MS = 800; // a blip shorter than this shows nothing
  const DRAFT_PREFIX = "parlor:draft:";
  const DRAFT_DAYS = 30;
  const DRAFTS_KEPT = 50;
  const SIGNED_OUT_PROBLEM = "You are signed out: sign in again to send this message. It is kept here.";
  // As chat/templates/chat/partials/_message.html says it after a reload.
  const INTERRUPTED = "The reply was interrupted: the server restarted before it finished.";
  // The thumbs of a reply's rating (Feather icons, as _message_actions.html draws them).
  const THUMB_UP = "M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3";
  const THUMB_DOWN = "M10 15v4a3 3 0 0 0 3 3l4-9V2H5.72a2 2 0 0 0-2 1.7l-1.38 9a2 2 0 0 0 2 2.3zm7-13h2.67A2.31 2.31 0 0 1 22 4v7a2.31 2.31 0 0 1-2.33 2H17";

  const state = {
    session: pane.dataset.session || "",
    ephemeral: !pane.dataset.session,
    model: pane.dataset.model || "",
    run: pane.dataset.run || "",
    urlBase: pane.dataset.urlBase || "/c/",
    readOnly: pane.dataset.readOnly === "1",
    // An operator's view of someone's conversation (SPEC 4.6): what is sent is written
    // in person, and the owner's messages are the other side's.
    operator: pane.dataset.operator === "1",
    operators: parseNames(pane.dataset.operators), // the operators in the conversation
    handoff: pane.dataset.handoff === "1", // the owner asked for a person
    busy: false,
    outgoing: null, // the message being sent: {content, frame, user, reply, acked, draftKey}
    replies: new Map(), // message id -> Reply (the replies streaming on this page)
    stopRequested: false,
    socket: null,
    online: false, // the socket is open
    attempts: 0, // failed connection attempts since the socket was last open
    retryTimer: 0,
    noticeTimer: 0,
    droppedAt: 0,
    everOpen: false,
    signedOut: false, // the server said so: no more reconnecting, nothing sent
    stick: true, // follow the newest text while it streams
  };

  function parseNames(raw) {
    try {
      const names = JSON.parse(raw || "[]");
      return Array.isArray(names) ? names : [];
    } catch (error) {
      return [];
    }
  }

  // ---------- Characters, as the server counts them (code points) ----------

  const PAIR = /[\uD800-\uDBFF][\uDC00-\uDFFF]/g;

  function codePoints(text) {
    const pairs = text.match(PAIR);
    return text.length - (pairs ? pairs.length : 0);
  }

  function sliceCodePoints(text, count) {
    if (codePoints(text) === text.length) return text.slice(0, count);
    let index = 0;
    for (let seen = 0; seen < count && index < text.length; seen++) {
      const code = text.charCodeAt(index);
      index += code >= 0xd800 && code <= 0xdbff && index + 1 < text.length ? 2 : 1;
    }
    return text.slice(0, index);
  }

  function maxChars() {
    return Number(pane.dataset.maxChars) || 32000;
  }

  function number(value) {
    return value.toLocaleString("en-US");
  }

  // ---------- Scrolling ----------

  function nearBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  }

  // Where the page last scrolled to by itself: above it, the person scrolled up (maybe
  // before the scroll event has told us), and the page stops following the reply.
  let autoTop = null;

  function scrollDown(force) {
    if (force) state.stick = true;
    else if (autoTop !== null && scroller.scrollTop < autoTop - 4) state.stick = false;
    if (state.stick) {
      scroller.scrollTop = scroller.scrollHeight;
      autoTop = scroller.scrollTop;
    }
    refreshJump();
  }

  function refreshJump() {
    if (jump) jump.hidden = nearBottom();
  }

  scroller.addEventListener(
    "scroll",
    function () {
      state.stick = nearBottom();
      autoTop = state.stick ? scroller.scrollTop : null;
      refreshJump();
    },
    { passive: true }
  );

  if (jump) {
    jump.addEventListener("click", function () {
      state.stick = true;
      scroller.scrollTo({ top: scroller.scrollHeight, behavior: "smooth" });
      if (input && !state.readOnly) input.focus({ preventScroll: true });
    });
  }

  // Scroll to the newest message before htmx looks at the "load older" sentinel, so
  // history is only fetched when the person scrolls up to it.
  scroller.scrollTop = scroller.scrollHeight;

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

  // ---------- The connection ----------

  function socketUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + location.host + "/ws/chat/";
  }

  function connect() {
    window.clearTimeout(state.retryTimer);
    state.retryTimer = 0;
    if (state.socket || state.signedOut) return;
    const socket = new WebSocket(socketUrl());
    let opened = false;
    state.socket = socket;
    socket.addEventListener("open", function () {
      if (state.socket !== socket) return;
      opened = true;
      const wasDropped = state.everOpen;
      state.online = true;
      state.everOpen = true;
      state.attempts = 0;
      state.droppedAt = 0;
      window.clearTimeout(state.noticeTimer);
      if (state.outgoing && !state.outgoing.acked) {
        // The send follows the conversation; subscribing waits for its answer.
        transmitOutgoing();
      } else {
        subscribe();
      }
      if (wasDropped) {
        showNotice("back");
        refreshSidebar();
      }
      refreshComposer();
    });
    socket.addEventListener("message", function (event) {
      if (state.socket !== socket) return;
      let data;
      try {
        data = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      if (data && typeof data.type === "string") handle(data);
    });
    socket.addEventListener("close", function (event) {
      if (state.socket !== socket) return;
      state.socket = null;
      dropped(event.code, opened);
    });
  }

  // The socket is gone: say so (after a moment, so a blip shows nothing) and try again
  // after a delay that doubles each time up to a cap, with jitter so that the tabs of
  // a restarted server do not all come back at the same instant. Closed for want of a
  // sign-in (4401), or refused before it opened, which a browser cannot tell from a
  // network failure (the consumer closes before accepting: a failed handshake), the
  // page is signed out: it stops trying, and says so as for any other request.
  function dropped(code, opened) {
    const wasOnline = state.online;
    state.online = false;
    if (code === 4401) {
      announceSignedOut();
      return;
    }
    if (state.signedOut) return;
    if (!opened) checkSignedIn();
    if (wasOnline || !state.droppedAt) state.droppedAt = Date.now();
    state.attempts += 1;
    const ceiling = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * Math.pow(2, state.attempts - 1));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    window.clearTimeout(state.retryTimer);
    state.retryTimer = window.setTimeout(connect, delay);
    const since = Date.now() - state.droppedAt;
    window.clearTimeout(state.noticeTimer);
    if (since >= NOTICE_AFTER_MS || !state.everOpen) {
      showNotice("offline");
    } else {
      state.noticeTimer = window.setTimeout(function () {
        if (!state.online) showNotice("offline");
      }, NOTICE_AFTER_MS - since);
    }
    refreshComposer();
  }

  function reconnectNow() {
    if (state.online || state.signedOut) return;
    if (state.socket && state.socket.readyState === WebSocket.CONNECTING) return;
    if (state.socket) {
      state.socket.close();
      state.socket = null;
    }
    connect();
  }

  function showNotice(kind) {
    if (!notice) return;
    window.clearTimeout(state.backTimer);
    if (kind === "back") {
      if (!notice.firstChild) return; // nothing was shown: nothing to take back
      notice.replaceChildren(noticeBox("Connected again.", false));
      notice.dataset.state = "online";
      state.backTimer = window.setTimeout(function () {
        notice.replaceChildren();
        delete notice.dataset.state;
      }, 2000);
      return;
    }
    if (state.signedOut) return; // the signed-out notice says it all
    let text = "Connection lost. Reconnecting…";
    if (state.outgoing && !state.outgoing.acked) {
      text += " Your message will be sent when the connection is back.";
    }
    const shown = notice.querySelector(".connection-text");
    if (shown && shown.textContent === text) return;
    notice.replaceChildren(noticeBox(text, true));
    notice.dataset.state = "offline";
  }

  function noticeBox(text, offline) {
    const box = document.createElement("div");
    box.className = "connection-box";
    const span = document.createElement("span");
    span.className = "connection-text";
    span.textContent = text;
    box.appendChild(span);
    if (offline) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link-button connection-retry";
      button.textContent = "Try now";
      button.addEventListener("click", reconnectNow);
      box.append(" ", button);
    }
    return box;
  }

  function transmit(frame) {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) {
      state.socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  // Follow the open conversation: a reply in progress (after a reload, a reconnect, or
  // started in another tab) comes as its text so far (one token at offset 0), then live.
  function subscribe() {
    if (state.ephemeral || !state.session) return;
    transmit({ type: "subscribe", session: state.session });
  }

  // ---------- Signed out ----------

  // Ask the server, as an htmx request of the page would: its 401 answer names the
  // "parlor:signed-out" event, raised here as htmx raises it (static/js/app.js shows
  // the notice); no answer (the server down) is not one, and the page keeps trying.
  let checking = false;

  function checkSignedIn() {
    if (checking || state.signedOut || !pane.dataset.signedInUrl) return;
    checking = true;
    window
      .fetch(pane.dataset.signedInUrl, {
        headers: { "HX-Request": "true", "HX-Current-URL": location.href },
        cache: "no-store",
        credentials: "same-origin",
      })
      .then(function (response) {
        const trigger = response.headers.get("HX-Trigger") || "";
        if (response.status === 401 && trigger.indexOf("parlor:signed-out") !== -1) announceSignedOut();
      })
      .catch(function () {
        // The server is down: the next attempt asks again.
      })
      .finally(function () {
        checking = false;
      });
  }

  function announceSignedOut() {
    document.dispatchEvent(new CustomEvent("parlor:signed-out"));
  }

  // The page is signed out (its socket refused, or an htmx request answered 401): no
  // more reconnecting; a message not yet sent goes back into the composer; what is
  // typed stays there, and in its draft, for after signing in again.
  document.addEventListener("parlor:signed-out", function () {
    if (state.signedOut) return;
    state.signedOut = true;
    window.clearTimeout(state.retryTimer);
    window.clearTimeout(state.noticeTimer);
    window.clearTimeout(state.backTimer);
    if (notice) {
      notice.replaceChildren();
      delete notice.dataset.state;
    }
    const outgoing = state.outgoing;
    if (outgoing && !outgoing.acked && !state.online) {
      refused(outgoing, { error: SIGNED_OUT_PROBLEM });
    }
    drafts.save();
    refreshComposer();
  });

  window.addEventListener("online", reconnectNow);
  window.addEventListener("offline", function () {
    // The browser knows the network is gone: no need to wait for the socket to notice.
    if (state.socket) state.socket.close();
  });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && !state.online) reconnectNow();
  });

  // ---------- Messages in the page ----------

  let emptyState = document.getElementById("empty-chat");

  function removeEmptyState() {
    if (emptyState) emptyState.remove();
  }

  function restoreEmptyState() {
    if (emptyState && !list.querySelector(".msg")) list.appendChild(emptyState);
  }

  // A message's bubble; `name` is an operator's (role "operator": a person from support).
  function makeBubble(role, messageId, name) {
    const article = document.createElement("article");
    article.className = "msg msg-" + role;
    const main = document.createElement("div");
    main.className = "msg-main";
    const label = document.createElement("h3");
    label.className = "visually-hidden";
    if (role === "user") {
      label.textContent = state.operator ? (pane.dataset.ownerName || "The user") + " said" : "You said";
    } else if (role === "operator") {
      label.textContent = (name || "An operator") + " from support said";
    } else {
      label.textContent = "Assistant replied";
    }
    main.appendChild(label);
    if (role === "operator") {
      const avatar = document.createElement("div");
      avatar.className = "avatar avatar-person";
      avatar.setAttribute("aria-hidden", "true");
      avatar.textContent = (name || "?").charAt(0).toUpperCase();
      article.appendChild(avatar);
      const author = document.createElement("p");
      author.className = "msg-author";
      author.textContent = (name || "An operator") + " ";
      const tag = document.createElement("span");
      tag.className = "msg-author-role";
      tag.textContent = "· support";
      author.appendChild(tag);
      main.appendChild(author);
    }
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
      // Screen readers read it once it is complete, not frame by frame.
      article.setAttribute("aria-busy", "true");
    }
    const body = document.createElement("div");
    body.className = "msg-body markdown";
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

  // A reply streaming on this page: the server's text (placed by offsets counted in
  // code points, as the server counts them) and what is shown, which never shrinks.
  function Reply(bubble) {
    this.bubble = bubble;
    this.server = "";
    this.length = 0; // code points in `server`
    this.shown = bubble.dataset.text || "";
    delete bubble.dataset.text;
    this.view = new Markdown.StreamView(bubble.querySelector(".msg-body"));
    if (this.shown) this.view.update(this.shown);
  }

  Reply.prototype.put = function (content, offset) {
    if (typeof offset !== "number" || offset === this.length) {
      this.server += content;
      this.length += codePoints(content);
    } else if (offset < this.length) {
      this.server = sliceCodePoints(this.server, offset) + content;
      this.length = offset + codePoints(content);
    } else {
      // Frames were missed (this should not happen): keep what came, in order.
      this.server += content;
      this.length = offset + codePoints(content);
    }
    // A catch-up may hold less than the page showed (a server killed before it saved the
    // last second or two): what was read stays on screen until the text is longer.
    if (this.server.length >= this.shown.length || !this.shown.startsWith(this.server)) {
      this.shown = this.server;
    }
    this.view.update(this.shown);
  };

  function replyOf(bubble) {
    const id = bubble.dataset.messageId || "";
    let reply = state.replies.get(id);
    if (!reply || reply.bubble !== bubble) {
      reply = new Reply(bubble);
      state.replies.set(id, reply);
    }
    return reply;
  }

  function rekey(bubble) {
    // The pending reply got its id: move its record to it.
    state.replies.forEach(function (reply, key) {
      if (reply.bubble === bubble && key !== bubble.dataset.messageId) {
        state.replies.delete(key);
        state.replies.set(bubble.dataset.messageId, reply);
      }
    });
  }

  function bubbleFor(messageId, create) {
    if (messageId !== undefined && messageId !== null) {
      const found = document.getElementById("msg-" + messageId);
      if (found) return found;
    }
    const outgoing = state.outgoing;
    if (outgoing && outgoing.reply && !outgoing.reply.dataset.messageId) {
      if (messageId !== undefined && messageId !== null) {
        setMessageId(outgoing.reply, messageId);
        rekey(outgoing.reply);
      }
      return outgoing.reply;
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

  function setStatusLine(bubble, text) {
    const line = bubble && bubble.querySelector(".msg-status");
    if (line) line.textContent = text || "";
  }

  function finish(bubble, status) {
    bubble.classList.remove("streaming");
    bubble.removeAttribute("aria-busy");
    bubble.dataset.status = status;
    setStatusLine(bubble, "");
    state.replies.delete(bubble.dataset.messageId || "");
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

  // Refresh the sidebar soon (several reasons at once make one request), if the
  // connection is up: when it comes back, it is refreshed anyway. While the person is
  // using it (an item's menu open, a rename, tags or folder form), the refresh waits:
  // swapping the list would close the menu or lose the form under their hands.
  let sidebarTimer = 0;
  const SIDEBAR_BUSY = ".renaming, .tagging, .filing, details.item-menu[open]";

  function refreshSidebar(delay) {
    window.clearTimeout(sidebarTimer);
    sidebarTimer = window.setTimeout(function () {
      if (!state.online || state.signedOut) return;
      const groups = document.getElementById("session-groups");
      if (!groups || !window.htmx) return;
      if (groups.querySelector(SIDEBAR_BUSY)) {
        refreshSidebar(1000);
        return;
      }
      window.htmx.trigger(groups, "refresh");
    }, delay || 300);
  }

  // A refresh that answers after the person began to use the list is not swapped in;
  // it is asked again once they are done. (Their own writes, sent from an item, swap.)
  document.addEventListener("htmx:beforeSwap", function (event) {
    const groups = event.detail.elt;
    if (!(groups instanceof Element) || groups.id !== "session-groups") return;
    if (event.detail.target !== groups || !groups.querySelector(SIDEBAR_BUSY)) return;
    event.detail.shouldSwap = false;
    refreshSidebar(1000);
  });

  function streamingNow() {
    return Boolean(list.querySelector(".msg-assistant.streaming"));
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
          (state.outgoing && state.outgoing.reply) ||
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
      case "participant":
        onParticipant(event);
        break;
      case "message":
        onPersonMessage(event);
        break;
    }
  }

  // The message was accepted: it is stored, its reply is on its way.
  function onSession(event) {
    if (!event.session) return;
    const outgoing = state.outgoing;
    const wasEphemeral = state.ephemeral;
    state.session = event.session;
    state.ephemeral = false;
    pane.dataset.session = event.session;
    const heading = document.getElementById("chat-title");
    if (heading) heading.dataset.titleFor = event.session;
    if (event.title) updateTitle(event.session, event.title);
    if (outgoing && !outgoing.acked) {
      outgoing.acked = true;
      outgoing.user.classList.remove("pending");
      const note = outgoing.user.querySelector(".msg-pending");
      if (note) note.remove();
      if (event.user_message) setMessageId(outgoing.user, event.user_message);
      if (event.message && !outgoing.reply.dataset.messageId) {
        setMessageId(outgoing.reply, event.message);
        rekey(outgoing.reply);
      }
      // Sent: its draft is done with (what is typed since is kept under the conversation).
      if (outgoing.draftKey) {
        drafts.forget(outgoing.draftKey);
        drafts.save();
      }
      if (outgoing.kind === "send") addActions(outgoing.user);
      if (state.stopRequested) transmit({ type: "stop", session: state.session });
      if (!event.message) {
        // No reply to wait for (an operator joined the conversation, say).
        finish(outgoing.reply, "complete");
        outgoing.reply.remove();
        state.outgoing = null;
        setBusy(streamingNow());
      }
    }
    if (wasEphemeral) {
      // The conversation now exists: give it its address without reloading.
      history.replaceState(null, "", state.urlBase + event.session);
      refreshSidebar();
      conversationStarted(event.session, Boolean(outgoing && outgoing.frame.temporary));
      llmPickerStored(event.session);
      refreshPeople();
    }
    refreshNotice();
  }

  // ---------- People in the loop: asking for a person, operators (SPEC 4.6) ----------

  const peopleLine = document.getElementById("people-line");
  const handoffButton = document.querySelector("[data-handoff-button]");
  const suggestButton = document.querySelector("[data-suggest]");

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (error) {
      return "";
    }
  }

  // The line under the header: who is here besides the assistant, or that a person was
  // asked for; and the "Talk to a person" button while neither.
  function refreshPeople() {
    let text = "";
    if (state.operator) {
      text = "You are answering " + (pane.dataset.ownerName || "the user") + " in person: the assistant does not reply while you are here. Leave to hand the conversation back to it.";
    } else if (state.operators.length) {
      const names = state.operators.join(", ");
      text = names + " from support " + (state.operators.length > 1 ? "are" : "is") + " in this conversation: your messages go to them. The assistant is back when they leave.";
    } else if (state.handoff) {
      text = "You asked for a person: someone from support will join shortly. The assistant answers meanwhile.";
    }
    if (peopleLine && peopleLine.textContent !== text) peopleLine.textContent = text;
    if (peopleLine) peopleLine.hidden = !text;
    if (handoffButton) handoffButton.hidden = !state.session || state.ephemeral || state.handoff || state.operators.length > 0;
  }

  // A line in the conversation where someone joined or left (not stored: the header says
  // who is here after a reload).
  function eventLine(text) {
    const line = document.createElement("p");
    line.className = "msg-event";
    line.textContent = text;
    removeEmptyState();
    list.appendChild(line);
    scrollDown(false);
    announce(text);
  }

  function onParticipant(event) {
    const name = event.name || "Someone";
    if (event.action === "requested") {
      state.handoff = true;
      if (!state.operator) eventLine("You asked for a person. Someone from support will join shortly.");
    } else if (event.action === "joined") {
      if (state.operators.indexOf(name) < 0) state.operators.push(name);
      eventLine(name + " from support joined the conversation.");
    } else if (event.action === "left") {
      const at = state.operators.indexOf(name);
      if (at >= 0) state.operators.splice(at, 1);
      if (!state.operators.length) state.handoff = false;
      eventLine(name + " left the conversation." + (state.operators.length ? "" : " The assistant answers again."));
    }
    refreshPeople();
  }

  // A message a person wrote (the owner while an operator is here, or an operator), sent
  // from elsewhere: shown as the page shows it after a reload. One sent from this page is
  // shown already (its client_id, or its id once the server named it).
  function onPersonMessage(event) {
    const message = event.message;
    if (!message || !message.id || document.getElementById("msg-" + message.id)) return;
    const outgoing = state.outgoing;
    if (outgoing && message.client_id && outgoing.frame.client_id === message.client_id) return;
    const operator = message.role === "operator";
    const name = message.author && message.author.name;
    const bubble = makeBubble(operator ? "operator" : "user", message.id, name);
    if (!operator) bubble.dataset.raw = message.content;
    // Rendered as the page renders a message it sends (markdown-it, then DOMPurify).
    bubble.querySelector(".msg-body").innerHTML = Markdown.html(message.content);
    addActions(bubble);
    enhanceCode(bubble);
    scrollDown(false);
    if (operator && !state.operator) announce(name + " from support replied.");
  }

  if (handoffButton) {
    handoffButton.addEventListener("click", function () {
      if (!state.session) return;
      handoffButton.disabled = true;
      fetch("/api/sessions/" + state.session + "/handoff/", {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
      })
        .then(function (response) {
          return response.json().then(function (body) {
            if (!response.ok) throw new Error((body && body.error && body.error.message) || "");
            state.handoff = Boolean(body.handoff_requested_at) || state.handoff;
            refreshPeople();
          });
        })
        .catch(function (error) {
          showProblem(error.message || "Could not ask for a person: please try again.");
        })
        .finally(function () {
          handoffButton.disabled = false;
        });
    });
  }

  // "Suggest a reply" (operators): the assistant drafts one, streamed into the composer
  // for the operator to edit and send. Nothing is stored or shown to the owner.
  if (suggestButton) {
    suggestButton.addEventListener("click", function () {
      suggest().catch(function () {
        showProblem("No suggestion: the connection failed. Please try again.");
      });
    });
  }

  async function suggest() {
    showProblem("");
    suggestButton.disabled = true;
    const label = suggestButton.textContent;
    suggestButton.textContent = "Suggesting…";
    input.value = "";
    try {
      const response = await fetch("/api/sessions/" + state.session + "/suggest/", {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(), Accept: "text/event-stream" },
      });
      if (!response.ok) {
        const body = await response.json().catch(function () {
          return null;
        });
        showProblem((body && body.error && body.error.message) || "No suggestion: please try again.");
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          block.split("\n").forEach(function (line) {
            if (!line.startsWith("data: ")) return;
            const event = JSON.parse(line.slice(6));
            if (event.type === "token") input.value += event.content || "";
            else if (event.type === "done") input.value = event.content || input.value;
            else if (event.type === "error") showProblem(event.error || "No suggestion.");
          });
        }
      }
    } finally {
      suggestButton.disabled = false;
      suggestButton.textContent = label;
      input.dispatchEvent(new Event("input"));
      input.focus();
    }
  }

  refreshPeople();

  // ---------- Temporary chats and the Share menu ----------

  // A new chat's toggle: its first message makes the conversation a temporary one (never
  // listed, never the active one, deleted after TEMPORARY_CHAT_TTL). The banner says so.
  // (The toggle is described by the banner: a screen reader reads it on the toggle too.)
  if (temporaryToggle && temporaryBanner) {
    temporaryToggle.addEventListener("change", function () {
      temporaryBanner.hidden = !temporaryToggle.checked;
      const keptNote = document.querySelector("[data-kept-note]");
      if (keptNote) keptNote.hidden = temporaryToggle.checked;
    });
  }

  // The first message created the conversation: the toggle has done its job; a kept
  // conversation can now be shared (its panel loads when the menu opens).
  function conversationStarted(sessionId, temporary) {
    if (temporaryToggle) temporaryToggle.closest("label").remove();
    if (temporary || !shareMenu) {
      if (shareMenu) shareMenu.remove();
      return;
    }
    const panel = shareMenu.querySelector("[data-share-panel]");
    panel.setAttribute("hx-get", "/c/" + sessionId + "/share");
    panel.setAttribute("hx-trigger", "toggle from:closest details");
    panel.setAttribute("hx-swap", "outerHTML");
    if (window.htmx) window.htmx.process(panel);
    shareMenu.hidden = false;
  }

  // ---------- The LLM picker (chat header) ----------

  // A new chat's choice goes with its first message, when it is not what the
  // conversation gets anyway (its model's LLM, or the default one).
  function llmChoice() {
    const select = document.getElementById("llm-select");
    return select && select.value !== select.dataset.initial ? select.value : "";
  }

  // Once the conversation exists, a change of the picker is saved at once (htmx: 204).
  function llmPickerStored(sessionId) {
    const picker = document.getElementById("llm-picker");
    if (!picker) return;
    const url = "/c/" + sessionId + "/llm";
    picker.setAttribute("action", url);
    picker.setAttribute("hx-post", url);
    if (window.htmx) window.htmx.process(picker);
  }

  // A subscribe replays the conversation's last reply; one already shown finished
  // (complete, stopped or failed) is left as it is.
  function isFinished(messageId) {
    const shown = messageId ? document.getElementById("msg-" + messageId) : null;
    return Boolean(shown && shown.dataset.status && shown.dataset.status !== "streaming");
  }

  function onToken(event) {
    if (isFinished(event.message)) return;
    const bubble = bubbleFor(event.message, true);
    setStatusLine(bubble, "");
    replyOf(bubble).put(event.content || "", event.offset);
    setBusy(true);
    scrollDown(false);
  }

  function onDone(event) {
    if (isFinished(event.message)) return;
    const bubble = bubbleFor(event.message, true);
    const wasStreaming = bubble.classList.contains("streaming");
    // The server's rendering, sanitised (markdown-it without raw HTML, then nh3): the
    // same as the page's own, so normally nothing moves.
    replyOf(bubble).view.finish(event.html || "");
    const stopped = event.status === "stopped" || (!event.status && state.stopRequested);
    finish(bubble, stopped ? "stopped" : "complete");
    if (stopped && !bubble.querySelector(".msg-note")) {
      const note = document.createElement("p");
      note.className = "msg-note";
      note.textContent = "Stopped";
      bubble.querySelector(".msg-main").appendChild(note);
    }
    const outgoing = state.outgoing && state.outgoing.reply === bubble ? state.outgoing : null;
    replyEnded(bubble);
    if (wasStreaming) refreshSidebar();
    enhanceCode(bubble);
    if (outgoing && outgoing.kind !== "send") {
      // A new version: the server's rendering shows its place among the versions.
      refreshBubble(bubble);
      if (outgoing.kind === "edit") refreshBubble(outgoing.user);
    } else if (bubble.dataset.usedTools) {
      refreshBubble(bubble);
    } else {
      addActions(bubble);
    }
  }

  // Show a message as the server renders it now (its actions, versions, tools used).
  function refreshBubble(bubble) {
    if (!bubble || !bubble.dataset.messageId || !state.session || !window.htmx) return;
    const url = "/c/" + state.session + "/messages/" + bubble.dataset.messageId;
    window.htmx.ajax("GET", url, { target: bubble, swap: "outerHTML" });
  }

  function onError(event) {
    if (isFinished(event.message)) return;
    const outgoing = state.outgoing;
    if (event.message === undefined || event.message === null) {
      if (outgoing && !outgoing.acked) {
        refused(outgoing, event);
        return;
      }
      if (event.code === "not_found") {
        // Deleted (in another tab, say): nothing more will come for it.
        showProblem("This conversation was deleted. What you type here starts a new one.");
        state.ephemeral = true;
        state.session = "";
        list.querySelectorAll(".msg-assistant.streaming").forEach(function (bubble) {
          finish(bubble, "error");
        });
        setBusy(false);
        return;
      }
      showProblem(event.error || "Something went wrong.");
      return;
    }
    const bubble = bubbleFor(event.message, false);
    if (!bubble) return;
    // What was shown stays; the reason and Retry go under it.
    const reply = state.replies.get(bubble.dataset.messageId || "");
    if (reply) reply.view.flush();
    finish(bubble, "error");
    showError(bubble, event.code === "interrupted" ? INTERRUPTED : event.error);
    replyEnded(bubble);
    refreshSidebar();
  }

  function replyEnded(bubble) {
    if (state.outgoing && state.outgoing.reply === bubble) state.outgoing = null;
    const hadFocus = composerHadFocus();
    setBusy(streamingNow());
    scrollDown(false);
    // The person carries on typing: the focus goes back to the composer, unless they
    // have put it somewhere else on purpose.
    if (!state.busy && hadFocus) focusComposer();
  }

  // The server refused the message (too long, rate limited, a quota, a server error…):
  // it goes back into the composer, with the reason beside it.
  function refused(outgoing, event) {
    state.outgoing = null;
    if (outgoing.kind !== "regenerate") outgoing.user.remove();
    outgoing.reply.remove();
    if (outgoing.kind !== "send") reloadMessages();
    restoreEmptyState();
    if (state.ephemeral) state.session = ""; // nothing was created: a fresh id next time
    if (input && outgoing.content !== null) {
      const typed = input.value;
      input.value = typed.trim() ? outgoing.content + "\n\n" + typed : outgoing.content;
      drafts.save();
    }
    state.stopRequested = false;
    setBusy(streamingNow());
    showProblem(event.error || "The message could not be sent.");
    focusComposer();
    if (!state.ephemeral) subscribe();
    refreshNotice();
  }

  // ---------- Composer ----------

  const defaultHint = hint ? hint.textContent : "";

  function showProblem(text) {
    if (!problem) return;
    problem.textContent = text || "";
    if (hint) hint.hidden = Boolean(text);
  }

  function lengthProblem(content) {
    const length = codePoints(content);
    const limit = maxChars();
    if (length <= limit) return "";
    return (
      "The message is " + number(length) + " characters long; the limit is " + number(limit) +
      ". Shorten it by " + number(length - limit) + " to send it."
    );
  }

  function refreshCounter() {
    if (!counter || !input) return;
    const length = codePoints(input.value);
    const limit = maxChars();
    const near = length >= limit * 0.8;
    counter.hidden = !near;
    counter.textContent = near ? number(length) + " / " + number(limit) : "";
    counter.classList.toggle("over", length > limit);
  }

  function composerHadFocus() {
    const active = document.activeElement;
    return (
      !active ||
      active === document.body ||
      active === input ||
      active === sendButton ||
      active === stopButton
    );
  }

  function focusComposer() {
    if (input && !state.readOnly && !document.body.classList.contains("drawer-open")) {
      input.focus({ preventScroll: true });
    }
  }

  function canSend() {
    return (
      !state.busy && !state.outgoing && !state.readOnly && !state.signedOut && input && input.value.trim() !== ""
    );
  }

  function refreshComposer() {
    if (!input) return;
    const focused = document.activeElement;
    sendButton.disabled = !canSend();
    sendButton.hidden = state.busy;
    stopButton.hidden = !state.busy;
    // A button that disappears under the focus hands it to the composer.
    if ((focused === sendButton && sendButton.hidden) || (focused === stopButton && stopButton.hidden)) {
      focusComposer();
    }
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 200) + "px";
    refreshCounter();
  }

  function refreshNotice() {
    if (!state.online && notice && notice.firstChild) showNotice("offline");
  }

  function setBusy(busy) {
    state.busy = busy || Boolean(state.outgoing);
    if (!state.busy) state.stopRequested = false;
    refreshComposer();
  }

  // Send a message, or with `options.edit` (a user message's id) a new version of that
  // question, or with `options.regenerate` (an assistant reply's bubble) a new version of
  // that reply. What the new version replaces leaves the page at once (the server keeps
  // it, one version back); the reply streams like any other.
  function send(content, options) {
    options = options || {};
    showProblem("");
    if (content !== null) {
      const tooLong = lengthProblem(content);
      if (tooLong) {
        showProblem(tooLong);
        return false;
      }
    }
    if (state.ephemeral && !state.session) state.session = uuid4();
    let frame;
    let mine;
    let kind = "send";
    if (options.regenerate) {
      kind = "regenerate";
      const old = options.regenerate;
      frame = { type: "regenerate", message: Number(old.dataset.messageId) };
      mine = old.previousElementSibling;
      removeFrom(old);
    } else {
      if (options.edit) {
        kind = "edit";
        frame = { type: "edit", message: Number(options.edit.dataset.messageId), content: content, client_id: uuid4() };
        removeFrom(options.edit);
      } else {
        frame = { type: "send", session: state.session, content: content, client_id: uuid4() };
        if (state.ephemeral) {
          if (state.model) frame.model = Number(state.model);
          if (state.run) frame.run = Number(state.run);
          if (temporaryToggle && temporaryToggle.checked) frame.temporary = true;
          const chosenLlm = llmChoice();
          if (chosenLlm) frame.llm = chosenLlm;
        }
      }
      mine = state.operator ? makeBubble("operator", null, "You") : makeBubble("user");
      mine.dataset.raw = content;
      // Rendered as the server renders it after a reload.
      mine.querySelector(".msg-body").innerHTML = Markdown.html(content);
    }
    const reply = makeBubble("assistant");
    state.outgoing = {
      kind: kind,
      content: content,
      frame: frame,
      user: mine,
      reply: reply,
      acked: false,
      transmitted: false,
      draftKey: kind === "send" ? drafts.key() : null,
    };
    state.stopRequested = false;
    setBusy(true);
    scrollDown(true);
    transmitOutgoing();
    return true;
  }

  // Take a message and everything after it off the page (a new version replaces them).
  function removeFrom(bubble) {
    while (bubble.nextElementSibling) bubble.nextElementSibling.remove();
    bubble.remove();
  }

  // Send the message being sent (again, after a reconnect: the same client_id makes a
  // second copy the same message, and the server answers as for the first).
  function transmitOutgoing() {
    const outgoing = state.outgoing;
    if (!outgoing || outgoing.acked) return;
    if (transmit(outgoing.frame)) {
      outgoing.transmitted = true;
      outgoing.user.classList.remove("pending");
      const note = outgoing.user.querySelector(".msg-pending");
      if (note) note.remove();
      return;
    }
    outgoing.user.classList.add("pending");
    if (!outgoing.user.querySelector(".msg-pending")) {
      const note = document.createElement("p");
      note.className = "msg-pending";
      note.textContent = "Not sent yet: waiting for the connection.";
      outgoing.user.querySelector(".msg-main").appendChild(note);
    }
    if (!state.online && !state.droppedAt) state.droppedAt = Date.now();
    showNotice("offline");
  }

  // ---------- Drafts: per conversation, in localStorage, until the message is sent ----

  const drafts = {
    key: function () {
      if (!state.ephemeral && state.session) return DRAFT_PREFIX + state.session;
      return DRAFT_PREFIX + "new:" + (state.model || "") + ":" + (state.run || "");
    },
    read: function (key) {
      try {
        const raw = window.localStorage.getItem(key);
        if (!raw) return null;
        const value = JSON.parse(raw);
        return value && typeof value.text === "string" ? value : null;
      } catch (err) {
        return null;
      }
    },
    save: function () {
      if (!input) return;
      const key = drafts.key();
      try {
        if (input.value.trim()) {
          window.localStorage.setItem(key, JSON.stringify({ text: input.value, at: Date.now() }));
        } else {
          window.localStorage.removeItem(key);
        }
      } catch (err) {
        // Storage full or forbidden: the composer still holds the text.
      }
    },
    write: function (key, text) {
      try {
        window.localStorage.setItem(key, JSON.stringify({ text: text, at: Date.now() }));
      } catch (err) {
        // Storage full or forbidden: nothing more to do.
      }
    },
    forget: function (key) {
      try {
        window.localStorage.removeItem(key);
      } catch (err) {
        // Nothing to do.
      }
    },
    // Drop drafts older than DRAFT_DAYS, and the oldest beyond DRAFTS_KEPT.
    prune: function () {
      try {
        const found = [];
        for (let i = 0; i < window.localStorage.length; i++) {
          const key = window.localStorage.key(i);
          if (key && key.startsWith(DRAFT_PREFIX)) found.push([key, (drafts.read(key) || { at: 0 }).at]);
        }
        const cutoff = Date.now() - DRAFT_DAYS * 86400000;
        found.sort(function (a, b) {
          return b[1] - a[1];
        });
        found.forEach(function (entry, index) {
          if (entry[1] < cutoff || index >= DRAFTS_KEPT) window.localStorage.removeItem(entry[0]);
        });
      } catch (err) {
        // Nothing to do.
      }
    },
  };

  let draftTimer = 0;

  if (form && input) {
    drafts.prune();
    const kept = drafts.read(drafts.key());
    const users = list.querySelectorAll(".msg-user[data-raw]");
    const lastSent = users.length ? users[users.length - 1].dataset.raw : null;
    if (kept && kept.text === lastSent) {
      // Sent after all (the page went away before it heard so): not a draft any more.
      drafts.forget(drafts.key());
    } else if (kept && !input.value) {
      input.value = kept.text;
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (state.signedOut && input.value.trim()) {
        showProblem(SIGNED_OUT_PROBLEM);
        announceSignedOut();
        return;
      }
      if (!canSend()) {
        if (input.value.trim() && lengthProblem(input.value)) showProblem(lengthProblem(input.value));
        return;
      }
      const content = input.value;
      if (send(content)) {
        input.value = "";
        window.clearTimeout(draftTimer);
        // Kept until the server has it: a reload meanwhile brings it back.
        drafts.write(state.outgoing.draftKey, content);
      }
      refreshComposer();
    });

    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        if (canSend() || lengthProblem(input.value) || state.signedOut) form.requestSubmit();
      }
    });

    input.addEventListener("input", function () {
      if (problem && problem.textContent && !lengthProblem(input.value)) showProblem("");
      refreshComposer();
      window.clearTimeout(draftTimer);
      draftTimer = window.setTimeout(drafts.save, 250);
    });

    window.addEventListener("pagehide", function () {
      window.clearTimeout(draftTimer);
      if (!state.outgoing || state.outgoing.acked) drafts.save();
    });

    stopButton.addEventListener("click", function () {
      const outgoing = state.outgoing;
      if (outgoing && !outgoing.acked && !outgoing.transmitted) {
        // Held while offline and never sent: not sending it gives the text back.
        refused(outgoing, { error: "Not sent. Your message is back in the composer." });
        return;
      }
      state.stopRequested = true;
      if (outgoing && !outgoing.acked) return; // sent once the message is accepted
      if (state.session && !state.ephemeral) transmit({ type: "stop", session: state.session });
    });
  }

  list.addEventListener("click", function (event) {
    const target = event.target instanceof Element ? event.target : null;
    const button = target && target.closest("button");
    if (!button || !list.contains(button)) return;
    const bubble = button.closest(".msg");
    if (button.matches("[data-retry]")) {
      if (state.busy) return;
      // Retry sends again the question the failed reply answered.
      let node = bubble;
      while (node && !node.classList.contains("msg-user")) node = node.previousElementSibling;
      if (node && node.dataset.raw) send(node.dataset.raw);
    } else if (button.matches(".code-copy")) {
      copyText(button.parentElement.querySelector("pre").innerText, button, "Copy code");
    } else if (button.matches("[data-copy]")) {
      copyText(messageText(bubble), button, "Copy");
    } else if (button.matches("[data-edit]")) {
      if (!waitForReply()) startEdit(bubble);
    } else if (button.matches("[data-regenerate]")) {
      if (!waitForReply()) send(null, { regenerate: bubble });
    } else if (button.matches("[data-branch]") && button.dataset.branch) {
      if (!waitForReply()) switchVersion(bubble, button);
    }
  });

  // Edits, regenerations and version switches wait for the reply being written.
  function waitForReply() {
    if (!state.busy && !state.outgoing) return false;
    showProblem("Wait for the reply to finish, or stop it, first.");
    return true;
  }

  // ---------- Message actions ----------

  function announce(text) {
    const region = document.getElementById("chat-announce");
    if (!region) return;
    region.textContent = "";
    window.setTimeout(function () {
      region.textContent = text;
    }, 50);
  }

  // The text of a message: as typed (a question), as streamed, or as shown.
  function messageText(bubble) {
    if (bubble.dataset.raw) return bubble.dataset.raw;
    const reply = state.replies.get(bubble.dataset.messageId || "");
    if (reply) return reply.shown;
    return bubble.querySelector(".msg-body").innerText.trim();
  }

  function copyText(text, button, label) {
    const done = function () {
      button.textContent = "Copied";
      announce("Copied to the clipboard.");
      window.setTimeout(function () {
        button.textContent = label;
      }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {
        if (copyWithSelection(text)) done();
      });
    } else if (copyWithSelection(text)) {
      done();
    }
  }

  // Where the Clipboard API is not offered (plain HTTP on another host): a selection.
  function copyWithSelection(text) {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (err) {
      copied = false;
    }
    area.remove();
    if (!copied) announce("Copying is not allowed here: select the text instead.");
    return copied;
  }

  // A copy button on each code block of finished messages.
  function enhanceCode(root) {
    root.querySelectorAll(".msg-body pre").forEach(function (pre) {
      if (pre.closest(".streaming") || pre.parentElement.classList.contains("code-block")) return;
      const block = document.createElement("div");
      block.className = "code-block";
      pre.replaceWith(block);
      block.appendChild(pre);
      const copy = document.createElement("button");
      copy.type = "button";
      copy.className = "code-copy";
      copy.textContent = "Copy code";
      block.appendChild(copy);
    });
  }

  function actionButton(label, name, attribute, value) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "msg-action";
    button.setAttribute(attribute, value || "");
    button.setAttribute("aria-label", name);
    button.textContent = label;
    return button;
  }

  // The thumbs' icon (as the server's template draws it).
  function thumbIcon(path) {
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    const attributes = {
      class: "icon-thumb", viewBox: "0 0 24 24", width: "14", height: "14", fill: "none",
      stroke: "currentColor", "stroke-width": "2", "stroke-linecap": "round",
      "stroke-linejoin": "round", "aria-hidden": "true", focusable: "false",
    };
    Object.keys(attributes).forEach(function (name) {
      svg.setAttribute(name, attributes[name]);
    });
    const line = document.createElementNS(NS, "path");
    line.setAttribute("d", path);
    svg.appendChild(line);
    return svg;
  }

  // The actions of a message shown before a reload (the server renders the same ones:
  // chat/templates/chat/partials/_message_actions.html).
  function addActions(bubble) {
    if (!bubble || !bubble.dataset.messageId || bubble.querySelector(".msg-actions")) return;
    const bar = document.createElement("div");
    bar.className = "msg-actions";
    if (state.operator || bubble.classList.contains("msg-operator")) {
      // An operator's message, or the operator's view: copied, not edited or rated.
      bar.append(actionButton("Copy", "Copy message", "data-copy"));
    } else if (bubble.classList.contains("msg-user")) {
      bar.append(actionButton("Copy", "Copy message", "data-copy"), actionButton("Edit", "Edit message", "data-edit"));
    } else {
      bar.append(actionButton("Copy", "Copy reply", "data-copy"), actionButton("Regenerate", "Regenerate reply", "data-regenerate"));
      const url = "/c/" + state.session + "/messages/" + bubble.dataset.messageId + "/feedback";
      [["up", "Good reply", THUMB_UP], ["down", "Bad reply", THUMB_DOWN]].forEach(function (rate) {
        const button = actionButton("", rate[1], "data-rate", rate[0]);
        button.appendChild(thumbIcon(rate[2]));
        button.title = rate[1];
        button.setAttribute("aria-pressed", "false");
        button.setAttribute("hx-post", url);
        button.setAttribute("hx-vals", JSON.stringify({ rating: rate[0] }));
        button.setAttribute("hx-target", "closest .msg");
        button.setAttribute("hx-swap", "outerHTML");
        bar.appendChild(button);
      });
    }
    const error = bubble.querySelector(".msg-error");
    bubble.querySelector(".msg-main").insertBefore(bar, error);
    if (window.htmx) window.htmx.process(bar);
  }

  // Edit a question in place: Save & submit sends it as a new version, Cancel (or
  // Escape) leaves it as it was.
  function startEdit(bubble) {
    if (bubble.querySelector(".msg-edit")) return;
    const body = bubble.querySelector(".msg-body");
    const bar = bubble.querySelector(".msg-actions");
    const editor = document.createElement("form");
    editor.className = "msg-edit";
    const label = document.createElement("label");
    label.className = "visually-hidden";
    const area = document.createElement("textarea");
    area.id = "edit-" + bubble.dataset.messageId;
    label.htmlFor = area.id;
    label.textContent = "Edit your message";
    area.value = bubble.dataset.raw || body.innerText;
    const buttons = document.createElement("div");
    buttons.className = "msg-edit-buttons";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "btn btn-small";
    cancel.textContent = "Cancel";
    const save = document.createElement("button");
    save.type = "submit";
    save.className = "btn btn-small btn-primary";
    save.textContent = "Save & submit";
    buttons.append(cancel, save);
    editor.append(label, area, buttons);
    body.hidden = true;
    if (bar) bar.hidden = true;
    bubble.querySelector(".msg-main").insertBefore(editor, body);
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);

    const close = function () {
      editor.remove();
      body.hidden = false;
      if (bar) bar.hidden = false;
      const again = bubble.querySelector("[data-edit]");
      if (again) again.focus();
    };
    cancel.addEventListener("click", close);
    area.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        close();
      } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        editor.requestSubmit();
      }
    });
    editor.addEventListener("submit", function (event) {
      event.preventDefault();
      const text = area.value;
      if (!text.trim()) {
        showProblem("The message is empty.");
        area.focus();
        return;
      }
      if (waitForReply()) return;
      send(text, { edit: bubble });
    });
  }

  // ‹ 2 / 3 ›: the page shows the chosen version's branch (as the server now has it).
  function switchVersion(bubble, button) {
    const target = button.dataset.branch;
    const previous = button.getAttribute("aria-label");
    if (!window.htmx || !state.session) return;
    window.htmx
      .ajax("POST", "/c/" + state.session + "/branch", {
        target: list,
        swap: "innerHTML",
        values: { message: target },
      })
      .then(function () {
        enhanceCode(list);
        const shown = document.getElementById("msg-" + target);
        if (!shown) return;
        const label = shown.querySelector(".version-label");
        if (label) announce("Version " + label.textContent.replace(/\s+/g, " "));
        // The keyboard stays on the switcher, to flip on.
        const same = shown.querySelector('.version-btn[aria-label="' + previous + '"]');
        const focus = same && !same.disabled ? same : shown.querySelector(".version-btn:not(:disabled)");
        if (focus) focus.focus();
      });
  }

  // The page's messages as the server has them (after a refused edit, say).
  function reloadMessages() {
    if (!window.htmx || !state.session || state.ephemeral) return;
    window.htmx.ajax("GET", "/c/" + state.session + "/messages", { target: list, swap: "innerHTML" }).then(function () {
      enhanceCode(list);
    });
  }

  // Older messages go in above what is on screen: keep the view where it was.
  let fromBottom = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    const target = event.detail.target;
    if (target && target.classList && target.classList.contains("older-loader")) {
      fromBottom = scroller.scrollHeight - scroller.scrollTop;
    }
  });
  document.addEventListener("htmx:afterSwap", function () {
    enhanceCode(list);
    if (fromBottom === null) return;
    scroller.scrollTop = scroller.scrollHeight - fromBottom;
    fromBottom = null;
  });

  // A reply already streaming when the page loaded: its text so far, rendered, until
  // the subscribe catches it up.
  list.querySelectorAll('.msg-assistant[data-status="streaming"]').forEach(function (bubble) {
    replyOf(bubble).view.flush();
    state.busy = true;
  });

  window.ParlorChat = {
    stop: function () {
      if (!stopButton.hidden) stopButton.click();
    },
    focusComposer: focusComposer,
  };

  enhanceCode(list);
  refreshComposer();
  refreshJump();
  if (input && !state.readOnly && window.matchMedia("(min-width: 769px)").matches) input.focus();
  connect();
})();
