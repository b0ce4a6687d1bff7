"""Deliveries: counts by status, the filtered list (30 a page, newest first), one notification's attempts, and Retry."""
import json

from flask import abort, current_app, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from htmx_flask import make_response as htmx_response
from jinja2_fragments.flask import render_block

from webapp.accounts.testing import STEP_NAMES, explain
from webapp.db import database
from webapp.deliveries import bp, listing
from webapp.deliveries.forms import ACTIVE_STATUSES, STATUS_LABELS, DeliveryFilterForm
from webapp.mail import Step
from webapp.models import DeliveryAttempt, Notification, row_id
from webapp.outbox import LEASE_EXPIRED, retry_notification
from webapp.outbox.message import reply_words, stored_facts
from webapp.translation import lazy_gettext as _l
from webapp.web import audit, get_or_404, refuse, render, role_required, safe_next

FILTER_FORM_ID = "delivery-filters"
BADGES = {"sent": "badge-ok", "failed": "badge-bad", "retrying": "badge-warn", "queued": "", "sending": ""}
SOURCE_LABELS = {
    "python": _l("Python"),
    "api": _l("HTTP API"),
    "cli": _l("command line"),
    "schedule": _l("scheduled report"),
}


def reply_text(stored: str | None) -> str:
    """A delivery's stored reply (facts, or a sentence from before) in the reader's language."""
    return reply_words(stored, explain)


def hint_text(stored: str | None) -> str:
    """What to do about a delivery's stored failure, in the reader's language; "" when nothing was kept (a success,
    or facts stored before hints were)."""
    facts = stored_facts(stored) or {}
    return explain(facts["hint"], facts.get("params") or {}) if facts.get("hint") else ""


# The deliveries and the accounts report (an account's last delivery) show stored replies.
bp.add_app_template_filter(reply_text, "delivery_reply")
bp.add_app_template_filter(hint_text, "delivery_hint")


def _counts_context() -> dict:
    counts, version = listing.tally()
    return {"counts": counts, "counts_version": version, "status_labels": _status_labels(),
            "refreshing": any(counts[status] for status in ACTIVE_STATUSES)}


def _status_labels() -> dict:
    """{status: its label} in the user's language."""
    return {status: str(label) for status, label in STATUS_LABELS.items()}


def _row_context(here: str) -> dict:
    """What the delivery_row block needs besides the notification and can_retry."""
    return {"here": here, "status_labels": _status_labels(), "badges": BADGES}


def _cursor(name: str) -> int | None:
    """A page cursor from the query string (a notification id); anything else means the newest page."""
    return row_id(request.args.get(name, ""))


def _total(form: DeliveryFilterForm, counts: dict, page) -> int | None:
    """How many notifications the filters match, when that costs nothing: the whole outbox and one status come from
    the counts; a list that fits on its first page is its rows. Otherwise unknown (None): never counted."""
    filters = form.args()
    if not filters:
        return sum(counts.values())
    if filters.keys() == {"status"} and not form.status.errors:
        return counts.get(form.status.data, 0)
    if page.first and page.older is None:
        return len(page.items)
    return None


def _context(form: DeliveryFilterForm) -> dict:
    counts_context = _counts_context()
    page = listing.window(form.criteria(), current_app.config["PAGE_SIZE"], before=_cursor("before"),
                          after=_cursor("after"))
    return {
        "filters": form, "page": page, "total": _total(form, counts_context["counts"], page),
        "page_url": lambda **cursor: url_for("deliveries.index", **form.args(**cursor)),
        "can_retry": _can_retry(), **counts_context,
        **_row_context(url_for("deliveries.index", **form.args(**page.cursor))),
    }


def _can_retry() -> bool:
    return current_user.can("send")


@bp.get("/")
@role_required("view")
def index():
    """Counts by status, the filters and one page of notifications; htmx gets the rows block alone."""
    form = DeliveryFilterForm.from_query()
    context = _context(form)
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
    # next= rides in the list's button URL, or in the detail page's form.
    back = safe_next(request.values.get("next"), url_for("deliveries.show", notification_id=notification_id))
    with database.atomic("IMMEDIATE"):
        notification = get_or_404(Notification, notification_id)
        if notification.status != "failed":
            return refuse(_("Only a failed notification can be retried; this one is %(status)s.",
                            status=STATUS_LABELS.get(notification.status, notification.status)), back)
        if not retry_notification(notification.id):
            abort(409)  # the status was checked under the same write lock: cannot happen
        audit("retry", notification, {"status": ["failed", "queued"]}, object_name=_object_name(notification))
    message = _("Notification #%(id)s is queued again.", id=notification.id)
    if request.htmx:
        # The row, and the counts (out of band) so that they start refreshing themselves.
        return (render_block("deliveries/index.html", "delivery_row", notification=listing.row(notification.id),
                             can_retry=True, **_row_context(back))
                + render_block("deliveries/index.html", "delivery_counts", oob=True, **_counts_context()))
    flash(message, "success")
    return redirect(back, 303)


def _object_name(notification: Notification) -> str:
    """How the audit log names a notification: its number and subject."""
    return f"#{notification.id} {notification.subject}"[:255]
