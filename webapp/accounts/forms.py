"""The SMTP account form, the report's filter form and the Test Email dialog's form."""
import json
import re

from cryptography import x509
from flask_babel import gettext as _
from peewee import JOIN
from wtforms import HiddenField, RadioField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, ValidationError

from webapp.accounts.backup import BackupAccountFields
from webapp.accounts.columns import COLUMNS, REPORT_FIELDS, SORTS
from webapp.accounts.limits import SendingLimits
from webapp.accounts.presets import PRESETS, Preset, preset_for_host, preset_named
from webapp.accounts.testing import TYPED_SECRET_COLUMNS
from webapp.db import contains
from webapp.forms import (
    CONTROL_CHARS,
    CONTROL_CHARS_BUT_LINES,
    FilterForm,
    Form,
    PortField,
    SecretField,
    StrippedStringField,
    YesNoField,
    check_address,
    email_address,
    host_name,
    max_length,
    name_taken,
    no_control_characters,
    secret_characters,
)
from webapp.models import Connector, Credential, SmtpAccount
from webapp.translation import lazy_gettext as _l


def _optional_id(value):
    """Coerce a select's value: '' (or None) means no choice, a row (from obj=) its id, else an int id."""
    if value in (None, ""):
        return None
    return int(getattr(value, "id", value))


REQUIRED_ADDRESS = [DataRequired(), email_address]


