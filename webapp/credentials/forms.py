"""The credential form: one type at a time (a login and password, or an OAuth 2.0 grant); secrets are write-only."""
import ipaddress
import re

from flask import current_app
from flask_babel import gettext
from flask_wtf.file import FileField
from wtforms import SelectField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Optional, StopValidation, ValidationError

from webapp.forms import (
    CONTROL_CHARS_BUT_LINES,
    Form,
    SecretField,
    SecretTextField,
    StrippedStringField,
    check_address,
    check_host,
    max_length,
    name_taken,
    no_control_characters,
    secret_characters,
)
from webapp.mail import oauth
from webapp.mail.authorization import check_authorization_url
from webapp.models import Credential
from webapp.translation import lazy_gettext as _l

KIND_LABELS = {
    oauth.PASSWORD: _l("Username and password"),
    oauth.CLIENT_CREDENTIALS: _l("OAuth 2.0 — client credentials"),
    oauth.REFRESH_TOKEN: _l("OAuth 2.0 — refresh token"),
    oauth.JWT_BEARER: _l("OAuth 2.0 — service account (JWT)"),
}
# The fields each type shows and reads. The others are hidden, not validated, and emptied when the type is saved.
KIND_FIELDS = {
    oauth.PASSWORD: {"username", "secret"},
    oauth.CLIENT_CREDENTIALS: {"mailbox", "tenant_id", "token_url", "client_id", "client_secret", "scope"},
    oauth.REFRESH_TOKEN: {"mailbox", "authorization_url", "token_url", "client_id", "client_secret", "scope",
                          "refresh_token"},
    oauth.JWT_BEARER: {"mailbox", "service_account_file", "service_account_key", "scope"},
}
OAUTH_SETTINGS = ("token_url", "authorization_url", "client_id", "scope")
# Each typed secret and the column it is encrypted into.
SECRET_FIELDS = {"secret": "secret_encrypted", "client_secret": "client_secret_encrypted",
                 "refresh_token": "refresh_token_encrypted"}
KEY_COLUMN = "service_account_key_encrypted"

# The Microsoft 365 helper: a tenant's token endpoint, and Exchange Online's scope for app-only SMTP.
M365_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
M365_SCOPE = "https://outlook.office365.com/.default"
# A directory (tenant) ID or one of its domains; also the input's pattern attribute, which app.js checks.
TENANT_PATTERN = r"[A-Za-z0-9][A-Za-z0-9.\-]{0,252}"
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), tokens separated by spaces.
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def for_chosen_type(form, field):
    """Validate a field only when the chosen type shows it: a hidden field's value is ignored."""
    if field.short_name not in KIND_FIELDS.get(form.kind.data, ()):
        field.errors.clear()
        raise StopValidation()


def check_endpoint_url(url: str, check=oauth.check_endpoint) -> None:
    """ValidationError unless url may be an OAuth 2.0 endpoint (webapp.mail.oauth.check_endpoint, or the given
    check) of a valid host."""
    try:
        host, _port = check(url, bool(current_app.config.get("OAUTH_ALLOW_LOOPBACK")))
    except oauth.OAuthSettingError as error:
        raise ValidationError(gettext(error.message, **error.params)) from None
    check_host(host)


def endpoint_url(form, field):
    """Validator: an https URL, or plain http to this machine when the OAUTH_ALLOW_LOOPBACK setting is on."""
    if field.data:
        check_endpoint_url(field.data)


def authorization_endpoint_url(form, field):
    """Validator: endpoint_url, and none of the parameters smtpdesk adds to the request already in the query."""
    if field.data:
        check_endpoint_url(field.data, check_authorization_url)


def mailbox_address(form, field):
    """Validator: one address, without a display name."""
    if field.data:
        field.data = check_address(field.data, allow_display_name=False)


