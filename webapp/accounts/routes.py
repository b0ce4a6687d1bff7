"""The SMTP accounts report, its row actions, CSV and print views, and the account form."""
from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _, ngettext
from flask_login import current_user
from htmx_flask import make_response as htmx_response
from jinja2_fragments.flask import render_block
from peewee import IntegrityError

from webapp.accounts import bp
from webapp.accounts.backup import left_without_backup, quoted_names
from webapp.accounts.columns import REPORT_COLUMNS, csv_table
from webapp.accounts.forms import AccountFilterForm, AccountForm, AccountTestForm, EmailTestForm
from webapp.accounts.limits import limits_text
from webapp.accounts.testing import (
    TYPED_SECRET_COLUMNS,
    Outcome,
    record,
    refused,
    route_label,
    send_test,
    stored_credential_moved,
    summary_text,
    typed_credential,
)
from webapp.csv_export import csv_response
from webapp.db import database
from webapp.models import SAVED_CREDENTIAL, AuditEntry, SmtpAccount, utcnow
from webapp.web import Page, audit, get_or_404, go_to, refuse, render, render_form, role_required, safe_next

# The report and the print view say a stored test outcome, and an account's own limits, in the reader's language.
bp.add_app_template_filter(summary_text, "test_summary")
bp.add_app_template_filter(limits_text, "account_limits")
bp.add_app_template_filter(quoted_names, "quoted_names")

# --- The report -------------------------------------------------------------------------------------------


def _filters() -> AccountFilterForm:
    return AccountFilterForm(formdata=request.args)


@bp.get("/")
@role_required("view")
def index():
    """The SMTP accounts report: filters, 30 rows a page; htmx gets the results block alone."""
    filters = _filters()
    page = Page(filters.rows(), request.args.get("page"))
    SmtpAccount.attach_last_delivery(page.items)
    here = url_for("accounts.index", **filters.params(**({"page": page.number} if page.number > 1 else {})))
    body, status = render(
        "accounts/index.html", block="account_rows",
        filters=filters, page=page, back=here, columns=REPORT_COLUMNS, **_permissions(),
        page_url=lambda number: url_for("accounts.index", **filters.params(page=number)),
    )
    # The filter form sends its empty fields too; the address bar gets the short form of the same search.
    pushed = request.htmx and not request.htmx.history_restore_request
    return htmx_response(body, status, push_url=here if pushed else None)


@bp.get("/export.csv")
@role_required("view")
def export_csv():
    """The filtered accounts as CSV: every column, names of credentials/connectors, never a secret."""
    return csv_response(_("smtp-accounts.csv"), *csv_table(_filters().query()))


@bp.get("/print")
@role_required("view")
def print_view():
    """A print-friendly report: every matching row on one page, no navigation and no actions."""
    filters = _filters()
    accounts = SmtpAccount.attach_last_delivery(list(filters.rows()))
    return render_template("accounts/print.html", filters=filters, accounts=accounts, columns=REPORT_COLUMNS,
                           printed_at=utcnow())


# --- Row actions ------------------------------------------------------------------------------------------


def _back() -> str:
    """Where a row action returns without JavaScript: the report it was used from, filter included."""
    return safe_next(request.values.get("next"), url_for("accounts.index"))


def _permissions() -> dict:
    """What the signed-in user may do from a report row."""
    return {"can_admin": current_user.can("admin"), "can_test": current_user.can("test")}


def _row(account: SmtpAccount, oob: bool = False) -> str:
    return render_block("accounts/index.html", "account_row", account=account, back=_back(), oob=oob,
                        columns=REPORT_COLUMNS, **_permissions())


def _refuse(message: str):
    return refuse(message, _back())


def _row_done(account: SmtpAccount, message: str, previous: SmtpAccount | None = None, warning: str | None = None):
    """After a row action: the changed row(s) for htmx, the report with a flash otherwise."""
    messages = [("success", message)] + ([("warning", warning)] if warning else [])
    if request.htmx:
        return (_row(account) + (_row(previous, oob=True) if previous is not None else "")
                + render_template("_flash.html", messages=messages))
    for category, text in messages:
        flash(text, category)
    return redirect(_back(), 303)


