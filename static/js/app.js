// smtpdesk's small behaviours. No inline script anywhere: everything hangs off data- attributes.
(function () {
  "use strict";

  // <div data-show-when="secure=yes"> is shown only while the radio/select named "secure" holds "yes".
  // Several conditions joined by "&" must all hold.
  function valueOf(form, name) {
    var checked = form.querySelector('input[type="radio"][name="' + name + '"]:checked');
    if (checked) return checked.value;
    var field = form.querySelector('[name="' + name + '"]:not([type="radio"])');
    return field ? field.value : "";
  }

  function holds(form, rule) {
    return rule.split("&").every(function (part) {
      var pair = part.split("=");
      return pair[1].split("|").indexOf(valueOf(form, pair[0])) !== -1;
    });
  }

  function refresh(form) {
    form.querySelectorAll("[data-show-when]").forEach(function (el) {
      el.hidden = !holds(form, el.getAttribute("data-show-when"));
    });
    // The port's placeholder follows the chosen mode: 25 plain, 587 STARTTLS, 465 implicit TLS.
    form.querySelectorAll("input[data-port-placeholder]").forEach(function (input) {
      var mode = "plain";
      if (valueOf(form, "secure") === "yes") mode = valueOf(form, "secure_type") || "tls";
      input.placeholder = { plain: "25", tls: "587", ssl: "465" }[mode];
    });
  }

  function init(root) {
    var forms = root.matches && root.matches("form") ? [root] : Array.from(root.querySelectorAll("form"));
    forms.forEach(function (form) {
      if (form.querySelector("[data-show-when], [data-port-placeholder]")) refresh(form);
    });
    root.querySelectorAll("[data-print]").forEach(function (button) {
      button.addEventListener("click", function () { window.print(); });
    });
  }

  document.addEventListener("change", function (event) {
    var form = event.target.form;
    if (form) refresh(form);
  });

  // Plain (non-htmx) forms that destroy something ask first.
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  function toast(text) {
    var box = document.getElementById("toast");
    if (!box) return;
    box.textContent = text;
    clearTimeout(box._timer);
    box._timer = setTimeout(function () { box.textContent = ""; }, 8000);
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) { init(event.detail.elt); });
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var text = new DOMParser().parseFromString(xhr.responseText || "", "text/html").body.textContent.trim();
    toast(text && text.length < 400 ? text : (document.body.getAttribute("data-error-text") || "Error " + xhr.status));
  });
  document.addEventListener("htmx:sendError", function () {
    toast(document.body.getAttribute("data-offline-text") || "The server could not be reached.");
  });
})();
