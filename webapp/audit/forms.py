"""The audit log's filter form (a GET form: no CSRF token, bad values are reported and ignored)."""

from wtforms import DateField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional

from webapp.audit.labels import ACTION_LABELS, OBJECT_TYPE_LABELS
from webapp.db import contains
from webapp.forms import FilterForm, StrippedStringField, max_length, within_days
from webapp.models import AuditEntry
from webapp.translation import lazy_gettext as _l


def _choices(labels: dict) -> list[SelectChoice]:
    return [SelectChoice("", _l("Any"))] + [SelectChoice(code, label) for code, label in labels.items()]


class AuditFilterForm(FilterForm):
    who = StrippedStringField(_l("Who"), validators=[Optional(), max_length(64)])
    action = SelectField(_l("Action"), choices=_choices(ACTION_LABELS), validators=[Optional()])
    object_type = SelectField(_l("Object type"), choices=_choices(OBJECT_TYPE_LABELS), validators=[Optional()])
    name = StrippedStringField(_l("Object name"), validators=[Optional(), max_length(255)])
    date_from = DateField(_l("From"), validators=[Optional()])
    date_to = DateField(_l("To"), validators=[Optional()])

    def apply(self, query):
        """Narrow an AuditEntry query by every valid filter; text filters match anywhere, ignoring case."""
        if self.who.data and not self.who.errors:
            query = query.where(contains(AuditEntry.actor_name, self.who.data))
        if self.action.data and not self.action.errors:
            query = query.where(AuditEntry.action == self.action.data)
        if self.object_type.data and not self.object_type.errors:
            query = query.where(AuditEntry.object_type == self.object_type.data)
        if self.name.data and not self.name.errors:
            query = query.where(contains(AuditEntry.object_name, self.name.data))
        return within_days(query, AuditEntry.at, None if self.date_from.errors else self.date_from.data,
                           None if self.date_to.errors else self.date_to.data)



