"""The settings form: the system footer text."""
from wtforms import TextAreaField
from wtforms.validators import ValidationError

from webapp.forms import CONTROL_CHARS_BUT_LINES, Form
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
