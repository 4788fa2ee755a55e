// The settings page: copy a new API token, and count what the custom instructions hold.
// The page works without it; no inline handlers (the CSP forbids them).
(function () {
  "use strict";

  function copyField(button) {
    const field = document.getElementById(button.dataset.copy);
    if (!field) return;
    const done = function () {
      button.textContent = "Copied";
      window.setTimeout(function () {
        button.textContent = "Copy";
      }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () {
        field.select();
      });
    } else {
      // Plain HTTP on another host has no Clipboard API: select it for Ctrl+C.
      field.select();
      if (document.execCommand("copy")) done();
    }
  }

  function count(area) {
    const counter = document.getElementById(area.id + "_count");
    if (!counter) return;
    const max = Number(area.getAttribute("maxlength"));
    // Line breaks are sent as two characters but counted as one, as the server does.
    counter.textContent = area.value.length + " / " + max;
  }

  document.addEventListener("click", function (event) {
    const button = event.target instanceof Element && event.target.closest("[data-copy]");
    if (button) copyField(button);
  });

  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("textarea[data-count]")) count(event.target);
  });

  document.querySelectorAll("textarea[data-count]").forEach(count);
})();
