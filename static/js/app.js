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

  // A character count under a text box with data-charcount. The visible count changes with
  // every key but is hidden from screen readers; a separate polite live region speaks only when
  // the text crosses a threshold (few characters left, none left, too many), so a screen reader
  // is not interrupted at every keystroke.
  var FEW_LEFT = 100;

  function countBand(left) {
    if (left < 0) {
      return "over";
    }
    if (left === 0) {
      return "none";
    }
    return left <= FEW_LEFT ? "few" : "plenty";
  }

  function updateCount(box, announce) {
    var out = document.querySelector('[data-charcount-for="' + box.id + '"]');
    if (!out) {
      return;
    }
    var limit = parseInt(box.getAttribute("data-charcount"), 10);
    var left = limit - box.value.length;
    var template = left >= 0 ? out.getAttribute("data-left") : out.getAttribute("data-over");
    var words = (template || "").replace("%s", String(Math.abs(left)));
    out.textContent = words;
    var live = document.querySelector('[data-charcount-live-for="' + box.id + '"]');
    var band = countBand(left);
    if (live && announce && band !== box.getAttribute("data-charcount-band")) {
      live.textContent = words;
    }
    box.setAttribute("data-charcount-band", band);
  }

  // A resident's answers are kept in this tab until the thank-you page confirms they are
  // saved, so a failed send (a dropped connection, the database down) or a reload (switching
  // language) never loses them. Stored as JSON; an older draft is the text alone.
  var DRAFT_MARK = "hls-draft";

  function draftFields(form) {
    return Array.prototype.filter.call(form.elements, function (el) {
      var type = (el.type || "").toLowerCase();
      if (!el.name || el.name === "csrfmiddlewaretoken" || el.disabled) {
        return false;
      }
      if (el.tagName === "TEXTAREA" || el.tagName === "SELECT") {
        return true;
      }
      return el.tagName === "INPUT" &&
        ["hidden", "password", "file", "submit", "button", "reset", "image"].indexOf(type) === -1;
    });
  }

  function draftRead(form) {
    var fields = {};
    draftFields(form).forEach(function (el) {
      if (el.type === "checkbox") {
        fields[el.name] = fields[el.name] || [];
        if (el.checked) {
          fields[el.name].push(el.value);
        }
      } else if (el.type === "radio") {
        if (el.checked) {
          fields[el.name] = el.value;
        }
      } else {
        fields[el.name] = el.value;
      }
    });
    var draft = {};
    draft[DRAFT_MARK] = 1;
    draft.fields = fields;
    return JSON.stringify(draft);
  }

  function draftParse(form, stored) {
    var data = null;
    try {
      data = JSON.parse(stored);
    } catch (e) {
      data = null;
    }
    if (data && typeof data === "object" && data[DRAFT_MARK] && data.fields) {
      return data.fields;
    }
    var box = form.querySelector("textarea[name]");
    var fields = {};
    if (box) {
      fields[box.name] = stored;
    }
    return fields;
  }

  // Only empty text boxes and unticked boxes are filled in: what the server sent back wins. A
  // radio group always has a choice ticked, so a saved choice replaces it only on a fresh form
  // (data-draft-fresh), where that choice is the default rather than one the person sent.
  function draftRestore(form, fields) {
    var fresh = form.hasAttribute("data-draft-fresh");
    draftFields(form).forEach(function (el) {
      if (!Object.prototype.hasOwnProperty.call(fields, el.name)) {
        return;
      }
      var saved = fields[el.name];
      if (el.type === "checkbox") {
        if (!el.checked && Array.isArray(saved) && saved.indexOf(el.value) !== -1) {
          el.checked = true;
        }
      } else if (el.type === "radio") {
        if (fresh && saved === el.value) {
          el.checked = true;
        }
      } else if (!el.value && typeof saved === "string") {
        el.value = saved;
      }
    });
  }

  function keepDraft(form) {
    var key = "hls-draft:" + form.getAttribute("data-keep-draft");
    var storage;
    try {
      storage = window.sessionStorage;
    } catch (e) {
      return; // storage blocked by the browser's settings
    }
    if (!storage) {
      return;
    }
    var stored = storage.getItem(key);
    if (stored) {
      draftRestore(form, draftParse(form, stored));
    }
    function save() {
      try {
        storage.setItem(key, draftRead(form));
      } catch (e) {
        // storage full or blocked: the form still works, only the draft is not kept
      }
    }
    form.addEventListener("input", save);
    form.addEventListener("change", save);
  }

  // One thing per screen: a form with data-steps shows one [data-step] group at a time, with
  // Next and Back buttons and "Step 2 of 5". Moving to a step puts focus on its heading so a
  // screen reader says where the person is. Only the first step (the words) must be filled in
  // to go on. A page that came back with errors or a notice shows everything at once.
  function stepForm(form) {
    var steps = Array.prototype.slice.call(form.querySelectorAll("[data-step]"));
    var submit = form.querySelector("[data-step-submit]");
    if (steps.length < 2 || !submit ||
        document.querySelector("[data-error-summary], .field--error")) {
      return;
    }
    var total = steps.length;
    var current = 0;
    var says = function (name) { return form.getAttribute("data-step-" + name) || ""; };

    function show(index, moveFocus) {
      current = index;
      steps.forEach(function (step, i) {
        step.hidden = i !== index;
      });
      if (moveFocus) {
        var heading = steps[index].querySelector("[data-step-heading]");
        steps[index].scrollIntoView({ block: "start" });
        if (heading) {
          heading.focus({ preventScroll: true });
        }
      }
    }

    function textError(box, on) {
      var field = box.closest(".field");
      var id = box.id + "_error";
      var error = document.getElementById(id);
      var described = (box.getAttribute("aria-describedby") || "").split(" ").filter(function (x) {
        return x && x !== id;
      });
      if (on) {
        if (!error) {
          error = document.createElement("p");
          error.className = "field__error";
          error.id = id;
          var label = document.createElement("span");
          label.className = "visually-hidden";
          label.textContent = says("error");
          error.appendChild(label);
          error.appendChild(document.createTextNode(" " + says("required")));
          box.parentNode.insertBefore(error, box);
        }
        described.unshift(id);
        box.setAttribute("aria-invalid", "true");
        if (field) {
          field.classList.add("field--error");
        }
      } else {
        if (error) {
          error.parentNode.removeChild(error);
        }
        box.removeAttribute("aria-invalid");
        if (field) {
          field.classList.remove("field--error");
        }
      }
      if (described.length) {
        box.setAttribute("aria-describedby", described.join(" "));
      } else {
        box.removeAttribute("aria-describedby");
      }
    }

    // The words are required; the server says the same if this is skipped.
    function stepDone(index) {
      var box = index === 0 ? steps[0].querySelector("textarea") : null;
      if (!box) {
        return true;
      }
      var empty = !box.value.replace(/[\u202a-\u202e\u2066-\u2069]/g, "").trim();
      textError(box, empty);
      if (empty) {
        box.focus();
      }
      return !empty;
    }

    function next() {
      if (current < total - 1 && stepDone(current)) {
        show(current + 1, true);
      }
    }

    function button(text, primary, onClick) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = primary ? "button" : "button button--secondary";
      b.textContent = text;
      b.addEventListener("click", onClick);
      return b;
    }

    steps.forEach(function (step, i) {
      var heading = step.querySelector("h2, h3");
      var progress = document.createElement("p");
      progress.className = "form-step__progress";
      progress.id = (form.id || "form") + "-step-" + (i + 1);
      progress.textContent = says("of").replace("%(step)s", String(i + 1))
        .replace("%(total)s", String(total));
      step.insertBefore(progress, step.firstChild);
      if (heading) {
        heading.setAttribute("tabindex", "-1");
        heading.setAttribute("data-step-heading", "");
        heading.setAttribute("aria-describedby", progress.id);
      }
      var nav = document.createElement("div");
      nav.className = "form-step__nav";
      if (i < total - 1) {
        nav.appendChild(button(says("next"), true, next));
      } else {
        nav.appendChild(submit);
      }
      if (i > 0) {
        nav.appendChild(button(says("back"), false, function () { show(i - 1, true); }));
      }
      step.appendChild(nav);
    });

    // Enter in a text box goes on to the next step instead of sending a half-filled form.
    form.addEventListener("keydown", function (event) {
      var target = event.target;
      if (event.key === "Enter" && target.tagName === "INPUT" && current < total - 1) {
        event.preventDefault();
        next();
      }
    });
    form.addEventListener("submit", function (event) {
      if (current < total - 1) {
        event.preventDefault();
        next();
      }
    });
    form.classList.add("form--stepped");
    show(0, false);
  }

  document.addEventListener("DOMContentLoaded", function () {
    // The draft first, so the count and the steps start from the restored answers.
    document.querySelectorAll("form[data-keep-draft]").forEach(keepDraft);
    document.querySelectorAll("textarea[data-charcount]").forEach(function (box) {
      updateCount(box, false);
      box.addEventListener("input", function () { updateCount(box, true); });
    });
    document.querySelectorAll("form[data-steps]").forEach(stepForm);
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
