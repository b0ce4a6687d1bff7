"""The audit log screen: filter, page through and export who changed what (admins and auditors)."""
from flask import request, url_for
from flask_babel import format_datetime, gettext as _

from webapp.audit import bp
from webapp.audit.forms import AuditFilterForm
from webapp.audit.labels import action_label, actor_label, change_lines, object_type_label
from webapp.csv_export import csv_response
from webapp.models import AuditEntry, utcnow
from webapp.web import Page, render, role_required

PAGE_SIZE = 50


def _filtered():
    """The filter form read from the query string, and the entries it selects, newest first."""
    form = AuditFilterForm.from_query()
    query = AuditEntry.select().order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    return form, form.apply(query)


@bp.get("/")
@role_required("audit")
def index():
    """The audit log, filtered; htmx filter changes and page links get only the results block."""
    form, query = _filtered()
    page = Page(query, request.args.get("page"), size=PAGE_SIZE)
    args = form.args()
    return render(
        "audit/index.html", "audit_rows", form=form, page=page,
        page_url=lambda number: url_for("audit.index", **args, page=number),
        export_url=url_for("audit.export_csv", **args),
        action_label=action_label, actor_label=actor_label, object_type_label=object_type_label,
        change_lines=change_lines,
    )


@bp.get("/export.csv")
@role_required("audit")
def export_csv():
    """Every entry the filters select, as a CSV download (formula-like cells neutralised)."""
    _form, query = _filtered()
    header = [_("When"), _("Who"), _("Action"), _("Object type"), _("Object name"), _("Changes"),
              _("Client address")]
    rows = (
        [format_datetime(entry.at, "yyyy-MM-dd HH:mm:ss"), actor_label(entry), action_label(entry.action),
         object_type_label(entry.object_type), entry.object_name, "; ".join(change_lines(entry)),
         entry.remote_addr]
        for entry in query
    )
    return csv_response(_("audit-log-%(time)s.csv", time=f"{utcnow():%Y%m%d-%H%M%S}"), header, rows)
