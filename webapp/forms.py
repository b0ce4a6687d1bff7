"""Fields and validators shared by every form: yes/no radios, e-mail addresses, hosts, ports."""
import re
from datetime import date, datetime, time, timedelta

from flask import request
from flask_babel import gettext, to_utc
from flask_wtf import FlaskForm
from markupsafe import Markup
from peewee import fn
from wtforms import PasswordField, RadioField, StringField, TextAreaField
from wtforms.validators import Length, ValidationError
from wtforms.widgets import Input, PasswordInput

from webapp.mail import addresses
from webapp.mail.addresses import CONTROL_CHARS
from webapp.mail.connectors import numeric_address
from webapp.mail.idn import ascii_domain
from webapp.translation import lazy_gettext as _l

# A message body, a description or a footer may span lines; other control characters have no business there.
CONTROL_CHARS_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


class Form(FlaskForm):
    """The base of every form: a NUL in any field is refused beside it and never looked up. PostgreSQL refuses NUL in
    text, so a validator or a route looking the value up (is the name taken? who signs in?) ended in a 500. The field
    holds U+0001 in its place, another control character: a validator refusing those says so in its own words, and
    a field without one gets the general error."""

    def process(self, formdata=None, obj=None, data=None, extra_filters=None, **kwargs):
        super().process(formdata, obj, data, extra_filters, **kwargs)
        self.fields_with_nul = [field for field in self if _has_nul(field.raw_data)]
        for field in self.fields_with_nul:
            field.data = _nul_replaced(field.data)

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        for field in self.fields_with_nul:
            if not field.errors:
                field.errors.append(_l("Control characters are not allowed here."))
                valid = False
        return valid


def _has_nul(values) -> bool:
    return any(isinstance(value, str) and "\x00" in value for value in values or ())


def _nul_replaced(value):
    if isinstance(value, str):
        return value.replace("\x00", "\x01")
    if isinstance(value, list):
        return [_nul_replaced(item) for item in value]
    return value


class YesNoField(RadioField):
    """A Sim/Não (Yes/No) radio group holding a bool; rendered as a fieldset whose legend is the label."""

    def __init__(self, label=None, validators=None, default=False, **kwargs):
        super().__init__(
            label,
            validators,
            # A callable: WTForms 3.3 deprecates plain tuple choices.
            choices=lambda: [("yes", _l("Yes")), ("no", _l("No"))],
            default="yes" if default else "no",
            **kwargs,
        )

    def process_data(self, value):
        if isinstance(value, bool):
            value = "yes" if value else "no"
        super().process_data(value)

    def process_formdata(self, valuelist):
        super().process_formdata(valuelist)
        if not valuelist:
            self.data = self.default

    @property
    def checked(self) -> bool:
        return self.data == "yes"

    def pre_validate(self, form):
        if self.data not in ("yes", "no"):
            raise ValidationError(_l("Choose Yes or No."))


class StrippedStringField(StringField):
    """A text field with surrounding white space removed."""

    def process_formdata(self, valuelist):
        super().process_formdata(valuelist)
        if isinstance(self.data, str):
            self.data = self.data.strip()


def max_length(limit: int) -> Length:
    """Length(max=limit) with our own message (WTForms' Portuguese one gets the plural wrong)."""
    return Length(max=limit, message=_l("Use at most %(max)d characters."))


def no_control_characters(form, field):
    """Refuse CR, LF and other control characters: they could start a new header or command."""
    if field.data and CONTROL_CHARS.search(str(field.data)):
        raise ValidationError(_l("Line breaks and control characters are not allowed here."))


def check_address(value: str, allow_display_name: bool = True) -> str:
    """Return a normalised address ('Name <local@domain>' kept, UTF-8 allowed) or raise ValidationError."""
    try:
        return addresses.check_address(value, allow_display_name)
    except addresses.AddressError as error:
        raise ValidationError(gettext(error.message, **error.params)) from None


def email_address(form, field):
    """Validator: a single valid address, display name allowed."""
    if field.data:
        field.data = check_address(field.data)


def check_host(value: str) -> str:
    """Return a host name, IPv4 or IPv6 literal (brackets removed), or raise ValidationError."""
    host = value.strip()
    try:
        # Stored as the address a resolver or proxy would read (2130706433 is 127.0.0.1), as the policy checks it.
        address = numeric_address(host)
    except ValueError:
        raise ValidationError(_l("This is neither a host name nor an IP address written the usual way: write an "
                                 "IPv4 address as four numbers from 0 to 255, such as 192.0.2.10.")) from None
    if address is not None:
        return address
    invalid = _l("Enter a host name (smtp.example.com), an IPv4 address or an IPv6 address, without spaces.")
    if not host or CONTROL_CHARS.search(host) or " " in host:
        raise ValidationError(invalid)
    try:
        # As the connection will carry it (IDNA 2008), so that a name accepted here is one it can reach.
        ascii_host = ascii_domain(host.rstrip("."))
    except UnicodeError:
        raise ValidationError(invalid)
    if len(ascii_host) > 253 or not all(HOST_LABEL.match(label) for label in ascii_host.split(".")):
        raise ValidationError(invalid)
    return host.rstrip(".").lower()