def scope_tokens(form, field):
    """Validator: scope tokens separated by spaces, kept with one space between them."""
    tokens = [token for token in (field.data or "").split(" ") if token]
    if not all(SCOPE_TOKEN.fullmatch(token) for token in tokens):
        raise ValidationError(_l("A scope is one or more words separated by spaces, in ASCII letters, digits and "
                                 "punctuation other than quotes and backslashes."))
    field.data = " ".join(tokens)


def tenant(form, field):
    """Validator: a Microsoft 365 tenant ID or domain. Checked on saving too, though not stored: a typed field is."""
    if field.data and not re.fullmatch(TENANT_PATTERN, field.data):
        raise ValidationError(_tenant_wanted())


def _tenant_wanted() -> str:
    return gettext("Enter the tenant ID (a GUID such as 00000000-0000-0000-0000-000000000000) or a domain of the "
                   "tenant.")


def check_allowed_hosts(text: str) -> list[str]:
    """The normalised host list of an "allowed hosts" text, or ValidationError naming the lines that are wrong."""
    hosts, wrong = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            host = "*." + _wildcard_base(line[2:]) if line.startswith("*.") else check_host(line)
        except ValidationError:
            wrong.append(str(number))
            continue
        if host not in hosts:
            hosts.append(host)
    if wrong:
        raise ValidationError(_l(
            "Line %(lines)s is not a host name, an IP address or *.domain (one per line, no spaces).",
            lines=", ".join(wrong)))
    return hosts


def _wildcard_base(value: str) -> str:
    """The domain under a "*." pattern: a host name, not an IP address."""
    base = check_host(value)
    try:
        ipaddress.ip_address(base)
    except ValueError:
        return base
    raise ValidationError(_l("An IP address cannot take a wildcard."))


