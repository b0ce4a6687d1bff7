"""Scheduled reports (admins): schedule the accounts report by e-mail, list the schedules, remove one."""
from flask import abort, request, url_for
from flask_babel import get_timezone, gettext as _, to_user_timezone
from flask_login import current_user
from peewee import JOIN

from webapp.db import database
from webapp.models import AuditEntry, ScheduledReport, User
from webapp.schedules import bp
from webapp.schedules.forms import ScheduleForm, next_full_hour, report_query
from webapp.schedules.runner import FREQUENCY_LABELS, filters_summary, result_text
from webapp.web import audit, go_to, render, role_required


def _describe(schedule: ScheduledReport) -> str:
    """How the audit log names a schedule: how often and to whom."""
    return f"{schedule.frequency}: {', '.join(schedule.recipient_list)}"[:255]


@bp.get("/")
@role_required("admin")
def index():
    """Every scheduled report: recipients, frequency, filters, next and last run with its outcome."""
    schedules = (ScheduledReport.select(ScheduledReport, User.id, User.username)
                 .join(User, JOIN.LEFT_OUTER, on=(ScheduledReport.created_by == User.id), attr="created_by")
                 .order_by(ScheduledReport.next_run_at, ScheduledReport.id))
    return render("schedules/index.html", schedules=list(schedules), frequency_labels=FREQUENCY_LABELS,
                  filters_summary=filters_summary, result_text=result_text)


@bp.route("/new", methods=["GET", "POST"])
@role_required("admin")
def create():
    """Schedule the accounts report, with the filters it was opened with, to be e-mailed as CSV."""
    form = ScheduleForm()
    if request.method == "GET":
        form.filters.data = report_query(request.args)
        form.first_run.data = to_user_timezone(next_full_hour()).replace(tzinfo=None)
    if form.validate_on_submit():
        schedule = ScheduledReport(recipients=form.recipients.data, frequency=form.frequency.data,
                                   filters=form.filters.data or "", next_run_at=form.first_run.data,
                                   created_by=current_user.id)
        with database.atomic():
            schedule.save()
            audit("create", schedule, AuditEntry.diff(None, schedule.audit_snapshot()),
                  object_name=_describe(schedule))
        return go_to(url_for("schedules.index"), _("Report scheduled."))
    preview = ScheduledReport(filters=form.filters.data or "")
    return render("schedules/new.html", block="schedule_form", status=422 if form.errors else 200,
                  form=form, filters_text=filters_summary(preview), timezone=str(get_timezone()))


@bp.post("/<int:schedule_id>/delete")
@role_required("admin")
def delete(schedule_id):
    """Remove a scheduled report (after the page asked); nothing more is sent for it."""
    with database.atomic():
        schedule = ScheduledReport.get_or_none(ScheduledReport.id == schedule_id) or abort(404)
        before = schedule.audit_snapshot()
        schedule.delete_instance()
        audit("delete", schedule, AuditEntry.diff(before, None), object_name=_describe(schedule))
    return go_to(url_for("schedules.index"), _("Scheduled report removed."))
