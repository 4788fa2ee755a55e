// Parlor page behaviour that is not the chat stream: the phone drawer, the search box,
// the item menus and inline rename. No inline handlers anywhere: the CSP forbids them.
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
    document.querySelectorAll("details.item-menu[open]").forEach(function (menu) {
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
    closeMenus(target.closest("details.item-menu"));
    // Picking a menu action closes the menu; the htmx request goes on.
    if (target.closest("details.item-menu .menu button")) {
      target.closest("details.item-menu").removeAttribute("open");
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    const target = event.target instanceof Element ? event.target : null;
    if (target && target.matches("[data-rename-input]")) {
      const cancel = target.form.querySelector("[data-rename-cancel]");
      if (cancel) cancel.click();
      return;
    }
    closeMenus(null);
    if (document.body.classList.contains("drawer-open")) setDrawer(false);
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
})();
