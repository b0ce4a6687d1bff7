"""The new-token form: a name that says which system uses the token."""
from wtforms.validators import DataRequired, ValidationError

from webapp.forms import Form, StrippedStringField, max_length, no_control_characters
from webapp.models import ApiToken
from webapp.translation import lazy_gettext as _l


class TokenForm(Form):
    name = StrippedStringField(
        _l("Name"), validators=[DataRequired(), no_control_characters, max_length(100)],
        description=_l("Which system uses the token, e.g. “billing service”. Deliveries it sends show this name."))

    def validate_name(self, field):
        active = ApiToken.select().where(ApiToken.name == field.data, ApiToken.revoked_at.is_null())
        if active.exists():
            raise ValidationError(_l("An active token already has this name."))
