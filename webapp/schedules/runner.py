"""Running scheduled reports: the accounts report as CSV, with the saved filters, queued through the outbox.

run_due_schedules() is called by the outbox worker's loop, inside an app context (translations and the
report's filter form need one; no request is needed).
"""
import calendar
import json
import logging
from datetime import datetime, timedelta
from urllib.parse import parse_qsl

from flask import current_app
from flask_babel import force_locale, gettext, ngettext
from werkzeug.datastructures import MultiDict

from webapp.db import database
from webapp.mail.errors import N_
from webapp.models import ScheduledReport, utcnow
from webapp.translation import lazy_gettext as _l

log = logging.getLogger(__name__)

FREQUENCY_LABELS = {"daily": _l("Daily"), "weekly": _l("Weekly"), "monthly": _l("Monthly")}


def next_run(frequency: str, after: datetime, now: datetime | None = None) -> datetime:
    """The next run of the cycle after `after` that is later than now: runs missed while stopped are skipped."""
    now = now or after
    moment = after
    while moment <= now:
        if frequency == "monthly":
            moment = _next_month(moment)
        else:
            moment += timedelta(days=7 if frequency == "weekly" else 1)
    return moment


def _next_month(moment: datetime) -> datetime:
    """The same day next month, or that month's last day when it is shorter (31 January → 28/29 February)."""
    year, month = moment.year + moment.month // 12, moment.month % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def report_filters(schedule: ScheduledReport):
    """The accounts report's filter form holding the schedule's saved filters."""
    from webapp.accounts.forms import AccountFilterForm

    return AccountFilterForm(formdata=MultiDict(parse_qsl(schedule.filters)))


def filters_summary(schedule: ScheduledReport) -> str:
    """The saved filters in words ("Name: prod; Enabled: Yes"), or "all accounts"."""
    form = report_filters(schedule)
    parts = []
    for name, value in form.params(sort="id").items():
        field = form[name]
        if field.type == "SelectField":
            value = next((str(label) for choice, label, *_rest in field.iter_choices() if choice == value), value)
        parts.append(f"{field.label.text}: {value}")
    return "; ".join(parts) if parts else gettext("all accounts")


def result_text(schedule: ScheduledReport) -> str:
    """The last run's outcome in the user's language."""
    if not schedule.last_result:
        return ""
    result = json.loads(schedule.last_result)
    try:
        return gettext(result["message"]) % result.get("params", {})
    except (KeyError, TypeError, ValueError):
        return result.get("message", "")


def run_due_schedules(now: datetime | None = None) -> int:
    """Queue the report of every schedule due at `now` (default: this moment); return how many were queued.

    Each schedule is claimed in its own IMMEDIATE transaction, together with the notification it queues and its
    next run, so two workers never send one run twice and a crash never loses one. The notification's idempotency
    key (schedule id + the run's time) makes a repeated run a no-op as well.
    """
    now = now or utcnow()
    due = ScheduledReport.select(ScheduledReport.id).where(ScheduledReport.next_run_at <= now)
    queued = 0
    for (schedule_id,) in list(due.tuples()):
        try:
            queued += _run(schedule_id, now)
        except Exception:  # one broken schedule must not stop the worker's loop or the other schedules
            log.exception("scheduled report %s could not run", schedule_id)
    return queued


def _run(schedule_id: int, now: datetime) -> bool:
    with database.atomic("IMMEDIATE"):
        schedule = ScheduledReport.get_or_none(ScheduledReport.id == schedule_id)
        if schedule is None or schedule.next_run_at > now:
            return False  # removed meanwhile, or another worker ran it
        due_at = schedule.next_run_at
        result = _queue_report(schedule, due_at)
        ScheduledReport.update(next_run_at=next_run(schedule.frequency, due_at, now), last_run_at=now,
                               last_result=json.dumps(result)).where(ScheduledReport.id == schedule.id).execute()
    return bool(result.get("notification"))


def _locale(schedule: ScheduledReport) -> str:
    """The language of whoever scheduled the report, else the app's default language."""
    creator = schedule.created_by
    languages = current_app.config["LANGUAGES"]
    if creator is not None and creator.locale in languages:
        return creator.locale
    return current_app.config["BABEL_DEFAULT_LOCALE"]


def _queue_report(schedule: ScheduledReport, due_at: datetime) -> dict:
    """Build the CSV and queue the e-mail; the outcome as {"message", "params"[, "notification"]} (English, N_)."""
    from webapp.accounts.columns import csv_table
    from webapp.csv_export import csv_bytes
    from webapp.outbox import NoDefaultAccount, NotificationError, send_notification

    with force_locale(_locale(schedule)):
        accounts = list(report_filters(schedule).query())
        attachment = csv_bytes(*csv_table(accounts))
        frequency = str(FREQUENCY_LABELS.get(schedule.frequency, schedule.frequency)).lower()
        filename = gettext("smtp-accounts-%(date)s.csv", date=f"{due_at:%Y%m%d}")
        subject = gettext("SMTP accounts report, %(date)s", date=f"{due_at:%Y-%m-%d}")
        text = "\n\n".join([
            ngettext("The SMTP accounts report is attached as CSV: %(num)d account.",
                     "The SMTP accounts report is attached as CSV: %(num)d accounts.", len(accounts)),
            gettext("Filters: %(filters)s.", filters=filters_summary(schedule)),
            gettext("smtpdesk sends this report %(frequency)s. An administrator can remove it under Settings, "
                    "Scheduled reports.", frequency=frequency),
        ])
    try:
        # Inside _run()'s transaction: the notification is queued with the schedule's next run, or not at all.
        notification_id = send_notification(
            to=schedule.recipient_list, subject=subject, text=text,
            attachments=[(filename, "text/csv", attachment)],
            source="schedule", created_by=schedule.created_by.username if schedule.created_by else "",
            idempotency_key=f"schedule:{schedule.id}:{due_at:%Y%m%dT%H%M%S}",
        )
    except NoDefaultAccount:
        return {"message": N_("Not sent: no enabled default account is set.")}
    except NotificationError as error:
        problems = "; ".join(f"{name}: {message}" for name, message in error.field_errors.items())
        return {"message": N_("Not sent: %(problems)s"), "params": {"problems": problems}}
    return {"message": N_("Queued as notification #%(id)s."), "params": {"id": notification_id},
            "notification": notification_id}
