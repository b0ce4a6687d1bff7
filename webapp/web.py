"""What every screen shares: sign-in required, roles, fragment-or-page rendering, errors, audit."""
import hmac
from functools import wraps
from urllib.parse import urlsplit

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import get_locale, gettext as _
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from htmx_flask import make_response as htmx_response
from jinja2_fragments.flask import render_block
from peewee import DoesNotExist, OperationalError
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

from webapp import translation
from webapp.db import storage_full
from webapp.extensions import login_manager
from webapp.models import MAX_ROW_ID, AuditEntry, User
from webapp.translation import lazy_gettext as _l

# Endpoints reachable without signing in.
PUBLIC_ENDPOINTS = {"static", "auth.login", "auth.setup", "auth.language"}
# Blueprints that authenticate every request themselves, never with the session cookie: the HTTP API (bearer
# tokens), and health (/healthz and /readyz answer anyone, /metrics takes its own token).
SELF_AUTHENTICATING_BLUEPRINTS = {"api", "health"}
# No inline script or style anywhere (static/js/app.js hangs off data- attributes, htmx may not
# eval); Pico draws its icons with data: SVGs. frame-ancestors 'none': no page can be framed (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
# Under this path errors are answered as JSON (unknown API addresses and wrong methods included), not as pages.
API_PATH = "/api/"


def init_app(app):
    login_manager.login_view = "auth.login"
    login_manager.login_message = None
    login_manager.user_loader(_load_user)
    login_manager.unauthorized_handler(_unauthorized)
    app.before_request(_require_login)
    app.after_request(_vary_on_htmx)
    app.after_request(_security_headers)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(OperationalError, _storage_full)
    # A row read after the request checked it (deleted meanwhile by someone else) is gone: not found, not a 500.
    app.register_error_handler(DoesNotExist, lambda error: _error_page(NotFound()))
    for code in (400, 403, 404, 405, 413, 500):
        app.register_error_handler(code, _error_page)
    app.jinja_env.globals.update(safe_next=safe_next, role_label=role_label, get_locale=get_locale)
    translation.init_app(app)
    app.context_processor(lambda: {"languages": current_app.config["LANGUAGES"]})


def _load_user(session_id):
    # "<id>.<password fingerprint>" (User.get_id): a session from before a password change no longer loads.
    row_id, _dot, fingerprint = str(session_id).partition(".")
    if not row_id.isdigit() or not fingerprint:
        return None
    user = User.get_or_none(User.id == int(row_id))
    if user is None or not user.active or not hmac.compare_digest(fingerprint, user.session_fingerprint()):
        return None
    return user


def _unauthorized():
    """HTML pages go to the login form; an htmx fragment asks the browser to go there."""
    # full_path ends in "?" even without a query string.
    login_url = url_for("auth.login", next=request.full_path.rstrip("?") if request.method == "GET" else None)
    if request.htmx:
        return "", 401, {"HX-Redirect": login_url}
    return redirect(login_url)


def _require_login():
    if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
        return None
    if request.blueprint in SELF_AUTHENTICATING_BLUEPRINTS:
        return None
    if not current_user.is_authenticated:
        return _unauthorized()
    return None


def allow_form_action(response, origins):
    """Let this page's forms go on to these origins too. A form's redirect counts for form-action: without this, the
    303 that takes a form without htmx to a provider's sign-in page is stopped by the browser."""
    if origins:
        policy = SECURITY_HEADERS["Content-Security-Policy"]
        response.headers["Content-Security-Policy"] = policy.replace(
            "form-action 'self'", " ".join(("form-action 'self'", *origins)))
    return response


def _vary_on_htmx(response):
    # The same URL answers a page or a fragment, so caches must key on HX-Request.
    response.vary.add("HX-Request")
    return response


def _security_headers(response):
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _csrf_error(error):
    message = _("Your session's security token is missing or has expired. Reload the page and try again.")
    return _error_response(400, message)