def _audit_undefault(previous: SmtpAccount) -> None:
    """Record that the previous default stopped being it (make_default() already changed the row)."""
    before = previous.audit_snapshot()
    previous.is_default = False
    # Its row changed too: move its version, so a form opened on it before cannot save the old default back.
    previous.updated_at = utcnow()
    SmtpAccount.update(updated_at=previous.updated_at).where(SmtpAccount.id == previous.id).execute()
    audit("update", previous, AuditEntry.diff(before, previous.audit_snapshot()))


@bp.post("/<int:account_id>/enable")
@role_required("admin")
def enable(account_id):
    """Enable an account; with no default account yet, it becomes the default."""
    with database.atomic("IMMEDIATE"):
        account = get_or_404(SmtpAccount, account_id)
        before = account.audit_snapshot()
        became_default = False
        if not account.enabled:
            account.enabled = True
            account.updated_at = utcnow()
            account.save_assigned()
            if SmtpAccount.default() is None:
                account.make_default()
                became_default = True
            audit("enable", account, AuditEntry.diff(before, account.audit_snapshot()))
    message = _("Account “%(name)s” enabled.", name=account.name)
    if became_default:
        message += " " + _("It is now the default account, as there was none.")
    return _row_done(account, message)


@bp.post("/<int:account_id>/disable")
@role_required("admin")
def disable(account_id):
    """Disable an account (not the default one: make another account the default first)."""
    with database.atomic("IMMEDIATE"):
        account = get_or_404(SmtpAccount, account_id)
        if account.is_default:
            return _refuse(_("“%(name)s” is the default account and cannot be disabled. Make another account "
                             "the default first.", name=account.name))
        before = account.audit_snapshot()
        left_without = []
        if account.enabled:
            account.enabled = False
            account.updated_at = utcnow()
            account.save_assigned()
            audit("disable", account, AuditEntry.diff(before, account.audit_snapshot()))
            left_without = account.accounts_backed_up()
    return _row_done(account, _("Account “%(name)s” disabled.", name=account.name),
                     warning=left_without_backup(account, left_without) if left_without else None)


@bp.post("/<int:account_id>/make-default")
@role_required("admin")
def make_default(account_id):
    """Make an enabled account the default; the previous default stops being it, in the same transaction."""
    with database.atomic("IMMEDIATE"):
        account = get_or_404(SmtpAccount, account_id)
        if not account.enabled:
            return _refuse(_("“%(name)s” is disabled, and the default account must be enabled. Enable it "
                             "first.", name=account.name))
        before = account.audit_snapshot()
        previous = None
        if not account.is_default:
            previous = account.make_default()
            audit("make_default", account, AuditEntry.diff(before, account.audit_snapshot()))
            if previous is not None:
                _audit_undefault(previous)
    return _row_done(account, _("“%(name)s” is now the default account.", name=account.name), previous)


# --- The form ---------------------------------------------------------------------------------------------


class EditConflict(Exception):
    """The account changed since its form was opened: saving would silently overwrite that change."""


def _save(form: AccountForm, account_id: int | None = None) -> tuple[SmtpAccount, bool, list]:
    """Save the form as a new account (or onto account_id) with the default rules and the audit, atomically.

    Returns the account, whether it became the default only because there was none, and the accounts naming it as
    their backup when this save disabled it (they have no failover while it stays disabled).
    """
    with database.atomic("IMMEDIATE"):
        # Re-read inside the lock: is_default may have moved since the form was validated.
        account = get_or_404(SmtpAccount, account_id) if account_id else SmtpAccount()
        if account_id and form.is_stale(account):
            raise EditConflict()
        before = account.audit_snapshot() if account_id else None
        was_enabled = bool(account_id) and account.enabled
        form.apply_to(account)
        account.updated_at = utcnow()
        account.save_assigned()  # not the workers' columns
        previous, first_default = None, False
        if form.is_default.checked and not account.is_default:
            previous = account.make_default()
        elif account.enabled and not account.is_default and SmtpAccount.default() is None:
            account.make_default()
            first_default = True
        audit("update" if account_id else "create", account, AuditEntry.diff(before, account.audit_snapshot()))
        if previous is not None:
            _audit_undefault(previous)
        left_without = account.accounts_backed_up() if was_enabled and not account.enabled else []
    return account, first_default, left_without