class AccountForm(SendingLimits, BackupAccountFields, Form):
    """Add or edit an SMTP account: the Account section, then the SMTP server settings (with the sending limits,
    webapp/accounts/limits.py), then the failover (webapp/accounts/backup.py)."""

    # Account section
    name = StrippedStringField(_l("Account name"),
                               validators=[DataRequired(), no_control_characters, max_length(100)])
    enabled = YesNoField(_l("Enabled"), default=True)
    sender = StrippedStringField(
        _l("Sender e-mail"), validators=REQUIRED_ADDRESS,
        description=_l("The From of every notification: an address, optionally with a display name."))
    reply_to = StrippedStringField(_l("Reply-To e-mail"), validators=REQUIRED_ADDRESS,
                                   description=_l("Replies to a notification go here."))
    return_path = StrippedStringField(
        _l("Return-Path e-mail"), validators=REQUIRED_ADDRESS,
        description=_l("Bounces (delivery errors) go here: it is the envelope sender (MAIL FROM)."))
    confirmation_email = StrippedStringField(
        _l("Confirmation e-mail"), validators=REQUIRED_ADDRESS,
        description=_l("Read receipts go here (Disposition-Notification-To)."))
    is_default = YesNoField(_l("Default account"),
                            description=_l("Notifications that name no account are sent through the default one."))
    read_confirmation = YesNoField(_l("Send read confirmation"),
                                   description=_l("Ask the reader's mail program for a read receipt."))
    force_settings = YesNoField(
        _l("Force settings use"),
        description=_l("Yes: this account's Reply-To, Return-Path and Confirmation always win over what a "
                       "sending module asks for."))
    footer_enabled = YesNoField(_l("Enable footer"),
                                description=_l("Append the system footer text to every notification."))

    # SMTP server section. The provider only fills the fields below it: it is not saved.
    provider = SelectField(_l("Provider"), validate_choice=False)
    apply_preset = SubmitField(_l("Apply"))  # the provider's settings for pages without JavaScript
    host = StrippedStringField(_l("SMTP host"), validators=[DataRequired(), max_length(255), host_name])
    port = PortField(_l("Port"), description=_l("Leave empty for the usual port: 25, 587 (TLS) or 465 (SSL)."))
    secure = YesNoField(_l("Use secure connection?"))
    secure_type = RadioField(
        _l("Secure connection type (SSL / TLS)"),
        choices=lambda: [("ssl", "SSL"), ("tls", "TLS")],  # a callable, like YesNoField's (WTForms 3.3)
        default="tls",
        validate_choice=False,
        description=_l("SSL: encrypted from the first byte (usually port 465). TLS: STARTTLS after connecting "
                       "(usually port 587); never falls back to plain text."))
    ignore_cert_errors = YesNoField(
        _l("Ignore certificate error"),
        description=_l("Yes encrypts without checking the server's certificate; the report marks the account "
                       "\"TLS not verified\"."))
    use_auth = YesNoField(_l("Use authentication?"))
    credential = SelectField(_l("Credential for authentication"), coerce=_optional_id, validate_choice=False,
                             description=_l("The login comes from the credential vault."))
    use_connector = YesNoField(_l("Use network connector?"))
    connector = SelectField(_l("Network connector"), coerce=_optional_id, validate_choice=False)

    # Advanced (a collapsed part of the SMTP server section)
    ca_cert = TextAreaField(
        _l("Custom CA certificate (PEM)"),
        description=_l("Optional. For a relay whose certificate comes from a private certificate authority: paste "
                       "that CA's certificate, from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----. It is "
                       "trusted in addition to the system's."))
    helo_name = StrippedStringField(
        _l("HELO/EHLO name"), validators=[max_length(255), host_name],
        description=_l("Optional. The name this machine gives when it greets the server; empty uses this "
                       "machine's own name."))
    # "Test these settings": where the test message goes, and the credential's secret typed for that test alone.
    # Only that button reads them (see AccountTestForm); the secret is never saved nor shown.
    test_to = StrippedStringField(_l("Send to"))
    test_secret = SecretField(
        _l("Secret for this test"), validators=[max_length(4096), secret_characters],
        description=_l("Only for this test, never saved. Needed when these settings are not those of a saved "
                       "account that uses the credential."))
    # Optimistic locking: the account's updated_at when the form was opened (every save moves it).
    version = HiddenField()

    def __init__(self, *args, account: SmtpAccount | None = None, **kwargs):
        super().__init__(*args, obj=account, **kwargs)
        self.account = account
        if account is not None and not self.is_submitted():
            self.version.data = version_of(account)
        self.provider.choices = [preset_choice(preset) for preset in PRESETS]
        self.describe_limits()
        if not self.is_submitted():
            self.provider.data = preset_for_host(account.host if account else None).key
        credentials = Credential.select(Credential.id, Credential.name, Credential.kind).order_by(Credential.name)
        self.credentials = [(c.id, c.name, c.kind) for c in credentials]
        self.list_credentials()
        self.default_connector = Connector.default()
        empty = (_("System default connector (%(name)s)", name=self.default_connector.name)
                 if self.default_connector else _("System default connector (none set)"))
        self.connector.choices = [SelectChoice("", empty)] + [
            SelectChoice(c.id, c.name) for c in Connector.select(Connector.id, Connector.name).order_by(Connector.name)
        ]
        self.backup_account.choices = self.backup_choices()

    @property
    def preset(self) -> Preset:
        """The provider chosen in the form (Custom when none)."""
        return preset_named(self.provider.data)

    def list_credentials(self) -> None:
        """The credential select's options; those of a type the chosen provider expects say so."""
        expected = self.preset.credential_kinds if self.preset.fills else ()
        self.credential.choices = [SelectChoice("", "")] + [
            SelectChoice(id_, _("%(name)s (expected type)", name=name) if kind in expected else name)
            for id_, name, kind in self.credentials
        ]

    @property
    def credentials_json(self) -> str:
        """Each credential's name and type, for the script that marks them as the provider changes."""
        return json.dumps({id_: {"name": name, "kind": kind} for id_, name, kind in self.credentials})

    def fill_from_preset(self) -> None:
        """"Apply": the chosen provider's settings in the server fields, nothing checked or saved."""
        preset = self.preset
        if preset.fills:
            self.host.data = preset.host
            self.port.data, self.port.raw = preset.port, str(preset.port)
            self.secure.data = "yes" if preset.security else "no"
            self.secure_type.data = preset.security or self.secure_type.data
            self.use_auth.data = "yes" if preset.use_auth else "no"
            self.fill_limits(preset)
        self.list_credentials()

    @property
    def port_placeholder(self) -> str:
        """The port used when the field is left empty, for the mode currently chosen."""
        mode = (self.secure_type.data or "tls") if self.secure.checked else "plain"
        return str(SmtpAccount.DEFAULT_PORTS.get(mode, 25))

    def validate_name(self, field):
        if name_taken(SmtpAccount, field.data, exclude=self.account):
            raise ValidationError(_("Another account already has this name."))

    def validate_enabled(self, field):
        if self.account is not None and self.account.is_default and not field.checked:
            raise ValidationError(_("The default account cannot be disabled. Make another account the "
                                    "default first."))

    def validate_is_default(self, field):
        if self.account is not None and self.account.is_default and not field.checked:
            raise ValidationError(_("This is the default account. To change that, make another account "
                                    "the default."))
        if field.checked and not self.enabled.checked and not (self.account and self.account.is_default):
            raise ValidationError(_("Only an enabled account can be the default."))

    def validate_secure_type(self, field):
        if self.secure.checked and field.data not in ("ssl", "tls"):
            raise ValidationError(_("Choose SSL or TLS."))

    def validate_credential(self, field):
        if not self.use_auth.checked:
            return
        if field.data is None:
            raise ValidationError(_("Choose the credential to log in with."))
        credential = Credential.by_id(field.data)
        if credential is None:
            raise ValidationError(_("Choose a credential from the list."))
        if self.host.data and not self.host.errors and not credential.allows_host(self.host.data):
            raise ValidationError(_("This credential may not be sent to %(host)s: its allowed hosts do not "
                                    "include it.", host=self.host.data))

    def validate_connector(self, field):
        if not self.use_connector.checked:
            return
        if field.data is None:
            if self.default_connector is None:
                raise ValidationError(_("No system default connector is set. Choose a connector, or make "
                                        "one the default under Network connectors."))
        elif Connector.by_id(field.data) is None:
            raise ValidationError(_("Choose a connector from the list."))

    def validate_ca_cert(self, field):
        text = (field.data or "").strip()
        if not text:
            field.data = None
            return
        if len(text.encode()) > CA_CERT_MAX_BYTES:
            raise ValidationError(_("The certificate is too large: at most 64 KB."))
        if "PRIVATE KEY" in text:
            # Never store a key: it would sit in the database and the audit log.
            raise ValidationError(_("This contains a private key. Paste only the CA certificate."))
        try:
            x509.load_pem_x509_certificates(text.encode())
        except ValueError:
            raise ValidationError(_("This is not a certificate in PEM form. Paste it from -----BEGIN "
                                    "CERTIFICATE----- to -----END CERTIFICATE-----."))
        field.data = text + "\n"

    def is_stale(self, account: SmtpAccount) -> bool:
        """Whether account (read again inside the save's lock) changed since this form was opened.

        A post without a version (an old client or script) is not checked; a browser always sends one.
        """
        return bool(self.version.data) and self.version.data != version_of(account)

    def apply_to(self, account: SmtpAccount) -> SmtpAccount:
        """Copy the submitted settings onto account; what a no makes irrelevant is cleared.

        is_default is left alone: only make_default() changes it, so one default always remains.
        """
        account.name = self.name.data
        account.enabled = self.enabled.checked
        account.sender = self.sender.data
        account.reply_to = self.reply_to.data
        account.return_path = self.return_path.data
        account.confirmation_email = self.confirmation_email.data
        account.read_confirmation = self.read_confirmation.checked
        account.force_settings = self.force_settings.checked
        account.footer_enabled = self.footer_enabled.checked
        account.host = self.host.data
        account.port = self.port.data
        account.secure = self.secure.checked
        account.secure_type = self.secure_type.data if account.secure else None
        account.ignore_cert_errors = account.secure and self.ignore_cert_errors.checked
        account.use_auth = self.use_auth.checked
        account.credential = self.credential.data if account.use_auth else None
        account.use_connector = self.use_connector.checked
        account.connector = self.connector.data if account.use_connector else None
        account.ca_cert = self.ca_cert.data or None
        account.helo_name = self.helo_name.data or None
        self.apply_limits(account)
        account.backup_account = self.backup_account.data  # failover
        return account


