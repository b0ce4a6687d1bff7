"""The schedule-report form: recipients, how often, from when; the report's filters ride along."""
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode

from flask_babel import to_utc
from wtforms import DateTimeLocalField, HiddenField, RadioField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, ValidationError

from webapp.accounts.columns import FILTERS
from webapp.forms import Form, check_address
from webapp.models import utcnow
from webapp.schedules.runner import FREQUENCY_LABELS
from webapp.translation import lazy_gettext as _l

MAX_RECIPIENTS = 50
# The next runs are counted from the first one, a month at most each time, and datetime ends with the year 9999.
LAST_YEAR = 9999
# Query-string keys the accounts report understands (its column table's filters, and the order); anything else in the
# link is dropped.
REPORT_FILTERS = (*(report_filter.name for report_filter in FILTERS), "sort")


def split_recipients(text: str) -> list[str]:
    """The recipients as typed: one per line, and commas or semicolons outside a quoted display name ("Silva, Ana"
    <ana@example.com>) separate them too; in one pass, so any text costs time in proportion to its length."""
    parts, start, quoted = [], 0, False
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char in "\r\n":
            parts.append(text[start:index])
            start, quoted = index + 1, False  # an unclosed quote ends with its line
        elif char in ",;" and not quoted:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def report_query(args) -> str:
    """The accounts report's filters from a query string, as the short query string a schedule keeps."""
    from webapp.accounts.forms import AccountFilterForm

    form = AccountFilterForm(formdata=args)
    return urlencode(form.params())


class ScheduleForm(Form):
    """Schedule the accounts report: recipients (normalised, one per line), frequency, first sending (to UTC)."""

    recipients = TextAreaField(
        _l("Recipients"), validators=[DataRequired()], render_kw={"rows": 4},
        description=_l("One address per line (display names allowed). At most 50."))
    frequency = RadioField(_l("Frequency"), default="daily", validators=[InputRequired()],
                           choices=lambda: list(FREQUENCY_LABELS.items()))  # pairs: the radios macro unpacks them
    first_run = DateTimeLocalField(
        _l("First sending"), format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"], validators=[InputRequired()],
        description=_l("Date and time of the first e-mail; the next ones follow at the same time."))
    filters = HiddenField()

    def validate_recipients(self, field):
        parts = split_recipients(field.data or "")
        if not parts:
            raise ValidationError(_l("Enter at least one address."))
        if len(parts) > MAX_RECIPIENTS:
            raise ValidationError(_l("At most %(max)d recipients.", max=MAX_RECIPIENTS))
        addresses = []
        for part in parts:
            try:
                addresses.append(check_address(part))
            except ValidationError as error:
                raise ValidationError(_l("%(address)s: %(problem)s", address=part[:80], problem=error.args[0]))
        field.data = "\n".join(dict.fromkeys(addresses))  # one per line, duplicates dropped

    def validate_first_run(self, field):
        if field.data is None:
            return
        if field.data.year >= LAST_YEAR:
            raise ValidationError(_l("Choose a date before the year %(year)d.", year=LAST_YEAR))
        try:
            moment = to_utc(field.data)
        except OverflowError:  # east of UTC, the first day datetime holds starts in the year before it: the past
            moment = datetime.min
        # A minute of slack: the default is the next full hour, but the form may sit open a while.
        if moment < utcnow() - timedelta(minutes=1):
            raise ValidationError(_l("Choose a moment from now on."))
        field.data = moment

    def validate_filters(self, field):
        pairs = parse_qsl(field.data or "")
        if any(key not in REPORT_FILTERS for key, _value in pairs):
            raise ValidationError(_l("These report filters are not understood. Open the report and try again."))


def next_full_hour() -> datetime:
    """The default first sending: the next full hour, UTC."""
    return (utcnow() + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
