"""The deliveries filter form (a GET form: no CSRF token; bad values are reported and ignored)."""
from datetime import date, datetime, time, timedelta
from functools import lru_cache

from flask_babel import lazy_gettext as _l, to_utc
from markupsafe import Markup, escape
from wtforms import DateField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.fields.core import Label
from wtforms.validators import Optional, ValidationError
from wtforms.widgets import DateInput, Select, TextInput
from wtforms.widgets.core import clean_key

from webapp.db import database, search_term
from webapp.deliveries.listing import Criteria
from webapp.forms import FilterForm, StrippedStringField, max_length
from webapp.fragments import Plain

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


# --- Rendering: the filter form is on every page, and WTForms' widgets cost a third of the page's time ------------


def _attributes(**attributes) -> str:
    """WTForms' html_params() without a Markup.format() per attribute (most of what a widget costs)."""
    return " ".join(key if value is True else f'{key}="{escape(value)}"'
                    for key, value in ((clean_key(k), v) for k, v in sorted(attributes.items())) if value is not False)


class _QuickLabel(Label):
    def __call__(self, text=None, **kwargs):
        kwargs.setdefault("for", self.field_id)
        return Markup(f"<label {_attributes(**kwargs)}>{escape(text or self.text)}</label>")


class _QuickTextInput(TextInput):
    html_params = staticmethod(_attributes)


class _QuickDateInput(DateInput):
    html_params = staticmethod(_attributes)


class _CachedSelect(Select):
    """A select whose options are rendered once per list of (value, label) pairs, then reused with the chosen one
    marked (200 accounts through WTForms' per-option rendering took 5 ms a page). options(field) returns the pairs,
    "Any" first."""

    def __init__(self, options):
        super().__init__()
        self.options = options

    def __call__(self, field, **kwargs):
        kwargs.setdefault("id", field.id)
        chosen = f'<option value="{escape("" if field.data is None else field.data)}">'
        options = _options_html(self.options(field)).replace(chosen, chosen.replace("<option ", "<option selected "), 1)
        return Markup(f"<select {_attributes(name=field.name, **kwargs)}>{options}</select>")


@lru_cache(maxsize=32)
def _options_html(options: tuple) -> str:
    return "".join(f'<option value="{escape(value)}">{escape(label)}</option>' for value, label in options)


def _status_options(field) -> tuple:
    return tuple((choice.value, str(choice.label)) for choice in field.choices)


def _account_options(field) -> tuple:
    # Read when the form is shown (the rows fragment, filtering, paging or refreshing, does without), once.
    if "listed_accounts" not in field.__dict__:
        field.listed_accounts = (
            ("", str(_l("Any"))),
            *database.execute_sql('SELECT "id", "name" FROM "smtp_account" ORDER BY "name"').fetchall())
    return field.listed_accounts


class DeliveryFilterForm(FilterForm):
    status = SelectField(_l("Status"), validators=[Optional()], widget=_CachedSelect(_status_options),
                         choices=[SelectChoice("", _l("Any"))] + [SelectChoice(code, label)
                                                                  for code, label in STATUS_LABELS.items()])
    account = SelectField(_l("Account"), coerce=_optional_int, validators=[Optional()], validate_choice=False,
                          widget=_CachedSelect(_account_options))
    recipient = StrippedStringField(
        _l("Recipient"), validators=[Optional(), max_length(320)], widget=_QuickTextInput(),
        description=_l("Matches a name or an address from the start of any of its words: ana, silva, "
                       "ana.silva@example.com, example.com."))
    date_from = DateField(_l("From"), validators=[Optional()], widget=_QuickDateInput())
    date_to = DateField(_l("To"), validators=[Optional()], widget=_QuickDateInput())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for f in self:
            f.label = _QuickLabel(f.label.field_id, f.label.text)
        # Any number is accepted (validate_choice=False; an unknown one matches nothing): the widget reads them.
        self.account.choices = []

    def validate_account(self, field):
        if field.raw_data and field.raw_data[0] and field.data is None:
            raise ValidationError(_l("Choose an account from the list."))

    def shown(self) -> Plain:
        """What was typed and its errors, and the accounts offered."""
        return Plain((super().shown(), _account_options(self.account)))

    @property
    def active(self) -> bool:
        """Whether any filter narrows the list."""
        return bool(self.args())

    def criteria(self) -> Criteria:
        """What the list is narrowed to: every valid filter (a wrong one is reported beside its field and ignored)."""
        valid = {f.name: f.data for f in self if not f.errors and f.data not in (None, "")}
        since, until = valid.get("date_from"), valid.get("date_to")
        return Criteria(
            status=valid.get("status"), account=valid.get("account"),
            since=_day_start_utc(since) if since else None,
            until=_day_start_utc(until + timedelta(days=1)) if until else None,  # the last day included
            term=search_term(valid.get("recipient", "")))


def _day_start_utc(day: date) -> datetime:
    """The start of a day in the display time zone, as the naive UTC datetime the database stores."""
    return to_utc(datetime.combine(day, time.min))
