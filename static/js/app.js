// HLS Learning Partner: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";

  // Error summary pattern: after a form comes back with errors, move focus to the summary so
  // screen-reader and keyboard users hear what went wrong first.
  function focusErrorSummary(root) {
    var summary = root.querySelector("[data-error-summary]");
    if (summary) {
      summary.focus();
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    focusErrorSummary(document);
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    focusErrorSummary(event.detail.target);
  });
})();
