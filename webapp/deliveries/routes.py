"""Deliveries: counts by status, the filtered list (30 a page), one notification's attempts, and Retry."""
import hashlib
import json

from flask import abort, flash, redirect, request, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user
from htmx_flask import make_response as htmx_response
from jinja2_fragments.flask import render_block
from peewee import fn

from webapp.accounts.testing import STEP_NAMES
from webapp.db import database
from webapp.deliveries import bp
from webapp.deliveries.forms import ACTIVE_STATUSES, STATUS_LABELS, DeliveryFilterForm
from webapp.mail import Step
from webapp.mail.outbox import LEASE_EXPIRED, outbox_counts, retry_notification
from webapp.models import DeliveryAttempt, Notification, SmtpAccount
from webapp.web import Page, audit, get_or_404, refuse, render, role_required, safe_next

FILTER_FORM_ID = "delivery-filters"
SOURCE_LABELS = {
    "python": _l("Python"),
    "api": _l("HTTP API"),
    "cli": _l("command line"),
    "schedule": _l("scheduled report"),
}


def _listing(form: DeliveryFilterForm):
    query = (Notification.select(Notification, SmtpAccount.id, SmtpAccount.name)
             .join(SmtpAccount, on=(Notification.account == SmtpAccount.id), attr="account")
             .order_by(Notification.created_at.desc(), Notification.id.desc()))
    return form.apply(query)


def _version(counts: dict) -> str:
    """A short fingerprint of the outbox's state: it changes when any notification is added or moves on."""
    latest = Notification.select(fn.MAX(Notification.updated_at), fn.MAX(Notification.id)).tuples().get()
    text = repr((sorted(counts.items()), str(latest[0]), latest[1]))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _counts_context() -> dict:
    counts = outbox_counts()
    return {"counts": counts, "counts_version": _version(counts), "status_labels": STATUS_LABELS,
            "refreshing": any(counts[status] for status in ACTIVE_STATUSES)}


def _context(form: DeliveryFilterForm, page_number) -> dict:
    page = Page(_listing(form), page_number)
    args = form.args(**({"page": page.number} if page.number > 1 else {}))
    return {
        "filters": form, "page": page, "here": url_for("deliveries.index", **args),
        "page_url": lambda number: url_for("deliveries.index", **form.args(page=number)),
        "can_retry": _can_retry(), **_counts_context(),
    }


def _can_retry() -> bool:
    return current_user.can("send")


@bp.get("/")
@role_required("view")
def index():
    """Counts by status, the filters and one page of notifications; htmx gets the rows block alone."""
    form = DeliveryFilterForm.from_query()
    context = _context(form, request.args.get("page"))
    body, status = render("deliveries/index.html", block="delivery_rows", **context)
    # Only a search from the filter form moves the address bar (in its short form); the rows' own refreshes don't.
    pushed = request.htmx and request.htmx.trigger == FILTER_FORM_ID and not request.htmx.history_restore_request
    return htmx_response(body, status, push_url=context["here"] if pushed else None)


@bp.get("/counts")
@role_required("view")
def counts():
    """The counts block for its own refresh; tells the rows to reload when the outbox changed since `seen`."""
    if not request.htmx:
        return redirect(url_for("deliveries.index"))
    context = _counts_context()
    body = render_block("deliveries/index.html", "delivery_counts", **context)
    changed = request.args.get("seen") != context["counts_version"]
    return htmx_response(body, trigger="deliveries-changed" if changed else None)


def step_label(step: str | None) -> str:
    """The failed step in the user's words ("authentication", "recipient refused"...); unknown ones as they are."""
    if step == LEASE_EXPIRED:
        return _("worker stopped")
    try:
        return _(STEP_NAMES[Step(step)])
    except (KeyError, ValueError):
        return step or ""


@bp.get("/<int:notification_id>")
@role_required("view")
def show(notification_id):
    """One notification: recipients, overrides and whether they were ignored, every attempt, headers sent."""
    notification = get_or_404(Notification, notification_id)
    attempts = notification.delivery_attempts.order_by(DeliveryAttempt.started_at, DeliveryAttempt.id)
    attachments = json.loads(notification.attachments) if notification.attachments else []
    return render("deliveries/show.html", notification=notification, attempts=list(attempts),
                  attachments=attachments, status_labels=STATUS_LABELS, source_labels=SOURCE_LABELS,
                  step_label=step_label, can_retry=_can_retry(),
                  back=safe_next(request.args.get("next"), url_for("deliveries.index")))


@bp.post("/<int:notification_id>/retry")
@role_required("send")
def retry(notification_id):
    """Put a failed notification back in the queue, due now (operators and admins); audited."""
    back = safe_next(request.form.get("next"), url_for("deliveries.show", notification_id=notification_id))
    with database.atomic("IMMEDIATE"):
        notification = get_or_404(Notification, notification_id)
        if notification.status != "failed":
            return refuse(_("Only a failed notification can be retried; this one is %(status)s.",
                            status=STATUS_LABELS.get(notification.status, notification.status)), back)
        if not retry_notification(notification.id):
            abort(409)  # the status was checked under the same write lock: cannot happen
        audit("retry", notification, {"status": ["failed", "queued"]}, object_name=_object_name(notification))
    notification = Notification.get_by_id(notification.id)
    message = _("Notification #%(id)s is queued again.", id=notification.id)
    if request.htmx:
        # The row, and the counts (out of band) so that they start refreshing themselves.
        return (render_block("deliveries/index.html", "delivery_row", notification=notification,
                             status_labels=STATUS_LABELS, can_retry=True, here=back)
                + render_block("deliveries/index.html", "delivery_counts", oob=True, **_counts_context()))
    flash(message, "success")
    return redirect(back, 303)


def _object_name(notification: Notification) -> str:
    """How the audit log names a notification: its number and subject."""
    return f"#{notification.id} {notification.subject}"[:255]