class CredentialForm(Form):
    name = StrippedStringField(_l("Name"), validators=[
        DataRequired(), max_length(100), no_control_characters])
    kind = SelectField(_l("Credential type"), default=oauth.PASSWORD,
                       choices=[SelectChoice(kind, label) for kind, label in KIND_LABELS.items()])
    username = StrippedStringField(_l("Username"), validators=[
        for_chosen_type, DataRequired(), max_length(254), no_control_characters],
        description=_l("The login the SMTP server expects, often the mailbox address."))
    secret = SecretField(_l("Secret"), validators=[for_chosen_type, max_length(4096), secret_characters],
                         description=_l("The password or token. It is stored encrypted and never shown again."))
    # The OAuth 2.0 types log in as this mailbox; it is stored in the username column.
    mailbox = StrippedStringField(_l("User (mailbox)"), validators=[
        for_chosen_type, DataRequired(), max_length(254), mailbox_address],
        description=_l("The address of the mailbox the messages are sent as; the access token is obtained for it."))
    # Not stored: the Microsoft 365 helper fills the token URL and the scope from it.
    tenant_id = StrippedStringField(
        _l("Microsoft 365 tenant ID"), validators=[for_chosen_type, tenant],
        description=_l("The directory (tenant) ID, or a domain of the tenant such as contoso.onmicrosoft.com."))
    fill_microsoft_365 = SubmitField(_l("Fill in for Microsoft 365"))
    authorization_url = StrippedStringField(_l("Authorization URL"), validators=[
        for_chosen_type, DataRequired(), authorization_endpoint_url],
        description=_l("Where the provider's sign-in page starts (its authorization endpoint), an https:// URL."))
    token_url = StrippedStringField(_l("Token URL"), validators=[for_chosen_type, DataRequired(), endpoint_url],
                                    description=_l("The provider's token endpoint, an https:// URL."))
    client_id = StrippedStringField(_l("Client ID"), validators=[
        for_chosen_type, DataRequired(), max_length(255), no_control_characters],
        description=_l("The application (client) ID registered with the provider."))
    client_secret = SecretField(_l("Client secret"), validators=[for_chosen_type, max_length(4096), secret_characters],
                                description=_l("Stored encrypted and never shown again. A public client that only "
                                               "uses a refresh token may have none."))
    scope = StrippedStringField(_l("Scope"), validators=[
        for_chosen_type, DataRequired(), max_length(1000), no_control_characters, scope_tokens],
        description=_l("Space-separated, as the provider documents it: https://outlook.office365.com/.default for "
                       "Microsoft 365 app-only, https://mail.google.com/ for Gmail."))
    refresh_token = SecretField(_l("Refresh token"), validators=[
        for_chosen_type, max_length(8192), secret_characters],
        description=_l("Optional: paste a refresh token issued to this client where signing in through the browser "
                       "is not possible. Stored encrypted and never shown again."))
    service_account_file = FileField(
        _l("Service account JSON key"), validators=[for_chosen_type],
        description=_l("The key file downloaded from the Google Cloud console (IAM, Service accounts, Keys). Stored "
                       "encrypted; its private key is never shown again."))
    service_account_key = SecretTextField(_l("…or paste the key file's contents"), validators=[for_chosen_type])
    description = TextAreaField(_l("Description"), validators=[Optional(), max_length(2000)],
                                filters=[lambda value: value.strip() if isinstance(value, str) else value],
                                description=_l("Optional: what this login is for, who owns it."))
    allowed_hosts = TextAreaField(
        _l("Allowed hosts"), validators=[max_length(20000)],
        description=_l("Optional. One host per line: smtp.example.com, an IP address, or *.example.com for "
                       "every host under example.com. The secret is only ever sent to these hosts; "
                       "leave empty to allow any host."),
    )
    # Without JavaScript, this redraws the form with the chosen type's fields (app.js shows them at once).
    show_fields = SubmitField(_l("Show the fields of this type"))

    def __init__(self, *args, credential: Credential | None = None, **kwargs):
        if credential is not None:
            kwargs.setdefault("mailbox", credential.username)
        super().__init__(*args, obj=credential, **kwargs)
        self.credential = credential
        self.service_account = None  # (key, JSON to store) of a key given in this submission
        # Read once: fill() may change the credential before a failed save re-renders this form.
        self.stored = {column for column in (*SECRET_FIELDS.values(), KEY_COLUMN)
                       if credential is not None and getattr(credential, column)}
        if "secret_encrypted" in self.stored:
            self.secret.description = _l("Secret set — enter a new one to change it.")
        if "client_secret_encrypted" in self.stored:
            self.client_secret.description = _l("Client secret set — enter a new one to change it.")
        if "refresh_token_encrypted" in self.stored:
            self.refresh_token.description = _l("Refresh token set — paste a new one to replace it.")
        if KEY_COLUMN in self.stored:
            # gettext, not _l: a lazy string counts as markup in a template, and these values come from the key file.
            self.service_account_file.description = gettext(
                "Key stored: %(email)s, key ID %(key_id)s. Upload a new key file to replace it.",
                email=credential.service_account_email, key_id=credential.service_account_key_id or "—")

    def shown_when(self, name: str) -> str:
        """The data-show-when rule of a field: the types that show it."""
        return "kind=" + "|".join(kind for kind, names in KIND_FIELDS.items() if name in names)

    def hidden(self, name: str) -> bool:
        """Whether the chosen type hides this field."""
        return name not in KIND_FIELDS.get(self.kind.data, ())

    def redraw_only(self) -> bool:
        """Whether the submission only asks to redraw the form (buttons for pages without JavaScript): with the chosen
        type's fields, or with the Microsoft 365 settings filled in. Nothing is validated or saved then."""
        if self.fill_microsoft_365.data:
            if not self.tenant_id.data:
                self.tenant_id.errors = [_tenant_wanted()]
            elif self.tenant_id.validate(self):
                self.token_url.data = M365_TOKEN_URL.format(tenant=self.tenant_id.data)
                self.scope.data = M365_SCOPE
            return True
        return bool(self.show_fields.data)

    def validate_name(self, field):
        if name_taken(Credential, field.data, exclude=self.credential):
            raise ValidationError(_l("A credential with this name already exists."))

    def validate_secret(self, field):
        # A new credential needs its secret; on edit an empty field keeps the stored one.
        if field.data is None and "secret_encrypted" not in self.stored:
            raise ValidationError(_l("Enter the password or token."))

    def validate_client_secret(self, field):
        if (field.data is None and self.kind.data == oauth.CLIENT_CREDENTIALS
                and "client_secret_encrypted" not in self.stored):
            raise ValidationError(_l("Enter the client secret."))

    def validate_service_account_file(self, field):
        if field.data and self.service_account_key.data is not None:
            raise ValidationError(_l("Upload the key file or paste it, not both."))
        if field.data:
            raw = field.data.stream.read(oauth.MAX_KEY_LENGTH + 1)  # no more than the longest key we take
            if len(raw) > oauth.MAX_KEY_LENGTH:
                raise ValidationError(_l("This is too long for a service account key (at most %(max)d characters).",
                                         max=oauth.MAX_KEY_LENGTH))
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise ValidationError(_l("This is not a JSON key file: it does not read as JSON.")) from None
            self._read_key(text)
        elif self.service_account_key.data is None and KEY_COLUMN not in self.stored:
            raise ValidationError(_l("Upload the service account's JSON key file."))

    def validate_service_account_key(self, field):
        if field.data is not None and not self.service_account_file.data:
            self._read_key(field.data)

    def _read_key(self, text: str) -> None:
        try:
            key, stored = oauth.parse_service_account_key(text)
        except oauth.OAuthSettingError as error:
            raise ValidationError(gettext(error.message, **error.params)) from None
        try:
            check_endpoint_url(key.token_uri)
        except ValidationError as error:
            raise ValidationError(gettext("The key's token_uri is refused: %(reason)s", reason=error)) from None
        self.service_account = key, stored

    def validate_description(self, field):
        if field.data and CONTROL_CHARS_BUT_LINES.search(field.data):
            raise ValidationError(_l("Control characters are not allowed here."))

    def validate_allowed_hosts(self, field):
        field.data = "\n".join(check_allowed_hosts(field.data or ""))
        if self.credential is None or not field.data:
            return
        # Narrowing the list must not strand an account that already sends this credential elsewhere.
        narrowed = Credential(allowed_hosts=field.data)
        stranded = [a for a in self.credential.accounts_using() if not narrowed.allows_host(a.host)]
        if stranded:
            # gettext, not _l: a lazy string counts as markup in a template, and account names are not markup.
            raise ValidationError(gettext(
                "These accounts use this credential with a host this list leaves out: %(accounts)s. "
                "Add their hosts, or choose another credential for them first.",
                accounts=", ".join(f"{a.name} ({a.host})" for a in stranded)))

    def fill(self, credential: Credential) -> None:
        """Copy the form onto a credential: the chosen type's fields, the others emptied; an empty secret field keeps
        the stored secret."""
        kind = self.kind.data
        shown = KIND_FIELDS[kind]
        stored_token_url = credential.token_url
        credential.kind = kind
        credential.name = self.name.data
        credential.username = self.username.data if kind == oauth.PASSWORD else self.mailbox.data
        credential.description = self.description.data or ""
        credential.allowed_hosts = self.allowed_hosts.data or ""
        for name in OAUTH_SETTINGS:
            setattr(credential, name, (self[name].data or "") if name in shown else "")
        for name, column in SECRET_FIELDS.items():
            if name not in shown:
                credential.set_secret(None, column)
            elif self[name].data is not None:
                credential.set_secret(self[name].data, column)
        if kind != oauth.JWT_BEARER:
            credential.set_secret(None, KEY_COLUMN)
            credential.service_account_email = credential.service_account_key_id = ""
        elif self.service_account is not None:
            key, stored = self.service_account
            credential.set_secret(stored, KEY_COLUMN)
            credential.service_account_email, credential.service_account_key_id = key.client_email, key.private_key_id
            credential.token_url = key.token_uri  # the assertion goes to the key's own token endpoint
        else:
            credential.token_url = stored_token_url  # the stored key's
