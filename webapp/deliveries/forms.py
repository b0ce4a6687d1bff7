"""The deliveries filter form (a GET form: no CSRF token; bad values are reported and ignored)."""
from wtforms import DateField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional, ValidationError

from webapp.db import search_term
from webapp.deliveries.listing import Criteria
from webapp.forms import FilterForm, StrippedStringField, days_utc, max_length
from webapp.models import SmtpAccount, row_id
from webapp.translation import lazy_gettext as _l

STATUS_LABELS = {
    "queued": _l("Queued"),
    "sending": _l("Sending"),
    "retrying": _l("Retrying"),
    "sent": _l("Sent"),
    "failed": _l("Failed"),
}
# Still on its way: while any notification is in one of these, the counts refresh themselves.
ACTIVE_STATUSES = ("queued", "sending", "retrying")


def _optional_id(value):
    """An account id from the query string; anything else (a number no row can have included) is None."""
    return row_id(value) if value not in (None, "") else None


class DeliveryFilterForm(FilterForm):
    status = SelectField(_l("Status"), validators=[Optional()],
                         choices=[SelectChoice("", _l("Any"))] + [SelectChoice(code, label)
                                                                  for code, label in STATUS_LABELS.items()])
    account = SelectField(_l("Account"), coerce=_optional_id, validators=[Optional()], validate_choice=False)
    recipient = StrippedStringField(
        _l("Recipient"), validators=[Optional(), max_length(320)],
        description=_l("Matches a name or an address from the start of any of its words: ana, silva, "
                       "ana.silva@example.com, example.com."))
    date_from = DateField(_l("From"), validators=[Optional()])
    date_to = DateField(_l("To"), validators=[Optional()])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Any number is accepted (validate_choice=False): an account deleted since matches nothing.
        self.account.choices = [SelectChoice("", _l("Any"))] + [
            SelectChoice(account.id, account.name)
            for account in SmtpAccount.select(SmtpAccount.id, SmtpAccount.name).order_by(SmtpAccount.name)]

    def validate_account(self, field):
        if field.raw_data and field.raw_data[0] and field.data is None:
            raise ValidationError(_l("Choose an account from the list."))

    @property
    def active(self) -> bool:
        """Whether any filter narrows the list."""
        return bool(self.args())

    def criteria(self) -> Criteria:
        """What the list is narrowed to: every valid filter (a wrong one is reported beside its field and ignored)."""
        valid = {f.name: f.data for f in self if not f.errors and f.data not in (None, "")}
        since, until = days_utc(valid.get("date_from"), valid.get("date_to"))
        return Criteria(status=valid.get("status"), account=valid.get("account"), since=since, until=until,
                        term=search_term(valid.get("recipient", "")))

