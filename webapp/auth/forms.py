from flask import current_app
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Regexp, ValidationError

from webapp.auth.passwords import check_setup_code
from webapp.forms import Form, max_length
from webapp.translation import lazy_gettext as _l

USERNAME_RULES = [
    DataRequired(),
    max_length(64),
    Regexp(r"^[A-Za-z0-9._@-]+$", message=_l("Use letters, digits and . _ @ - only.")),
]
PASSWORD_RULES = [DataRequired(), Length(min=10, max=1024, message=_l("Use at least 10 characters."))]


class LoginForm(Form):
    username = StringField(_l("Username"), validators=[DataRequired(), max_length(64)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), max_length(1024)])


class SetupForm(Form):
    code = StringField(_l("Setup code"), validators=[DataRequired(), max_length(64)],
                       description=_l("Printed in the console where smtpdesk was started."))
    username = StringField(_l("Administrator username"), validators=USERNAME_RULES)
    password = PasswordField(_l("Password"), validators=PASSWORD_RULES)
    confirm = PasswordField(
        _l("Repeat the password"),
        validators=[DataRequired(), EqualTo("password", message=_l("The passwords do not match."))],
    )

    def validate_code(self, field):
        """A wrong code is reported with the first submit, beside any other field's error, not only once the rest
        is valid: otherwise the admin fixes every other field first and learns only then that the code was wrong."""
        if not check_setup_code(current_app.instance_path, field.data or ""):
            raise ValidationError(_l("This is not the code printed in the console. Copy it again."))
