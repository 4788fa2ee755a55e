// Parlor page behaviour that is not the chat stream: the phone drawer, the search box,
// the item menus, inline rename and tags, keyboard shortcuts, the sidebar's scroll
// position, highlight and focus across htmx refreshes, and the signed-out notice. No inline handlers anywhere:
// the CSP forbids them.
(function () {
  "use strict";

  function setDrawer(open) {
    document.body.classList.toggle("drawer-open", open);
    document.querySelectorAll("[data-drawer-open]").forEach(function (button) {
      button.setAttribute("aria-expanded", open ? "true" : "false");
    });
    // Move focus into the drawer (not the search box: that would pop a phone keyboard).
    const target = open ? ".drawer-close" : "[data-drawer-open]";
    window.requestAnimationFrame(function () {
      const element = document.querySelector(target);
      if (element && element.offsetParent !== null) element.focus();
    });
  }

  function closeMenus(except) {
    document.querySelectorAll("details.item-menu[open], details.share-menu[open]").forEach(function (menu) {
      if (menu !== except) menu.removeAttribute("open");
    });
  }

  document.addEventListener("click", function (event) {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    if (target.closest("[data-drawer-open]")) {
      setDrawer(true);
      return;
    }
    if (target.closest("[data-drawer-close]")) {
      setDrawer(false);
      return;
    }
    closeMenus(target.closest("details.item-menu, details.share-menu"));
    // Picking a menu action closes the menu; the htmx request goes on.
    if (target.closest("details.item-menu .menu button")) {
      target.closest("details.item-menu").removeAttribute("open");
    }
  });

  // ---------- Keyboard shortcuts (the ? dialog lists them) ----------

  function typing(target) {
    return Boolean(
      target && (target.isContentEditable || target.matches("input, textarea, select"))
    );
  }

  function visible(element) {
    return Boolean(element && element.getClientRects().length);
  }

  function openShortcuts() {
    const dialog = document.getElementById("shortcuts");
    if (!dialog || dialog.open) return;
    const before = document.activeElement;
    dialog.addEventListener(
      "close",
      function () {
        if (before && before.isConnected && before !== document.body) before.focus();
      },
      { once: true }
    );
    dialog.showModal();
  }

  function focusSearch() {
    const search = document.getElementById("search-input");
    if (!search) return false;
    if (!visible(search) && document.querySelector("[data-drawer-open]")) {
      setDrawer(true);
      window.setTimeout(function () {
        search.focus();
        search.select();
      }, 50);
    } else {
      search.focus();
      search.select();
    }
    return true;
  }

  function newChat() {
    const link = document.querySelector(".chat-header a[aria-label='New chat'], .sidebar .btn-new");
    if (link) window.location.assign(link.href);
    return Boolean(link);
  }

  function focusComposer() {
    const composer = document.getElementById("composer-input");
    if (!composer) return false;
    if (document.body.classList.contains("drawer-open")) setDrawer(false);
    composer.focus();
    return true;
  }

  // An inline form's Cancel: htmx wires the controls of swapped-in content only when it
  // settles (20 ms later), so a key pressed at once would click a button that does nothing.
  function cancelForm(form, selector) {
    const cancel = form.querySelector(selector);
    if (!cancel) return;
    if (window.htmx) window.htmx.process(form);
    cancel.click();
  }

  function escape(event) {
    const target = event.target instanceof Element ? event.target : null;
    const tagsForm = target && target.closest(".tags-form");
    if (tagsForm) {
      cancelForm(tagsForm, "[data-tags-cancel]");
      return;
    }
    if (target && target.matches("[data-rename-input]")) {
      cancelForm(target.form, "[data-rename-cancel]");
      return;
    }
    const folderForm = target && target.closest(".folder-form");
    if (folderForm) {
      cancelForm(folderForm, "[data-folder-cancel]");
      return;
    }
    if (document.querySelector("details.item-menu[open], details.share-menu[open]")) {
      closeMenus(null);
      return;
    }
    if (document.body.classList.contains("drawer-open")) {
      setDrawer(false);
      return;
    }
    // Nothing else to close: Esc stops the reply that is streaming.
    const stop = document.getElementById("stop-btn");
    if (stop && !stop.hidden && window.ParlorChat) {
      event.preventDefault();
      window.ParlorChat.stop();
    }
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing) return;
    const target = event.target instanceof Element ? event.target : null;
    if (document.querySelector("dialog[open]")) return; // the dialog has the keyboard
    const mod = event.ctrlKey || event.metaKey;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    let done = false;
    if (key === "Escape" && event.shiftKey) {
      done = focusComposer();
    } else if (key === "Escape") {
      escape(event);
      return;
    } else if (mod && event.shiftKey && key === "o") {
      done = newChat();
    } else if (mod && !event.shiftKey && key === "k") {
      done = focusSearch();
    } else if (mod && key === "/") {
      openShortcuts();
      done = true;
    } else if (!mod && !event.altKey && !typing(target)) {
      if (key === "?") {
        openShortcuts();
        done = true;
      } else if (key === "/") {
        done = focusComposer();
      }
    }
    if (done) event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    const target = event.target instanceof Element ? event.target : null;
    if (target && target.closest("[data-shortcuts]")) openShortcuts();
  });

  // ---------- The sidebar across htmx refreshes ----------

  function currentSession() {
    const pane = document.querySelector("[data-chat]");
    return pane ? pane.dataset.session || "" : "";
  }

  // The open conversation stays marked (an item loaded later, or a list refreshed from
  // a page whose address changed without a load), and the header follows its title.
  function markCurrent(root) {
    const current = currentSession();
    root.querySelectorAll(".session-item[data-session-id]").forEach(function (item) {
      const mine = Boolean(current) && item.dataset.sessionId === current;
      item.classList.toggle("current", mine);
      const link = item.querySelector(".session-link");
      if (!link) return;
      if (mine) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    });
    if (!current) return;
    const title = root.querySelector('.session-title[data-title-for="' + CSS.escape(current) + '"]');
    const heading = document.getElementById("chat-title");
    if (title && heading && heading.textContent !== title.textContent) {
      heading.textContent = title.textContent;
      document.title = title.textContent + " · Parlor";
    }
  }

  let sidebarScroll = null; // where the list was scrolled before a refresh
  let pendingAction = null; // a sidebar action whose answer hands the focus back

  document.addEventListener("htmx:beforeRequest", function (event) {
    const source = event.detail.elt;
    if (!(source instanceof Element)) return;
    const item = source.closest(".session-item");
    if (source.closest(".item-menu .menu") && !source.matches("[hx-get]")) {
      pendingAction = { session: item ? item.dataset.sessionId : "" };
    } else if (source.closest(".rename-form")) {
      pendingAction = { session: item ? item.dataset.sessionId : "" };
    }
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    const target = event.detail.target;
    if (target && target.id === "session-groups") sidebarScroll = target.scrollTop;
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    const groups = document.getElementById("session-groups");
    if (!groups) return;
    const target = event.detail.target;
    if (sidebarScroll !== null && target && (target.id === "session-groups" || !target.isConnected)) {
      groups.scrollTop = sidebarScroll;
      // A refresh brings the first page of each group: scrolled further, the rest loads
      // as its loader comes into view, and the position is taken up again then.
      if (Math.abs(groups.scrollTop - sidebarScroll) < 2 || !groups.querySelector(".more-loader")) {
        sidebarScroll = null;
      }
    } else if (sidebarScroll !== null && groups.contains(target)) {
      groups.scrollTop = sidebarScroll;
      if (Math.abs(groups.scrollTop - sidebarScroll) < 2) sidebarScroll = null;
    }
    markCurrent(groups);
    restoreFolders(groups);
  });

  // After rename, pin, archive or delete the focus goes back to the composer (in the
  // phone drawer, to the item acted on, or the list), so a keyboard user carries on.
  document.addEventListener("htmx:afterSettle", function () {
    if (!pendingAction) return;
    const action = pendingAction;
    pendingAction = null;
    if (document.querySelector("[data-rename-input]")) return; // a rename form opened
    if (document.body.classList.contains("drawer-open")) {
      const item = action.session && document.getElementById("s-" + action.session);
      const place = (item && item.querySelector(".session-link")) || document.querySelector("#session-groups a");
      if (place) place.focus();
      return;
    }
    const composer = document.getElementById("composer-input");
    if (composer) composer.focus();
  });

  // ---------- Tags: the inline form of an item, and the list's tag filter ----------

  // The item whose tags form opened, or was sent or cancelled, and that request: the
  // focus moves when that request's answer settles, not an earlier one's.
  let pendingTags = null;
  let pendingTagsXhr = null;

  document.addEventListener("htmx:beforeRequest", function (event) {
    const source = event.detail.elt;
    if (!(source instanceof Element)) return;
    if (source.matches("[data-tags-open]") || source.closest(".tags-form")) {
      const item = source.closest(".session-item");
      pendingTags = item ? item.dataset.sessionId : null;
      pendingTagsXhr = event.detail.xhr || null;
    }
  });

  // The form open (just opened, or back with its error): its field has the focus. The
  // item back (saved or cancelled): its Actions button, where the person started.
  document.addEventListener("htmx:afterSettle", function (event) {
    if (!pendingTags || (pendingTagsXhr && event.detail.xhr !== pendingTagsXhr)) return;
    const item = document.getElementById("s-" + pendingTags);
    pendingTags = null;
    pendingTagsXhr = null;
    if (!item) return;
    const input = item.querySelector("[data-tags-input]");
    if (input) {
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
      return;
    }
    const actions = item.querySelector(".item-menu summary");
    if (actions) actions.focus();
  });

  // A tag removed in the form goes from it at once; Save stores what the form holds.
  document.addEventListener("click", function (event) {
    const target = event.target instanceof Element ? event.target : null;
    const remove = target && target.closest("[data-tag-remove]");
    if (!remove) return;
    const chip = remove.closest(".tag-chip");
    const form = remove.closest(".tags-form");
    if (!chip || !form) return;
    const name = chip.querySelector(".tag-chip-name").textContent;
    const neighbour = chip.nextElementSibling || chip.previousElementSibling;
    const list = chip.parentElement;
    chip.remove();
    if (!list.querySelector(".tag-chip")) {
      const none = document.createElement("li");
      none.className = "tags-none";
      none.textContent = "No tags left.";
      list.appendChild(none);
    }
    const status = form.querySelector("[data-tags-status]");
    if (status) status.textContent = "Removed “" + name + "”. Save to keep the change.";
    const next = (neighbour && neighbour.querySelector("[data-tag-remove]")) || form.querySelector("[data-tags-input]");
    if (next) next.focus();
  });

  // The list swapped under the focus (the tag filter chosen or cleared): the focus goes
  // back to the same control, or to the filter when the Clear button went away.
  let focusedInList = null;

  document.addEventListener("htmx:beforeSwap", function (event) {
    const target = event.detail.target;
    const active = document.activeElement;
    focusedInList =
      target && target.id === "session-groups" && active && active.id && target.contains(active) ? active.id : null;
  });

  document.addEventListener("htmx:afterSettle", function () {
    if (!focusedInList) return;
    const id = focusedInList;
    focusedInList = null;
    const again = document.getElementById(id) || (id === "tag-filter-clear" && document.getElementById("tag-filter"));
    if (again && document.activeElement !== again) again.focus();
  });

  // ---------- Signed out ----------

  // The 401 that says so is expected and handled (by the notice below): not an error
  // for htmx to log, and nothing to swap.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const xhr = event.detail.xhr;
    if (xhr && xhr.status === 401 && /parlor:signed-out/.test(xhr.getResponseHeader("HX-Trigger") || "")) {
      event.detail.shouldSwap = false;
      event.detail.isError = false;
    }
  });

  // The server's htmx answer to a signed-out person (401, HX-Trigger) and the chat
  // socket (static/js/chat.js) raise the same event; the notice links to the sign-in
  // page with `next` back to this page, as it is now. What is typed stays where it is.
  document.addEventListener("parlor:signed-out", function (event) {
    const region = document.getElementById("signed-out");
    const template = document.getElementById("signed-out-template");
    if (!region || !template) return;
    const first = !region.firstChild;
    if (first) region.appendChild(template.content.cloneNode(true));
    const link = region.querySelector(".signed-out-link");
    if (link) {
      link.href = region.dataset.loginUrl + "?next=" + encodeURIComponent(location.pathname + location.search);
    }
    pendingAction = null; // the action failed: no answer will hand the focus back
    pendingTags = null;
    // Someone acting in the sidebar (whose action just failed) goes on from the link;
    // someone typing in the composer is not interrupted (role="alert" tells them).
    const active = document.activeElement;
    const sidebar = document.getElementById("sidebar");
    const inSidebar = !active || active === document.body || (sidebar && sidebar.contains(active));
    if (first && link && inSidebar && event.target !== document) link.focus();
  });

  // While a query is typed the results replace the grouped list.
  document.addEventListener("input", function (event) {
    if (event.target && event.target.id === "search-input") {
      const sidebar = document.getElementById("sidebar");
      if (sidebar) sidebar.classList.toggle("searching", event.target.value.trim() !== "");
      if (event.target.value.trim() === "") {
        document.getElementById("search-results").replaceChildren();
      }
    }
  });

  // Focus the inline rename field, text selected, once htmx has wired its form up
  // (after the settle; before it, Enter would submit the form natively).
  document.addEventListener("htmx:afterSettle", function () {
    const input = document.querySelector("[data-rename-input]");
    if (input && document.activeElement !== input) {
      input.focus();
      input.select();
    }
  });

  // The "Move to folder" form opened (or back with its error): its choice has the focus;
  // cancelled, the item's Actions button has it.
  let pendingFolder = null;

  document.addEventListener("htmx:beforeRequest", function (event) {
    const source = event.detail.elt;
    if (!(source instanceof Element)) return;
    if (source.matches("[data-folder-open], [data-folder-cancel]") || source.closest(".folder-form")) {
      const item = source.closest(".session-item");
      pendingFolder = item ? item.dataset.sessionId : null;
    }
  });

  document.addEventListener("htmx:afterSettle", function () {
    if (!pendingFolder) return;
    const item = document.getElementById("s-" + pendingFolder);
    pendingFolder = null;
    if (!item) return;
    // Moved into a folder: it opens, so the conversation is seen where it went.
    const folder = item.closest("details.folder");
    if (folder && !folder.open) folder.open = true;
    const focus = item.querySelector("[data-folder-input]") || item.querySelector(".item-menu summary");
    if (focus) focus.focus();
  });

  // ---------- Folders: the ones opened stay open, across refreshes and pages ----------

  const OPEN_FOLDERS = "parlor:open-folders";

  function openFolders() {
    try {
      return JSON.parse(window.sessionStorage.getItem(OPEN_FOLDERS) || "[]");
    } catch (error) {
      return [];
    }
  }

  function restoreFolders(root) {
    const open = openFolders();
    root.querySelectorAll("details.folder").forEach(function (folder) {
      const group = folder.closest("[data-group]");
      if (group && open.indexOf(group.dataset.group) >= 0) folder.open = true;
    });
  }

  // "toggle" does not bubble: listened to on its way down.
  document.addEventListener(
    "toggle",
    function (event) {
      const folder = event.target;
      if (!(folder instanceof HTMLDetailsElement) || !folder.classList.contains("folder")) return;
      const group = folder.closest("[data-group]");
      if (!group) return;
      const open = openFolders().filter(function (key) {
        return key !== group.dataset.group;
      });
      if (folder.open) open.push(group.dataset.group);
      try {
        window.sessionStorage.setItem(OPEN_FOLDERS, JSON.stringify(open));
      } catch (error) {
        // Storage refused (private mode): folders just start closed.
      }
    },
    true
  );

  restoreFolders(document);

  // ---------- Copying a value shown once (a new share link) ----------

  // Copy a field's value; the button says so for a moment. Plain HTTP on another host has
  // no Clipboard API: the value is selected for Ctrl+C instead.
  function copyValue(field, button) {
    const done = function () {
      const label = button.textContent;
      button.textContent = "Copied";
      window.setTimeout(function () {
        button.textContent = label;
      }, 1500);
    };
    field.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () {});
    } else if (document.execCommand("copy")) {
      done();
    }
  }
  window.ParlorCopy = copyValue;

  document.addEventListener("click", function (event) {
    const button = event.target instanceof Element ? event.target.closest("[data-copy-share]") : null;
    const field = button && document.getElementById(button.dataset.copyShare);
    if (field) copyValue(field, button);
  });
})();