def preset_choice(preset: Preset) -> SelectChoice:
    """A provider option carrying what choosing it fills, for static/js/presets.js."""
    data = {}
    if preset.fills:
        data = {"data-host": preset.host, "data-port": preset.port, "data-secure": "yes" if preset.security else "no",
                "data-secure-type": preset.security or "", "data-use-auth": "yes" if preset.use_auth else "no",
                "data-kinds": " ".join(preset.credential_kinds), "data-help": preset.help_line(),
                **preset.limit_data()}
    return SelectChoice(preset.key, preset.label, render_kw=data, optgroup=preset.group)


def version_of(account: SmtpAccount) -> str:
    """The account's version as the form carries it: its updated_at as an ISO string."""
    return account.updated_at.isoformat() if account.updated_at else ""


CA_CERT_MAX_BYTES = 64 * 1024
TEST_MESSAGE_MAX_BYTES = 100 * 1024
LIST_SEPARATORS = re.compile(r"[,;]")


def one_recipient(form, field):
    """Validator: exactly one address (display name allowed); a list is refused with its own message."""
    value = field.data or ""
    if len(field.raw_data or []) > 1:
        raise ValidationError(_l("Enter exactly one address: a test goes to one recipient."))
    if CONTROL_CHARS.search(value):
        raise ValidationError(_l("Line breaks and control characters are not allowed here."))
    looks_like_a_list = bool(LIST_SEPARATORS.search(value)) or value.count("@") > 1
    if len(value) <= 254:
        try:
            field.data = check_address(value)
            return
        except ValidationError:
            if not looks_like_a_list:
                raise
    if looks_like_a_list:
        raise ValidationError(_l("Enter exactly one address: a test goes to one recipient."))
    raise ValidationError(_l("This address is too long."))


