"""Settings (admins): the system footer appended to notifications of accounts that enable it; audited."""
from flask import url_for
from flask_babel import gettext as _

from webapp.db import database
from webapp.models import Setting, SmtpAccount
from webapp.settings import bp
from webapp.settings.forms import SettingsForm
from webapp.web import audit, go_to, render_form, role_required

FOOTER = "footer_text"


@bp.route("/", methods=["GET", "POST"])
@role_required("admin")
def index():
    """Show and change the system footer text."""
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
    using = SmtpAccount.select(SmtpAccount.name).where(SmtpAccount.footer_enabled == True)  # noqa: E712
    return render_form("settings/index.html", form, block="settings_form",
                       footer_accounts=[a.name for a in using.order_by(SmtpAccount.name)])
