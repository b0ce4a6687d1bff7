"""Network connectors: list, add, edit, delete, the system default, and Test connector."""
import time

from flask import current_app, flash, redirect, request, url_for
from flask_babel import gettext as _
from peewee import IntegrityError, fn

from webapp.accounts.testing import Outcome, refused
from webapp.connectors import bp
from webapp.connectors.forms import ConnectionTestForm, ConnectorForm
from webapp.db import database
from webapp.mail import MailError, SendResult, open_connection
from webapp.mail.connectors import parse_networks
from webapp.models import AuditEntry, Connector, utcnow
from webapp.web import audit, get_or_404, go_to, refuse, removed, render, render_form, role_required


def _list_context() -> dict:
    """The connectors by name and, in one go, the accounts going through each."""
    return {"connectors": list(Connector.select().order_by(fn.LOWER(Connector.name))), "used_by": Connector.usage()}


def _done(message: str, category: str = "success"):
    return go_to(url_for("connectors.index"), message, category)


def _refuse(message: str):
    return refuse(message, url_for("connectors.index"))


def _rows_or_list(message: str):
    """After a default change: the refreshed rows for htmx, the list with a flash otherwise."""
    if request.htmx:
        return render("connectors/list.html", block="connector_rows", **_list_context())
    flash(message, "success")
    return redirect(url_for("connectors.index"), 303)


def _account_names(accounts: list) -> str:
    """Account names for a message, marking those that only rely on the system default."""
    through_default = _("(through the system default)")
    return ", ".join(a.name if a.connector_id else f"{a.name} {through_default}" for a in accounts)


@bp.get("/")
@role_required("view")
def index():
    """The proxy hops accounts may go through, which one is the system default, and who uses each."""
    return render("connectors/list.html", block="connector_rows", **_list_context())


@bp.route("/new", methods=["GET", "POST"])
@role_required("admin")
def create():
    """Add a connector, optionally as the new system default."""
    form = ConnectorForm()
    if form.validate_on_submit():
        connector = Connector()
        form.fill(connector)
        try:
            with database.atomic("IMMEDIATE"):
                connector.save()
                previous = connector.make_default() if form.is_default.checked else None
                changes = AuditEntry.diff(None, connector.audit_snapshot())
                if previous is not None:
                    changes["default_connector"] = [previous.name, connector.name]
                audit("create", connector, changes)
        except IntegrityError:  # a same-named connector saved meanwhile
            form.name.errors.append(_("A connector with this name already exists."))
        else:
            return _done(_("Connector “%(name)s” added.", name=connector.name))
    return _form_page(form, None)


@bp.route("/<int:connector_id>/edit", methods=["GET", "POST"])
@role_required("admin")
def edit(connector_id: int):
    """Change a connector; an empty password field keeps the stored password."""
    connector = get_or_404(Connector, connector_id)
    form = ConnectorForm(connector=connector)
    if form.validate_on_submit():
        before = connector.audit_snapshot()
        form.fill(connector)
        try:
            with database.atomic("IMMEDIATE"):
                previous = None
                if form.is_default.checked and not connector.is_default:
                    previous = connector.make_default()
                elif not form.is_default.checked:
                    connector.is_default = False
                changes = AuditEntry.diff(before, connector.audit_snapshot())
                if previous is not None:
                    changes["default_connector"] = [previous.name, connector.name]
                if changes:
                    connector.updated_at = utcnow()
                    connector.save()
                    audit("update", connector, changes)
        except IntegrityError:
            form.name.errors.append(_("A connector with this name already exists."))
        else:
            if not changes:
                return _done(_("Nothing changed in “%(name)s”.", name=connector.name), "info")
            return _done(_("Connector “%(name)s” saved.", name=connector.name))
    return _form_page(form, connector)


def _form_page(form: ConnectorForm, connector: Connector | None):
    """The form page, or just the form for htmx; 422 when it was submitted with errors."""
    return render_form("connectors/form.html", form, block="connector_form", connector=connector)


