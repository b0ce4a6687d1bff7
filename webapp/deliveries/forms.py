"""The deliveries filter form (a GET form: no CSRF token; bad values are reported and ignored)."""
import json

from flask_babel import lazy_gettext as _l
from wtforms import DateField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional, ValidationError

from webapp.db import contains
from webapp.forms import FilterForm, StrippedStringField, max_length, within_days
from webapp.models import Notification, SmtpAccount

STATUS_LABELS = {
    "queued": _l("Queued"),
    "sending": _l("Sending"),
    "retrying": _l("Retrying"),
    "sent": _l("Sent"),
    "failed": _l("Failed"),
}
# Still on its way: while any notification is in one of these, the counts refresh themselves.
ACTIVE_STATUSES = ("queued", "sending", "retrying")


def _optional_int(value):
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


class DeliveryFilterForm(FilterForm):
    status = SelectField(_l("Status"), validators=[Optional()],
                         choices=[SelectChoice("", _l("Any"))] + [SelectChoice(code, label)
                                                                  for code, label in STATUS_LABELS.items()])
    account = SelectField(_l("Account"), coerce=_optional_int, validators=[Optional()], validate_choice=False)
    recipient = StrippedStringField(_l("Recipient"), validators=[Optional(), max_length(320)])
    date_from = DateField(_l("From"), validators=[Optional()])
    date_to = DateField(_l("To"), validators=[Optional()])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.account.choices = [SelectChoice("", _l("Any"))] + [
            SelectChoice(a.id, a.name) for a in SmtpAccount.select(SmtpAccount.id, SmtpAccount.name)
            .order_by(SmtpAccount.name)
        ]

    def validate_account(self, field):
        if field.raw_data and field.raw_data[0] and field.data is None:
            raise ValidationError(_l("Choose an account from the list."))

    @property
    def active(self) -> bool:
        """Whether any filter narrows the list."""
        return bool(self.args())

    def apply(self, query):
        """Narrow a Notification query by every valid filter."""
        if self.status.data and not self.status.errors:
            query = query.where(Notification.status == self.status.data)
        if self.account.data is not None and not self.account.errors:
            query = query.where(Notification.account == self.account.data)
        if self.recipient.data and not self.recipient.errors:
            term = self.recipient.data
            # The lists are stored as JSON: a non-ASCII address may be there as \\u escapes.
            escaped = json.dumps(term)[1:-1]
            matches = None
            for column in (Notification.to_addrs, Notification.cc_addrs, Notification.bcc_addrs):
                for text in {term, escaped}:
                    match = contains(column, text)
                    matches = match if matches is None else (matches | match)
            query = query.where(matches)
        return within_days(query, Notification.created_at, None if self.date_from.errors else self.date_from.data,
                           None if self.date_to.errors else self.date_to.data)