def _error_page(error):
    if request.path.startswith(API_PATH):
        from webapp.api.errors import error_response

        return error_response(error)
    messages = {
        400: _("The request was not understood. Reload the page and try again."),
        403: _("You do not have permission to do this. Ask an administrator if you need it."),
        404: _("This page does not exist, or the item was deleted."),
        405: _("This address does not accept that kind of request."),
        413: _("What was sent is too large (at most %(size)s MB). Shorten it and try again.",
               size=(current_app.config.get("MAX_CONTENT_LENGTH") or 0) // (1024 * 1024)),
        500: _("Something went wrong on our side. The error was logged; try again in a moment."),
    }
    # An unexpected exception reaches here after Flask logged it with its traceback (Flask.log_exception): once.
    code = getattr(error, "code", 500) or 500
    return _error_response(code, messages.get(code, messages[500]))


def _storage_full(error):
    """SQLite found the disk (or its size limit) full: 503 saying so; any other OperationalError is a 500."""
    if not storage_full(error):
        raise error
    # The write's transaction was rolled back, so nothing of this request was kept.
    current_app.logger.error("storage full (SQLite: database or disk is full): %s %s saved nothing", request.method,
                             request.path)
    if request.path.startswith(API_PATH):
        from webapp.api.errors import api_error

        return api_error(503, "The storage is full: nothing was saved. Try again once disk space is freed.",
                         error="storage_full")
    return _error_response(503, _("The storage is full: nothing was saved. Ask the administrator to free disk "
                                  "space, then try again."))


def _error_response(code, message):
    if request.htmx:
        return render_template("errors/_message.html", message=message), code, {"HX-Reswap": "none"}
    return render_template("errors/error.html", code=code, message=message), code


def role_required(action: str):
    """Refuse the view with 403 unless the signed-in user's role allows action ('admin', 'audit', ...)."""

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated or not current_user.can(action):
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def render(template: str, block: str | None = None, status: int = 200, **context):
    """The named block alone for htmx requests, the whole page otherwise (history restores included)."""
    if block and request.htmx and not request.htmx.history_restore_request:
        return render_block(template, block, **context), status
    return render_template(template, **context), status


def render_form(template: str, form, block: str | None = None, **context):
    """A form's page (its block alone for htmx): 422 when it was submitted with errors, 200 otherwise."""
    return render(template, block, status=422 if form.errors else 200, form=form, **context)


def get_or_404(model, row_id: int):
    """The row of model with this id, else the 404 page."""
    return model.by_id(row_id) or abort(404)


class RowIdConverter(IntegerConverter):
    """<int:…> in a route: a number SQLite can hold, so a larger one is no row (404), never an OverflowError."""

    def __init__(self, map, *args, max=MAX_ROW_ID, **kwargs):
        super().__init__(map, *args, max=max, **kwargs)


def go_to(url: str, message: str | None = None, category: str = "success"):
    """After a successful change: flash the message and go to url (HX-Redirect for htmx, 303 otherwise)."""
    if message:
        flash(message, category)
    if request.htmx:
        return htmx_response("", redirect=url)
    return redirect(url, 303)


def removed(message: str, url: str):
    """After deleting a row: nothing for htmx (the row's outerHTML swap removes it), a flash on url otherwise."""
    if request.htmx:
        return ""
    flash(message, "success")
    return redirect(url, 303)


def refuse(message: str, url: str):
    """An action that cannot be done: a toast for htmx (409, nothing swapped), a flash on url otherwise."""
    if request.htmx:
        return render_template("errors/_message.html", message=message), 409, {"HX-Reswap": "none"}
    flash(message, "error")
    return redirect(url, 303)


def audit(action: str, obj=None, changes: dict | None = None, **kwargs) -> AuditEntry:
    """Record who did what from this request, inside the caller's transaction."""
    actor = kwargs.pop("actor", None) or (current_user if current_user.is_authenticated else None)
    return AuditEntry.record(action, actor=actor, remote_addr=request.remote_addr or "", obj=obj,
                             changes=changes, **kwargs)


def safe_next(target: str | None, fallback: str) -> str:
    """A redirect target only if it stays on this site (no open redirect)."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith(("//", "/\\")):
            return target
    return fallback


ROLE_LABELS = {"admin": _l("Administrator"), "operator": _l("Operator"), "auditor": _l("Auditor")}


def role_label(role: str) -> str:
    """A role code as the screens name it, in the user's language."""
    return str(ROLE_LABELS.get(role, role))


class Page:
    """One page of a query: its rows, the page number and how many pages there are."""

    def __init__(self, query, number, size: int | None = None):
        self.size = size or current_app.config["PAGE_SIZE"]
        self.total = query.count()
        self.pages = max(1, -(-self.total // self.size))
        try:
            number = int(number)
        except (TypeError, ValueError):
            number = 1
        self.number = min(max(1, number), self.pages)
        self.items = list(query.paginate(self.number, self.size))