def host_name(form, field):
    """Validator: a host name or IP literal."""
    if field.data:
        field.data = check_host(field.data)


class PortField(StringField):
    """An optional TCP port, 1-65535, with its own message for text that is not a number."""

    def process_formdata(self, valuelist):
        self.raw = (valuelist[0] if valuelist else "").strip()
        self.data = None
        if self.raw.isdigit() and len(self.raw) <= 5:
            self.data = int(self.raw)

    def _value(self):
        if getattr(self, "raw", None) is not None:
            return self.raw
        return "" if self.data is None else str(self.data)

    def pre_validate(self, form):
        if getattr(self, "raw", "") and (self.data is None or not 1 <= self.data <= 65535):
            raise ValidationError(_l("Enter a port number from 1 to 65535."))


class WriteOnlyInput(PasswordInput):
    """A password input without any value attribute: a stored or typed secret never travels back to the page."""

    def __call__(self, field, **kwargs) -> Markup:
        kwargs["value"] = False  # html_params drops False attributes; PasswordInput would write value=""
        return Input.__call__(self, field, **kwargs)


class SecretField(PasswordField):
    """A secret typed in full or left empty to keep the stored one; never pre-filled, never echoed."""

    widget = WriteOnlyInput()

    def __init__(self, label=None, validators=None, **kwargs):
        render_kw = {"autocomplete": "new-password", **(kwargs.pop("render_kw", None) or {})}
        super().__init__(label, validators, render_kw=render_kw, **kwargs)

    def process_data(self, value):
        self.data = None  # nothing from the stored object, ever

    def process_formdata(self, valuelist):
        # Kept exactly as typed (no stripping): spaces can be part of a password.
        self.data = valuelist[0] if valuelist and valuelist[0] != "" else None


class SecretTextField(TextAreaField):
    """A secret pasted as text (a key file's contents): like SecretField, never pre-filled and never echoed."""

    def process_data(self, value):
        self.data = None

    def process_formdata(self, valuelist):
        self.data = valuelist[0] if valuelist and valuelist[0].strip() else None

    def _value(self) -> str:
        return ""


def secret_characters(form, field):
    """Refuse control characters in a secret: a NUL would split an AUTH PLAIN string, CR/LF a command."""
    if field.data and CONTROL_CHARS.search(field.data):
        raise ValidationError(_l("Line breaks and control characters are not allowed in a secret."))


def name_taken(model, name: str, exclude=None) -> bool:
    """Whether another row of model has this name, ignoring case (Unicode-aware, unlike SQLite's LOWER)."""
    query = model.select(model.id).where(fn.casefold(model.name) == name.casefold())
    if exclude is not None:
        query = query.where(model.id != exclude.id)
    return query.exists()


class FilterForm(Form):
    """A list's search filters, read from the query string (a GET form: no CSRF token)."""

    class Meta:
        csrf = False

    @classmethod
    def from_query(cls):
        """The filters of this request, validated: a wrong value is reported beside its field and ignored."""
        form = cls(formdata=request.args)
        form.validate()
        return form

    def args(self, **overrides) -> dict:
        """The filters as typed (empty ones left out), for links that keep them (pages, CSV, refreshes)."""
        values = {f.name: f.raw_data[0] for f in self if f.raw_data and f.raw_data[0]}
        values.update(overrides)
        return {key: value for key, value in values.items() if value not in ("", None)}


def days_utc(first: date | None, last: date | None) -> tuple[datetime | None, datetime | None]:
    """The days first..last (both included) in the display time zone as [since, until) in the naive UTC the
    database stores; None leaves that side open, as does a day at the calendar's end (9999-12-31, or 0001-01-01
    east of UTC), where datetime could not go further."""
    since = _day_start_utc(first) if first else None
    until = _day_start_utc(last + timedelta(days=1)) if last and last < date.max else None
    return since, until


def _day_start_utc(day: date) -> datetime | None:
    try:
        return to_utc(datetime.combine(day, time.min))
    except OverflowError:
        return None


def within_days(query, column, first: date | None, last: date | None):
    """Rows whose column falls on the days first..last, both included (either may be None)."""
    since, until = days_utc(first, last)
    if since:
        query = query.where(column >= since)
    if until:
        query = query.where(column < until)
    return query
