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

  // "Fill in for Microsoft 365" fills the token URL and scope from the tenant ID here, so that the secrets typed
  // so far stay (the server's redraw, without JavaScript, never sends them back). A missing or malformed tenant
  // goes on to the server, which explains it.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button[data-fill-tenant]");
    if (!button || !button.form) return;
    var tenant = button.form.elements[button.getAttribute("data-fill-tenant")];
    if (!tenant || !tenant.value.trim() || !tenant.checkValidity()) return;
    event.preventDefault();
    var tokenUrl = button.form.elements.token_url;
    var scope = button.form.elements.scope;
    tokenUrl.value = button.getAttribute("data-token-url").replace("{tenant}", tenant.value.trim());
    scope.value = button.getAttribute("data-scope");
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


  // Keyboard: the test dialogs are modal (focus stays inside, Escape closes them) and give focus back to what
  // opened them; row menus (<details class="dropdown">) close on Escape and move between items with the arrows.
  var opener = null;

  function returnPoint(elt) {
    var menu = elt.closest("details.dropdown");
    var target = menu ? menu.querySelector("summary") : elt;
    var holder = target.closest("[id]");
    return { target: target, holderId: holder ? holder.id : null };
  }

  // A row swapped while the dialog was open (its health after a test) is a new element: find its menu again.
  function giveFocusBack(point) {
    if (!point) return;
    var target = point.target;
    if (!target.isConnected && point.holderId) {
      var holder = document.getElementById(point.holderId);
      target = holder && (holder.querySelector("details.dropdown > summary") || holder);
    }
    if (target && target.isConnected) target.focus();
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (elt.closest("dialog")) return; // a send from inside the dialog keeps the dialog's opener
    var active = document.activeElement;
    opener = returnPoint(active && active !== document.body && elt.contains(active) ? active : elt);
  });

  function showModal(dialog) {
    if (dialog.hasAttribute("data-modal-shown")) return;
    dialog.setAttribute("data-modal-shown", "");
    var point = opener;
    var menu = point && point.target.closest("details.dropdown");
    if (menu) menu.open = false;
    // Rendered open for pages without JavaScript; showModal() refuses a dialog that is already open.
    dialog.removeAttribute("open");
    dialog.showModal();
    var first = dialog.querySelector("[autofocus]");
    if (first) first.focus();
    dialog.addEventListener("close", function () {
      // Replaced by its own outcome, the dialog hands over to the new one, which keeps the same opener.
      if (dialog.isConnected) giveFocusBack(point);
    });
  }

  function initDialogs(root) {
    var dialogs = root.matches && root.matches("dialog[data-modal]") ? [root]
      : Array.from(root.querySelectorAll ? root.querySelectorAll("dialog[data-modal][open]") : []);
    dialogs.forEach(function (dialog) { if (dialog.open) showModal(dialog); });
  }

  function menuItems(menu) {
    return Array.from(menu.querySelectorAll("ul a[href], ul button:not([disabled])"));
  }

  document.addEventListener("keydown", function (event) {
    // Chrome lets Escape close a modal dialog opened without a user gesture (the one an htmx swap brings back
    // with the test's outcome) only sometimes: close it here, every time.
    var dialog = event.target.closest && event.target.closest("dialog[data-modal-shown]");
    if (event.key === "Escape" && dialog && dialog.open && !event.target.closest("details.dropdown[open]")) {
      event.preventDefault();
      dialog.close();
      return;
    }
    var menu = event.target.closest && event.target.closest("details.dropdown");
    if (!menu) return;
    var summary = menu.querySelector("summary");
    if (event.key === "Escape" && menu.open) {
      event.preventDefault();
      menu.open = false;
      summary.focus();
      return;
    }
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    var items = menuItems(menu);
    if (!items.length) return;
    event.preventDefault();
    menu.open = true;
    var index = items.indexOf(event.target);
    var step = event.key === "ArrowDown" ? 1 : -1;
    if (index === -1) index = step === 1 ? 0 : items.length - 1;
    else index = (index + step + items.length) % items.length;
    items[index].focus();
  });

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) { init(event.detail.elt); initDialogs(event.detail.elt); });
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var text = new DOMParser().parseFromString(xhr.responseText || "", "text/html").body.textContent.trim();
    toast(text && text.length < 400 ? text : (document.body.getAttribute("data-error-text") || "Error " + xhr.status));
  });
  document.addEventListener("htmx:sendError", function () {
    toast(document.body.getAttribute("data-offline-text") || "The server could not be reached.");
  });
})();
