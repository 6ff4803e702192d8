// HLS Learning Partner: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";

  var returnFocusTo = null;

  // Error summary pattern: after a form comes back with errors, move focus to the summary so
  // screen-reader and keyboard users hear what went wrong first.
  document.addEventListener("DOMContentLoaded", function () {
    var summary = document.querySelector("[data-error-summary]");
    if (summary) {
      summary.focus();
    }
  });

  // A control that swaps its own section away (Cancel on an inline edit) names where focus
  // should go back to.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var source = event.detail.elt;
    returnFocusTo = source && source.getAttribute ? source.getAttribute("data-return-focus") : null;
  });

  // When a request fails (session ended, security check failed, server or network trouble),
  // htmx swaps nothing, so the form keeps what the person typed. Say so beside the form.
  function reportFailure(event, signedOut) {
    var source = event.detail.elt;
    var form = source && source.closest ? (source.closest("form") || source) : null;
    if (!form || !form.parentNode) {
      return;
    }
    var verb = event.detail.requestConfig ? event.detail.requestConfig.verb : "post";
    var key = verb === "get" ? "htmxLoadFailed" : (signedOut ? "htmxSignedOut" : "htmxFailed");
    var note = form.previousElementSibling;
    if (!note || !note.hasAttribute("data-htmx-failure")) {
      note = document.createElement("p");
      note.setAttribute("data-htmx-failure", "");
      note.setAttribute("role", "alert");
      note.setAttribute("tabindex", "-1");
      note.className = "error-summary";
      form.parentNode.insertBefore(note, form);
    }
    note.textContent = document.body.dataset[key] || "";
    note.focus();
  }

  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    reportFailure(event, status === 401 || status === 403);
  });

  document.addEventListener("htmx:sendError", function (event) {
    reportFailure(event, false);
  });

  // A character count under a text box with data-charcount (announced politely).
  function updateCount(box) {
    var out = document.querySelector('[data-charcount-for="' + box.id + '"]');
    if (!out) {
      return;
    }
    var limit = parseInt(box.getAttribute("data-charcount"), 10);
    var left = limit - box.value.length;
    var template = left >= 0 ? out.getAttribute("data-left") : out.getAttribute("data-over");
    out.textContent = (template || "").replace("%s", String(Math.abs(left)));
  }

  // A resident's words are kept in this tab until the thank-you page confirms they are saved,
  // so a failed send (a dropped connection, the database down) never loses them.
  function keepDraft(form) {
    var key = "hls-draft:" + form.getAttribute("data-keep-draft");
    var box = form.querySelector("textarea");
    if (!box || !window.sessionStorage) {
      return;
    }
    if (!box.value && sessionStorage.getItem(key)) {
      box.value = sessionStorage.getItem(key);
    }
    box.addEventListener("input", function () {
      sessionStorage.setItem(key, box.value);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("textarea[data-charcount]").forEach(function (box) {
      updateCount(box);
      box.addEventListener("input", function () { updateCount(box); });
    });
    document.querySelectorAll("form[data-keep-draft]").forEach(keepDraft);
    document.querySelectorAll("[data-draft-sent]").forEach(function (el) {
      if (window.sessionStorage) {
        sessionStorage.removeItem("hls-draft:" + el.getAttribute("data-draft-sent"));
      }
    });
    document.querySelectorAll("[data-copy-from]").forEach(function (button) {
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy-from"));
        var status = button.parentNode.querySelector(".copy-status");
        if (!source) {
          return;
        }
        if (!navigator.clipboard) {
          source.select();
          return;
        }
        navigator.clipboard.writeText(source.value).then(function () {
          if (status) {
            status.textContent = button.getAttribute("data-copied");
          }
        }, function () {
          source.select();
        });
      });
    });
  });

  // After an htmx swap has settled (outerHTML swaps are only final then), put focus where the
  // person needs it: the error summary, else the announcement of what changed, else the first
  // field of an inline edit form that just opened, else back to the record they were editing.
  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail.target;
    var root = (target && target.id && document.getElementById(target.id)) || document;
    var focus = root.querySelector("[data-error-summary]") ||
      root.querySelector("[data-announcement]");
    if (!focus && root.classList && root.classList.contains("record--editing")) {
      focus = root.querySelector("input:not([type=hidden]), textarea, select");
    }
    if (!focus && returnFocusTo) {
      var record = document.getElementById(returnFocusTo);
      focus = record && (record.querySelector(".edit-link") || record);
    }
    returnFocusTo = null;
    if (focus) {
      focus.focus();
    }
  });
})();
