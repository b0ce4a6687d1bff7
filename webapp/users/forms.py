"""The add-user and edit-user forms, with the guards that keep an active administrator."""
from flask_login import current_user
from wtforms import PasswordField, RadioField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, Optional, ValidationError

from webapp.auth.forms import PASSWORD_RULES, USERNAME_RULES
from webapp.forms import Form, StrippedStringField, YesNoField
from webapp.models import User
from webapp.translation import lazy_gettext as _l
from webapp.web import ROLE_LABELS

# One line under each role radio, so the admin knows what they grant.
ROLE_DESCRIPTIONS = {
    "admin": _l("Everything: accounts, credentials, connectors, users and the audit log."),
    "operator": _l("Views the lists, tests accounts and sends messages; changes nothing."),
    "auditor": _l("Views the lists and the audit log; changes nothing."),
}

LAST_ADMIN = _l("This is the last active administrator. Make another user an active administrator first.")
NOT_YOURSELF_ROLE = _l("You cannot take away your own administrator role. Ask another administrator.")
NOT_YOURSELF_ACTIVE = _l("You cannot deactivate your own account. Ask another administrator.")


def _lower(value):
    return value.lower() if isinstance(value, str) else value


def _role_field():
    return RadioField(_l("Role"), choices=[SelectChoice(role, ROLE_LABELS[role]) for role in User.ROLES],
                      default="operator", validators=[InputRequired()])


class UserCreateForm(Form):
    username = StrippedStringField(_l("Username"), validators=USERNAME_RULES, filters=[_lower],
                                   description=_l("Letters, digits and . _ @ - (stored in lower case)."))
    role = _role_field()
    password = PasswordField(_l("Password"), validators=PASSWORD_RULES,
                             description=_l("At least 10 characters."))
    confirm = PasswordField(
        _l("Repeat the password"),
        validators=[DataRequired(), EqualTo("password", message=_l("The passwords do not match."))],
    )

    def validate_username(self, field):
        if User.select().where(User.username == field.data).exists():
            raise ValidationError(_l("This username is taken. Choose another one."))


class UserEditForm(Form):
    role = _role_field()
    active = YesNoField(_l("Active"), default=True,
                        description=_l("An inactive user cannot sign in; their open sessions end at once and "
                                       "their API tokens stop working."))
    password = PasswordField(
        _l("New password"),
        validators=[Optional(strip_whitespace=False),
                    Length(min=10, max=1024, message=_l("Use at least 10 characters."))],
        description=_l("Leave empty to keep the current password."),
    )
    confirm = PasswordField(
        _l("Repeat the new password"),
        validators=[EqualTo("password", message=_l("The passwords do not match."))],
    )

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, obj=user, **kwargs)
        self.user = user

    def validate_role(self, field):
        if self.user.role != "admin" or field.data == "admin":
            return
        if self.user.id == current_user.id:
            raise ValidationError(NOT_YOURSELF_ROLE)
        if self.user.active and not self.user.other_active_admin_exists():
            raise ValidationError(LAST_ADMIN)

    def validate_active(self, field):
        if field.checked or not self.user.active:
            return
        if self.user.id == current_user.id:
            raise ValidationError(NOT_YOURSELF_ACTIVE)
        if self.user.role == "admin" and not self.user.other_active_admin_exists():
            raise ValidationError(LAST_ADMIN)
