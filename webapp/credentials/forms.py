"""The credential form."""
import ipaddress

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import TextAreaField
from wtforms.validators import DataRequired, Optional, ValidationError

from webapp.forms import (
    CONTROL_CHARS_BUT_LINES,
    SecretField,
    StrippedStringField,
    check_host,
    max_length,
    name_taken,
    no_control_characters,
    secret_characters,
)
from webapp.models import Credential


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


class CredentialForm(FlaskForm):
    name = StrippedStringField(_l("Name"), validators=[
        DataRequired(), max_length(100), no_control_characters])
    username = StrippedStringField(_l("Username"), validators=[
        DataRequired(), max_length(254), no_control_characters],
        description=_l("The login the SMTP server expects, often the mailbox address."))
    secret = SecretField(_l("Secret"), validators=[max_length(4096), secret_characters],
                         description=_l("The password or token. It is stored encrypted and never shown again."))
    description = TextAreaField(_l("Description"), validators=[Optional(), max_length(2000)],
                                filters=[lambda value: value.strip() if isinstance(value, str) else value],
                                description=_l("Optional: what this login is for, who owns it."))
    allowed_hosts = TextAreaField(
        _l("Allowed hosts"), validators=[max_length(20000)],
        description=_l("Optional. One host per line: smtp.example.com, an IP address, or *.example.com for "
                       "every host under example.com. The secret is only ever sent to these hosts; "
                       "leave empty to allow any host."),
    )

    def __init__(self, *args, credential: Credential | None = None, **kwargs):
        super().__init__(*args, obj=credential, **kwargs)
        self.credential = credential
        if credential is not None and credential.has_secret:
            self.secret.description = _l("Secret set — enter a new one to change it.")

    def validate_name(self, field):
        if name_taken(Credential, field.data, exclude=self.credential):
            raise ValidationError(_l("A credential with this name already exists."))

    def validate_secret(self, field):
        # A new credential needs its secret; on edit an empty field keeps the stored one.
        if field.data is None and (self.credential is None or not self.credential.has_secret):
            raise ValidationError(_l("Enter the password or token."))

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
            raise ValidationError(_l(
                "These accounts use this credential with a host this list leaves out: %(accounts)s. "
                "Add their hosts, or choose another credential for them first.",
                accounts=", ".join(f"{a.name} ({a.host})" for a in stranded)))

    def fill(self, credential: Credential) -> None:
        """Copy the form onto a credential; an empty secret field keeps the stored secret."""
        credential.name = self.name.data
        credential.username = self.username.data
        credential.description = self.description.data or ""
        credential.allowed_hosts = self.allowed_hosts.data or ""
        if self.secret.data is not None:
            credential.set_secret(self.secret.data)
