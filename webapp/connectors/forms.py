"""The connector form and the Test connector form."""
from wtforms import SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, StopValidation, ValidationError

from webapp.forms import (
    Form,
    PortField,
    SecretField,
    StrippedStringField,
    YesNoField,
    host_name,
    max_length,
    name_taken,
    no_control_characters,
    secret_characters,
)
from webapp.models import Connector
from webapp.translation import lazy_gettext as _l

KIND_CHOICES = [SelectChoice(kind, label) for kind, label in Connector.KIND_LABELS.items()]


def port_required(form, field):
    """PortField explains a wrong number itself; this only asks for a missing one."""
    if field.data is None and not getattr(field, "raw", ""):
        raise StopValidation(_l("This field is required."))


class ConnectorForm(Form):
    name = StrippedStringField(_l("Name"), validators=[DataRequired(), max_length(100), no_control_characters])
    kind = SelectField(_l("Type"), choices=KIND_CHOICES, default="socks5")
    host = StrippedStringField(_l("Host"), validators=[DataRequired(), max_length(255), host_name],
                               description=_l("The proxy's host name or IP address."))
    port = PortField(_l("Port"), validators=[port_required])
    username = StrippedStringField(
        _l("Username"), validators=[max_length(255), no_control_characters],
        description=_l("Optional. For SOCKS4 this is the user id."))
    password = SecretField(
        _l("Password"), validators=[max_length(255), secret_characters],
        description=_l("Optional. Stored encrypted and never shown again. SOCKS4 has no password."))
    remove_password = YesNoField(_l("Remove the stored password"), default=False,
                                 description=_l("Yes goes back to connecting without a password."))
    remote_dns = YesNoField(_l("Resolve names at the proxy"), default=True,
                            description=_l("Yes: the proxy looks up the SMTP host's name (SOCKS5 only)."))
    is_default = YesNoField(_l("System default connector"), default=False,
                            description=_l("Accounts that use a connector without choosing one go through "
                                           "the system default."))

    def __init__(self, *args, connector: Connector | None = None, **kwargs):
        super().__init__(*args, obj=connector, **kwargs)
        self.connector = connector
        # Read once: fill() may change the connector before a failed save re-renders this form.
        self.has_stored_password = connector is not None and connector.has_secret
        if self.has_stored_password:
            self.password.description = _l("Password set — enter a new one to change it.")

    def validate_name(self, field):
        if name_taken(Connector, field.data, exclude=self.connector):
            raise ValidationError(_l("A connector with this name already exists."))

    def validate_password(self, field):
        keeps_stored = self.has_stored_password and not self.remove_password.checked
        if self.kind.data == "socks4" and field.data is not None:
            raise ValidationError(_l("SOCKS4 carries only a user id (the username), not a password. "
                                     "Leave the password empty, or choose SOCKS5 or HTTP CONNECT."))
        if self.kind.data == "socks4" and keeps_stored:
            raise ValidationError(_l("SOCKS4 carries only a user id (the username), not a password. "
                                     "Set “Remove the stored password” to Yes, or choose SOCKS5 or HTTP CONNECT."))
        if field.data is not None and self.remove_password.checked:
            raise ValidationError(_l("Either enter a new password or remove the stored one, not both."))
        if keeps_stored and field.data is None and self.endpoint_changed():
            # The password was given for that proxy: a new type, host or port is another party that must not
            # get it unasked (an HTTP proxy sees it in every CONNECT request).
            raise ValidationError(_l("The stored password goes only to the proxy it was saved for, and the type, "
                                     "host or port changed: enter the password again, or remove it."))
        if (field.data is not None or keeps_stored) and not self.username.data:
            raise ValidationError(_l("A password needs a username: enter the username, or remove the password."))

    def endpoint_changed(self) -> bool:
        """Whether the form points the saved connector at another proxy: another kind, host or port."""
        saved = self.connector
        return saved is not None and (self.kind.data, (self.host.data or "").lower(), self.port.data) != (
            saved.kind, saved.host.lower(), saved.port)

    def validate_is_default(self, field):
        connector = self.connector
        if field.checked or connector is None or not connector.is_default:
            return
        relying = Connector.relying_on_default()
        if relying:
            raise ValidationError(_l(
                "These accounts go through the system default connector: %(accounts)s. "
                "Make another connector the default, or choose a connector for them, first.",
                accounts=", ".join(a.name for a in relying)))

    def fill(self, connector: Connector) -> None:
        """Copy the form onto a connector (the default flag excepted: make_default() sets it)."""
        connector.name = self.name.data
        connector.kind = self.kind.data
        connector.host = self.host.data
        connector.port = self.port.data
        connector.username = self.username.data or ""
        connector.remote_dns = self.remote_dns.checked
        if self.password.data is not None:
            connector.set_secret(self.password.data)
        elif self.remove_password.checked:
            connector.set_secret(None)


class ConnectionTestForm(Form):
    """Test connector: the destination to reach through the hop."""

    host = StrippedStringField(_l("Host"), validators=[DataRequired(), max_length(255), host_name],
                               description=_l("The server to reach through the connector, such as an SMTP host."))
    port = PortField(_l("Port"), validators=[port_required])
