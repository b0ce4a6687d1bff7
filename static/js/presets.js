// Provider presets on the account form: choosing a provider fills the server fields from its <option>'s data-
// attributes (webapp/accounts/presets.py) and says its help line. Every field stays editable; nothing is saved here.
(function () {
  "use strict";

  function check(form, name, value) {
    var radio = form.querySelector('input[type="radio"][name="' + name + '"][value="' + value + '"]');
    if (radio) radio.checked = true;
    return radio;
  }

  // The credentials of a type the provider expects say so in their option.
  function markCredentials(form, kinds) {
    var select = form.querySelector("select[data-credentials]");
    if (!select) return;
    var credentials = JSON.parse(select.getAttribute("data-credentials"));
    var expected = select.getAttribute("data-expected-label");
    Array.from(select.options).forEach(function (option) {
      var credential = credentials[option.value];
      if (!credential) return;
      option.textContent = kinds.indexOf(credential.kind) === -1 ? credential.name
        : expected.replace("{name}", function () { return credential.name; });
    });
  }

  function choose(select) {
    var form = select.form;
    var option = select.options[select.selectedIndex];
    var host = option.getAttribute("data-host");
    var help = form.querySelector("[data-preset-help]");
    if (help) help.textContent = option.getAttribute("data-help") || "";
    markCredentials(form, host ? option.getAttribute("data-kinds").split(" ") : []);
    if (!host) return; // Custom fills nothing
    form.elements.host.value = host;
    form.elements.port.value = option.getAttribute("data-port");
    check(form, "secure", option.getAttribute("data-secure"));
    if (option.getAttribute("data-secure-type")) check(form, "secure_type", option.getAttribute("data-secure-type"));
    // The provider's known sending limits; empty (its default) when it documents none.
    ["max_connections", "rate_per_minute"].forEach(function (name) {
      var field = form.elements[name];
      if (field) field.value = option.getAttribute("data-" + name.replace(/_/g, "-")) || "";
    });
    var auth = check(form, "use_auth", option.getAttribute("data-use-auth"));
    // app.js shows the questions that depend on these answers, and the port's placeholder, on a change event.
    if (auth) auth.dispatchEvent(new Event("change", { bubbles: true }));
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("select[data-preset-select]")) choose(event.target);
  });

  // With this script the select fills the fields itself: Apply is for pages without JavaScript.
  function hideApply(root) {
    if (root.querySelectorAll) root.querySelectorAll("[data-preset-apply]").forEach(function (button) { button.hidden = true; });
  }

  document.addEventListener("DOMContentLoaded", function () { hideApply(document); });
  document.addEventListener("htmx:load", function (event) { hideApply(event.detail.elt); });
})();