class AccountTestForm(AccountForm):
    """The account form as "Test these settings" reads it: the same fields, and a recipient is required."""

    test_to = StrippedStringField(_l("Send to"), validators=[DataRequired(), one_recipient])

    def validate_test_secret(self, field):
        if field.data is None or not self.use_auth.checked:
            return
        credential = Credential.by_id(self.credential.data)
        if credential is not None and credential.kind not in TYPED_SECRET_COLUMNS:
            raise ValidationError(_("This credential logs in with its stored refresh token or service account key, "
                                    "which cannot be typed here. Save the account and test it from its row, or "
                                    "choose the settings of a saved account that uses this credential."))


class EmailTestForm(Form):
    """The Test Email dialog: one recipient, and a subject and a message with DESIGN.md's defaults."""

    to = StrippedStringField(_l("Send to"), validators=[DataRequired(), one_recipient])
    subject = StrippedStringField(_l("Subject"), default=lambda: _("TEST MESSAGE!"),
                                  validators=[DataRequired(), no_control_characters, max_length(998)])
    body = TextAreaField(_l("Message"), default=lambda: _("ATTENTION: THIS IS A TEST MESSAGE!"),
                         validators=[DataRequired()])

    def validate_body(self, field):
        if len(field.data.encode()) > TEST_MESSAGE_MAX_BYTES:
            raise ValidationError(_("The message is too long: at most 100 KB."))
        if CONTROL_CHARS_BUT_LINES.search(field.data):
            raise ValidationError(_("Control characters are not allowed in the message."))


ENABLED_CHOICES = [SelectChoice("", _l("Any")), SelectChoice("yes", _l("Yes")), SelectChoice("no", _l("No"))]
FILTERED = {column.filter.name: column for column in COLUMNS if column.filter}


def with_backup(query):
    """query (of accounts, joining from SmtpAccount) with each account's backup: its id, name and state, or None."""
    backup = SmtpAccount.alias()
    return (query.select_extend(backup.id, backup.name, backup.enabled)
            .join(backup, JOIN.LEFT_OUTER, on=(SmtpAccount.backup_account == backup.id), attr="backup_account"))


class AccountFilterForm(FilterForm):
    """The report's search filters (one field per filtered column, accounts/columns.py), read from the query
    string (a GET form: no CSRF token), and the order chosen in a column heading."""

    sort = HiddenField(default="id")

    @property
    def sort_key(self) -> str:
        key = self.sort.data or ""
        return key if key.removeprefix("-") in SORTS else "id"

    def filter_fields(self) -> list:
        """The filter form's fields, in the report's column order."""
        return [self[name] for name in FILTERED]

    def params(self, **overrides) -> dict:
        """The filter as query-string arguments (empty ones left out), for links that keep it."""
        values = {name: (self[name].data or "").strip() for name in FILTERED}
        values["sort"] = self.sort_key
        values.update(overrides)
        if values["sort"] == "id":  # the default order needs no argument
            values["sort"] = ""
        return {key: value for key, value in values.items() if value not in ("", None)}

    def query(self):
        """The accounts matching the filter, in the chosen order, every column (the CSV export and the scheduled
        report): one query, whatever the row count."""
        # The credential's and connector's names come along, never their secrets; the backup's name and state too.
        query = (
            SmtpAccount.select(SmtpAccount, Credential.id, Credential.name, Connector.id, Connector.name)
            .join(Credential, JOIN.LEFT_OUTER, on=(SmtpAccount.credential == Credential.id), attr="credential")
            .switch(SmtpAccount)
            .join(Connector, JOIN.LEFT_OUTER, on=(SmtpAccount.connector == Connector.id), attr="connector")
            .switch(SmtpAccount)
        )
        return self.matching(with_backup(query))

    def rows(self):
        """The accounts matching the filter, in the chosen order, with only the fields the report's rows show; their
        backup's name and state come along (the health cell's badges), not in a query per row."""
        return self.matching(with_backup(SmtpAccount.select(*REPORT_FIELDS)))

    def matching(self, query):
        """query narrowed by the filter, in the chosen order."""
        for name, column in FILTERED.items():
            term = (self[name].data or "").strip()
            if not term:
                continue
            field = getattr(SmtpAccount, column.field)
            if column.filter.match == "yes_no":
                if term in ("yes", "no"):
                    query = query.where(field == (term == "yes"))
            else:
                query = query.where(contains(field.cast("TEXT") if field is SmtpAccount.id else field, term))
        key = self.sort_key
        order = SORTS[key.removeprefix("-")]
        return query.order_by(*(expression.desc() if key.startswith("-") else expression.asc()
                                for expression in order))


# WTForms' way of composing a form from data: a field set on the class.
for _column in FILTERED.values():
    _filter = _column.filter
    setattr(AccountFilterForm, _filter.name,
            SelectField(_filter.label, choices=ENABLED_CHOICES, default="", validate_choice=False)
            if _filter.match == "yes_no" else StringField(_filter.label))
del _column, _filter
