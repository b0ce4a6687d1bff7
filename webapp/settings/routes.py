"""Settings (admins): the system footer appended to notifications of accounts that enable it, and how long
deliveries and audit entries are kept; audited."""
from flask import current_app, url_for
from flask_babel import gettext as _

from webapp.db import database
from webapp.models import Setting, SmtpAccount
from webapp.outbox.retention import AUDIT_DAYS, DELIVERY_DAYS, Retention
from webapp.settings import bp
from webapp.settings.forms import RetentionForm, SettingsForm
from webapp.web import audit, go_to, render, role_required

FOOTER = "footer_text"


@bp.route("/", methods=["GET", "POST"])
@role_required("admin")
def index():
    """Show the settings and change the system footer text."""
    form = SettingsForm(data={"footer_text": Setting.get_value(FOOTER)})
    if form.validate_on_submit():
        with database.atomic("IMMEDIATE"):
            before = Setting.get_value(FOOTER)
            after = form.footer_text.data
            if before != after:
                Setting.set_value(FOOTER, after)
                audit("update", object_type="setting", object_name=FOOTER, changes={FOOTER: [before, after]})
        if before == after:
            return go_to(url_for("settings.index"), _("Nothing changed."), "info")
        return go_to(url_for("settings.index"), _("Settings saved."))
    return _page("settings_form", form=form)


@bp.route("/retention", methods=["POST"])
@role_required("admin")
def retention():
    """Change how long deliveries and audit entries are kept (config's defaults until first saved)."""
    form = RetentionForm()
    if form.validate_on_submit():
        changes = {}
        with database.atomic("IMMEDIATE"):
            kept = Retention.from_config(current_app.config)
            for key, before in ((DELIVERY_DAYS, kept.delivery_days), (AUDIT_DAYS, kept.audit_days)):
                after = form[key].data
                if before != after:
                    Setting.set_value(key, str(after))
                    changes[key] = [before, after]
            if changes:
                audit("update", object_type="setting", object_name="retention", changes=changes)
        if not changes:
            return go_to(url_for("settings.index"), _("Nothing changed."), "info")
        return go_to(url_for("settings.index"), _("Settings saved."))
    return _page("retention_form", retention_form=form)


def _page(block: str, form=None, retention_form=None):
    """The settings page, or the block of the form submitted for htmx (422 when it has errors); the other form shows
    what is saved."""
    submitted = form if block == "settings_form" else retention_form
    if form is None:
        form = SettingsForm(formdata=None, data={"footer_text": Setting.get_value(FOOTER)})
    if retention_form is None:
        kept = Retention.from_config(current_app.config)
        retention_form = RetentionForm(formdata=None, data={DELIVERY_DAYS: kept.delivery_days,
                                                            AUDIT_DAYS: kept.audit_days})
    using = SmtpAccount.select(SmtpAccount.name).where(SmtpAccount.footer_enabled == True)  # noqa: E712
    return render("settings/index.html", block, status=422 if submitted.errors else 200, form=form,
                  retention_form=retention_form, footer_accounts=[a.name for a in using.order_by(SmtpAccount.name)])