def _submit(form: AccountForm, account: SmtpAccount | None):
    """Save a valid form and go back to the report, else answer 422 with its errors; Apply only fills it in."""
    back = safe_next(request.args.get("next"), url_for("accounts.index"))
    if form.apply_preset.data:
        form.fill_from_preset()
    elif form.validate_on_submit():
        try:
            saved, first_default, left_without = _save(form, account.id if account else None)
        except IntegrityError:
            # Another request saved a clashing change after our validation: validate again to say which.
            if form.validate():
                form.form_errors.append(_("Another change was saved at the same moment. Check the values "
                                          "and submit again."))
        except EditConflict:
            form.form_errors.append(_("This account was changed by someone else while you edited it: reload to "
                                      "see their changes"))
        else:
            if account:
                flash(_("Account “%(name)s” saved.", name=saved.name), "success")
            else:
                flash(_("Account “%(name)s” created.", name=saved.name), "success")
            if first_default:
                flash(_("“%(name)s” is the default account, as there was none.", name=saved.name), "info")
            if left_without:
                flash(left_without_backup(saved, left_without), "warning")
            return go_to(back)
    return render_form("accounts/form.html", form, block="account_form", account=account, back=back)


@bp.route("/new", methods=["GET", "POST"])
@role_required("admin")
def create():
    """Add an SMTP account."""
    return _submit(AccountForm(), None)


@bp.route("/<int:account_id>/edit", methods=["GET", "POST"])
@role_required("admin")
def edit(account_id):
    """Edit an SMTP account."""
    account = get_or_404(SmtpAccount, account_id)
    return _submit(AccountForm(account=account), account)


@bp.post("/<int:account_id>/delete")
@role_required("admin")
def delete(account_id):
    """Delete an account (not the default one), after the page asked for confirmation."""
    try:
        with database.atomic("IMMEDIATE"):
            account = get_or_404(SmtpAccount, account_id)
            if account.is_default:
                flash(_("“%(name)s” is the default account and cannot be deleted. Make another account the "
                        "default first.", name=account.name), "error")
                return redirect(url_for("accounts.edit", account_id=account.id), 303)
            before = account.audit_snapshot()
            left_without = _clear_backup_of(account)
            account.delete_instance()
            audit("delete", account, AuditEntry.diff(before, None))
    except IntegrityError:
        # A foreign key (e.g. the delivery log) still points at the account.
        flash(_("This account cannot be deleted: other records still refer to it. Disable it instead."), "error")
        return redirect(url_for("accounts.edit", account_id=account_id), 303)
    flash(_("Account “%(name)s” deleted.", name=account.name), "success")
    if left_without:
        flash(ngettext("The account %(names)s has no backup any more.",
                       "The accounts %(names)s have no backup any more.",
                       len(left_without), names=quoted_names(left_without)), "warning")
    return redirect(url_for("accounts.index"), 303)


def _clear_backup_of(backup: SmtpAccount) -> list:
    """Before backup is deleted: the accounts naming it lose their backup, each recorded as a change of that account
    (the foreign key's ON DELETE SET NULL would do the same unrecorded). Returns them."""
    accounts = backup.accounts_backed_up()
    for account in accounts:
        before = account.audit_snapshot()
        account.backup_account, account.updated_at = None, utcnow()
        # Only these columns: the workers keep the failover state of the row meanwhile. The version moves, so a form
        # opened on the account before says it changed.
        SmtpAccount.update(backup_account=None, updated_at=account.updated_at).where(
            SmtpAccount.id == account.id).execute()
        audit("update", account, AuditEntry.diff(before, account.audit_snapshot()))
    return accounts


# --- Test configuration -----------------------------------------------------------------------------------


