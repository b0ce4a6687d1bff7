"""The credential vault screen: list, add, edit and delete logins; secrets are write-only."""
from flask import flash, make_response, redirect, request, url_for
from flask_babel import gettext as _
from peewee import IntegrityError, fn

from webapp.accounts.testing import explain
from webapp.credentials import bp, provider
from webapp.credentials.forms import KIND_LABELS, M365_SCOPE, M365_TOKEN_URL, TENANT_PATTERN, CredentialForm
from webapp.db import database
from webapp.mail import MailError, oauth
from webapp.models import AuditEntry, Credential, utcnow
from webapp.web import (
    allow_form_action,
    audit,
    get_or_404,
    go_to,
    refuse,
    removed,
    render,
    render_form,
    role_required,
)


def _done(message: str, category: str = "success"):
    return go_to(url_for("credentials.index"), message, category)


@bp.get("/")
@role_required("view")
def index():
    """The vault: every credential, whether its secret is set, and which accounts use it."""
    credentials = list(Credential.select().order_by(fn.LOWER(Credential.name)))
    page = render("credentials/list.html", block="credential_rows", credentials=credentials,
                  used_by=Credential.usage(), kind_labels=KIND_LABELS)
    return allow_form_action(make_response(page), provider.sign_in_origins(credentials))


@bp.route("/new", methods=["GET", "POST"])
@role_required("admin")
def create():
    """Add a credential of any type; its secrets are stored encrypted."""
    form = CredentialForm()
    if form.redraw_only():
        return _form_page(form, None)
    if form.validate_on_submit():
        credential = Credential()
        form.fill(credential)
        try:
            with database.atomic():
                credential.save()
                audit("create", credential, AuditEntry.diff(None, credential.audit_snapshot()))
        except IntegrityError:  # a same-named credential saved meanwhile
            form.name.errors.append(_("A credential with this name already exists."))
        else:
            return _done(_("Credential “%(name)s” added.", name=credential.name))
    return _form_page(form, None)


@bp.route("/<int:credential_id>/edit", methods=["GET", "POST"])
@role_required("admin")
def edit(credential_id: int):
    """Change a credential or its type; an empty secret field keeps the stored secret."""
    credential = get_or_404(Credential, credential_id)
    form = CredentialForm(credential=credential)
    if form.redraw_only():
        return _form_page(form, credential)
    if form.validate_on_submit():
        before = credential.audit_snapshot()
        form.fill(credential)
        changes = AuditEntry.diff(before, credential.audit_snapshot())
        if not changes:
            return _done(_("Nothing changed in “%(name)s”.", name=credential.name), "info")
        credential.updated_at = utcnow()
        try:
            with database.atomic():
                credential.save_assigned()  # not a refresh token rotated since it was read
                audit("update", credential, changes)
        except IntegrityError:
            form.name.errors.append(_("A credential with this name already exists."))
        else:
            return _done(_("Credential “%(name)s” saved.", name=credential.name))
    return _form_page(form, credential)


def _form_page(form: CredentialForm, credential: Credential | None):
    """The form page, or just the form for htmx; 422 when it was submitted with errors."""
    page = render_form("credentials/form.html", form, block="credential_form", credential=credential,
                       tenant_pattern=TENANT_PATTERN, m365_token_url=M365_TOKEN_URL, m365_scope=M365_SCOPE,
                       redirect_uri=provider.redirect_uri())
    return allow_form_action(make_response(page), provider.sign_in_origins([credential] if credential else []))


@bp.post("/<int:credential_id>/connect")
@role_required("admin")
def connect(credential_id: int):
    """Send the browser to the provider to sign in and allow access; it comes back to oauth_callback."""
    credential = get_or_404(Credential, credential_id)
    back = url_for("credentials.edit", credential_id=credential.id)
    if credential.kind != oauth.REFRESH_TOKEN:
        return refuse(_("Only a credential of the type “%(kind)s” connects with its provider.",
                        kind=KIND_LABELS[oauth.REFRESH_TOKEN]), back)
    try:
        url = provider.start(credential)
    except oauth.OAuthSettingError as error:
        return refuse(_("The authorization URL is refused: %(reason)s", reason=_(error.message, **error.params)), back)
    return go_to(url)


@bp.get("/oauth/callback")
@role_required("admin")
def oauth_callback():
    """Where the provider sends the browser back: check the attempt, exchange the code, store the refresh token."""
    attempt = provider.take(request.args.get("state"))
    credential = Credential.by_id(attempt["credential"]) if attempt else None
    if credential is None or credential.kind != oauth.REFRESH_TOKEN:
        flash(_("This return from the provider matches no connection you started here in the last %(minutes)s "
                "minutes, or it was used already. Nothing was stored: press “Connect with the provider” again.",
                minutes=provider.ATTEMPT_SECONDS // 60), "error")
        return redirect(url_for("credentials.index"), 303)
    back = url_for("credentials.edit", credential_id=credential.id)
    if provider.settings_of(credential) != attempt.get("settings"):
        flash(settings_changed(), "error")
        return redirect(back, 303)
    code, error = request.args.get("code"), request.args.get("error")
    try:
        if error or not code:
            raise provider.authorization_refused(credential, error or "invalid_request",
                                                 request.args.get("error_description") or "")
        token = provider.refresh_token(credential, attempt, code)
    except MailError as refusal:
        flash(f"{explain(refusal.message, refusal.params)} {explain(refusal.hint, refusal.params)}", "error")
        return redirect(back, 303)
    with database.atomic("IMMEDIATE"):
        # Read again: another admin may have changed the credential while its token endpoint answered. Only the
        # refresh token is written, so nothing of theirs is put back.
        current = Credential.by_id(credential.id)
        if current is None or provider.settings_of(current) != attempt["settings"]:
            flash(settings_changed(), "error")
            return redirect(url_for("credentials.index") if current is None else back, 303)
        before = current.audit_snapshot()
        current.set_secret(token, "refresh_token_encrypted")
        current.updated_at = utcnow()
        current.save(only=[Credential.refresh_token_encrypted, Credential.updated_at])
        audit("connect", current, AuditEntry.diff(before, current.audit_snapshot()))
    flash(_("Connected: refresh token stored."), "success")
    return redirect(back, 303)


def settings_changed() -> str:
    """Why a return from the provider stored nothing: the attempt was started under other settings."""
    return _("The credential's settings changed after the connection started. Nothing was stored: press “Connect "
             "with the provider” again.")


@bp.post("/<int:credential_id>/delete")
@role_required("admin")
def delete(credential_id: int):
    """Delete a credential no account uses; otherwise say which accounts hold it."""
    credential = get_or_404(Credential, credential_id)
    with database.atomic("IMMEDIATE"):
        users = credential.accounts_using()
        if not users:
            before = credential.audit_snapshot()
            credential.delete_instance()
            audit("delete", credential, AuditEntry.diff(before, None))
    if users:
        message = _("“%(name)s” cannot be deleted: it is used by %(accounts)s. "
                    "Choose another credential for these accounts first.",
                    name=credential.name, accounts=", ".join(a.name for a in users))
        return refuse(message, url_for("credentials.index"))
    return removed(_("Credential “%(name)s” deleted.", name=credential.name), url_for("credentials.index"))