@bp.post("/<int:connector_id>/delete")
@role_required("admin")
def delete(connector_id: int):
    """Delete a connector no account goes through; otherwise say which accounts do."""
    connector = get_or_404(Connector, connector_id)
    with database.atomic("IMMEDIATE"):
        users = connector.accounts_using()
        if not users:
            before = connector.audit_snapshot()
            connector.delete_instance()
            audit("delete", connector, AuditEntry.diff(before, None))
    if users:
        return _refuse(_("“%(name)s” cannot be deleted: it is used by %(accounts)s. Choose another connector "
                         "for these accounts, or make another connector the default, first.",
                         name=connector.name, accounts=_account_names(users)))
    return removed(_("Connector “%(name)s” deleted.", name=connector.name), url_for("connectors.index"))


@bp.post("/<int:connector_id>/make-default")
@role_required("admin")
def make_default(connector_id: int):
    """Make this connector the system default (the previous default stops being it, atomically)."""
    with database.atomic("IMMEDIATE"):
        connector = get_or_404(Connector, connector_id)
        if not connector.is_default:
            previous = connector.make_default()
            audit("make_default", connector, {
                "is_default": [False, True],
                "default_connector": [previous.name if previous else None, connector.name],
            })
    return _rows_or_list(_("“%(name)s” is now the system default connector.", name=connector.name))


@bp.post("/<int:connector_id>/unset-default")
@role_required("admin")
def unset_default(connector_id: int):
    """Leave the system without a default connector, unless accounts rely on it."""
    with database.atomic("IMMEDIATE"):
        connector = get_or_404(Connector, connector_id)
        relying = Connector.relying_on_default() if connector.is_default else []
        if connector.is_default and not relying:
            connector.is_default = False
            connector.updated_at = utcnow()
            connector.save(only=[Connector.is_default, Connector.updated_at])
            audit("unset_default", connector, {
                "is_default": [True, False],
                "default_connector": [connector.name, None],
            })
    if relying:
        return _refuse(_("“%(name)s” stays the system default: %(accounts)s use a connector without choosing "
                         "one. Choose a connector for them, or make another connector the default.",
                         name=connector.name, accounts=", ".join(a.name for a in relying)))
    return _rows_or_list(_("There is no system default connector now."))


# --- Test connector ---------------------------------------------------------------------------------------


def _default_target(connector: Connector) -> dict:
    """The SMTP host and port of an account going through this connector, else nothing."""
    for account in connector.accounts_using():
        return {"host": account.host, "port": account.effective_port}
    return {}


def try_connection(connector: Connector, host: str, port: int) -> Outcome:
    """Open (and close) a TCP connection to host:port through the connector, bounded by the SMTP timeouts."""
    config = current_app.config
    timeout = min(float(config["SMTP_TIMEOUT"]), float(config["SMTP_DEADLINE"]))
    started = time.monotonic()
    hop, blocked = connector.hop(), parse_networks(config["OUTBOUND_BLOCKED_NETWORKS"])
    try:
        sock = open_connection(host, port, timeout, hop, blocked_networks=blocked)
    except MailError as error:
        result = refused(error)
        result.elapsed = time.monotonic() - started
    else:
        sock.close()
        result = SendResult(ok=True, elapsed=time.monotonic() - started, code=None, reply=None, tls="none",
                            transcript=[], error=None)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Outcome(result=result, route=connector.name, to=target)


@bp.route("/<int:connector_id>/test", methods=["GET", "POST"])
@role_required("test")
def test(connector_id: int):
    """Test connector: connect through the hop to a host and port; success or the proxy's own reason, in place."""
    connector = get_or_404(Connector, connector_id)
    form = ConnectionTestForm(data=_default_target(connector))
    outcome = None
    if form.validate_on_submit():
        outcome = try_connection(connector, form.host.data, form.port.data)
        with database.atomic():
            error = outcome.error
            audit("test", connector, {"ok": outcome.ok, "target": outcome.to,
                                      "step": error.step.value if error else None})
    inline = bool(request.htmx) and not request.htmx.history_restore_request
    return render_form("connectors/test.html", form, block="test_dialog", connector=connector, outcome=outcome,
                       inline=inline)