def _inline() -> bool:
    """Whether this request wants the dialog alone (htmx) rather than a page."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def _test_dialog(account: SmtpAccount, form: EmailTestForm, outcome: Outcome | None = None, status: int = 200):
    """The Test Email dialog: alone for htmx (with the account's row refreshed out of band), as a page otherwise."""
    back = _back()
    context = dict(account=account, account_name=account.name, form=form, outcome=outcome, back=back,
                   inline=_inline(), deadline=current_app.config["SMTP_DEADLINE"])
    if not _inline():
        return render_template("accounts/test.html", **context), status
    body = render_block("accounts/test.html", "test_dialog", **context)
    # The row comes along out of band: its menu closes as the dialog opens, and it shows a test's outcome.
    # (A <tr> cannot stand beside a <dialog>: the <template> keeps it whole for htmx.)
    return body + "<template>" + _row(account, oob=True) + "</template>", status


@bp.get("/<int:account_id>/test")
@role_required("test")
def test_dialog(account_id):
    """The Test Email dialog of an account, with the default subject and message in the user's language."""
    return _test_dialog(get_or_404(SmtpAccount, account_id), EmailTestForm())


@bp.post("/<int:account_id>/test")
@role_required("test")
def test_send(account_id):
    """Send a test message through the account as saved; show the outcome in the dialog and keep it on the row."""
    account = get_or_404(SmtpAccount, account_id)
    form = EmailTestForm()
    if not form.validate_on_submit():
        return _test_dialog(account, form, status=422)
    outcome = send_test(account, to=form.to.data, subject=form.subject.data, body=form.body.data)
    with database.atomic():
        record(account, outcome)
        audit("test", account, outcome.audit_changes())
    return _test_dialog(account, form, outcome)


@bp.post("/test-settings")
@role_required("admin")
def test_settings():
    """"Test these settings": one test message with the account form's unsaved values; nothing is saved."""
    account_id = request.args.get("account_id", type=int)
    saved = get_or_404(SmtpAccount, account_id) if account_id else None
    form = AccountTestForm(account=saved)
    back = safe_next(request.args.get("next"), url_for("accounts.index"))
    if not form.validate_on_submit():
        body, status = render("accounts/form.html", block="account_form", form=form, account=saved, back=back,
                              status=422)
        return body, status, {"HX-Retarget": "#account-form", "HX-Reswap": "outerHTML"}
    candidate = form.apply_to(SmtpAccount())
    to = form.test_to.data
    typed = form.test_secret.data is not None and candidate.use_auth
    moved = None if typed else stored_credential_moved(candidate, editing=saved)
    if moved is not None:
        outcome = Outcome(result=refused(moved), route=route_label(candidate), to=to)
        if candidate.credential.kind in TYPED_SECRET_COLUMNS:
            form.test_secret.errors.append(_(
                "The stored secret of this credential goes only with the host, port, connector and security "
                "settings of a saved account that uses it. Type the secret here to test these settings, save the "
                "account first, or choose the settings of an account that uses it."))
        else:
            form.test_secret.errors.append(_(
                "The stored secrets of this credential go only with the host, port, connector and security "
                "settings of a saved account that uses it. Save the account first, or choose the settings of an "
                "account that uses it."))
    else:
        credential = typed_credential(candidate.credential, form.test_secret.data) if typed else SAVED_CREDENTIAL
        outcome = send_test(candidate, to=to, subject=_("TEST MESSAGE!"), body=_("ATTENTION: THIS IS A TEST MESSAGE!"),
                            credential=credential)
    with database.atomic():
        where = {} if saved else {"object_type": "smtp_account", "object_name": candidate.name}
        extra = {"secret": "typed"} if typed else {}
        audit("test", saved, outcome.audit_changes(settings="unsaved", **extra), **where)
    context = dict(account=saved, account_name=candidate.name, form=None, outcome=outcome, back=back,
                   inline=_inline(), deadline=current_app.config["SMTP_DEADLINE"])
    status = 422 if moved is not None else 200
    if not _inline():
        return render_template("accounts/form.html", **{**context, "form": form, "test_outcome": outcome}), status
    if moved is not None:
        # The field error in the form, and the refusal in the dialog (out of band) where the outcome always shows.
        body = (render_block("accounts/form.html", "account_form", form=form, account=saved, back=back)
                + render_block("accounts/test.html", "test_dialog", oob=True, **context))
        return body, status, {"HX-Retarget": "#account-form", "HX-Reswap": "outerHTML"}
    return render_block("accounts/test.html", "test_dialog", **context), status, {
        "HX-Retarget": "#test-dialog", "HX-Reswap": "outerHTML"}
