"""The settings forms: the system footer text, and how long deliveries and the audit log are kept."""
from wtforms import StringField, TextAreaField
from wtforms.validators import ValidationError

from webapp.forms import CONTROL_CHARS_BUT_LINES, Form
from webapp.outbox.retention import MAX_DAYS, MIN_DAYS, valid_days
from webapp.translation import lazy_gettext as _l

FOOTER_MAX_BYTES = 10 * 1024


class SettingsForm(Form):
    footer_text = TextAreaField(
        _l("Footer text"), render_kw={"rows": 6},
        description=_l("Plain text, at most 10 KB. Appended to the text and HTML parts of every notification sent "
                       "through an account with “Enable footer” = Yes."))

    def validate_footer_text(self, field):
        # One line ending everywhere (the SMTP policy writes CRLF itself); no trailing blank lines.
        text = (field.data or "").replace("\r\n", "\n").replace("\r", "\n").rstrip()
        if len(text.encode()) > FOOTER_MAX_BYTES:
            raise ValidationError(_l("The footer is too long: at most 10 KB."))
        if CONTROL_CHARS_BUT_LINES.search(text):
            raise ValidationError(_l("Control characters are not allowed in the footer."))
        field.data = text


class DaysField(StringField):
    """A retention period: a whole number of days from MIN_DAYS to MAX_DAYS, with one message for anything else."""

    def process_formdata(self, valuelist):
        self.raw = (valuelist[0] if valuelist else "").strip()
        self.data = int(self.raw) if self.raw.isascii() and self.raw.isdigit() and len(self.raw) <= 5 else None

    def _value(self):
        if getattr(self, "raw", None) is not None:
            return self.raw
        return "" if self.data is None else str(self.data)

    def pre_validate(self, form):
        if not valid_days(self.data):
            raise ValidationError(_l("Enter a whole number of days from %(least)d to %(most)d.", least=MIN_DAYS,
                                     most=MAX_DAYS))


class RetentionForm(Form):
    """How long rows are kept; each field is named after its Setting key (webapp.outbox.retention)."""

    retention_delivery_days = DaysField(
        _l("Keep deliveries for (days)"),
        description=_l("Sent and failed notifications are deleted, with their delivery attempts, this many days after "
                       "their last change. Queued, sending and retrying notifications are never deleted, however "
                       "old."))
    retention_audit_days = DaysField(
        _l("Keep audit log for (days)"),
        description=_l("Audit log entries older than this are deleted, sign-ins and changes alike."))
