"""The account form's "Sending limits": at most so many connections open to the relay at once and at most so many
messages started in any minute, all workers together (webapp.outbox.queue counts them at each claim). Empty keeps the
configured default, OUTBOX_MAX_CONNECTIONS or OUTBOX_RATE_PER_MINUTE."""
from flask import current_app
from flask_babel import format_decimal, gettext as _, ngettext
from wtforms import StringField
from wtforms.validators import ValidationError

from webapp.translation import lazy_gettext as _l

MOST_CONNECTIONS = 100
MOST_PER_MINUTE = 100_000


class LimitField(StringField):
    """An optional whole number from `least` to `most`; empty (None) means the configured default."""

    def __init__(self, label, least: int, most: int, **kwargs):
        super().__init__(label, **kwargs)
        self.least, self.most = least, most

    def process_formdata(self, valuelist):
        self.raw = (valuelist[0] if valuelist else "").strip()
        digits = self.raw.isascii() and self.raw.isdigit() and len(self.raw) <= 9
        self.data = int(self.raw) if digits else None

    def _value(self):
        if getattr(self, "raw", None) is not None:
            return self.raw
        return "" if self.data is None else str(self.data)

    def fill(self, value: int | None) -> None:
        """Show value (None: empty) as if typed: the provider preset's "Apply"."""
        self.data, self.raw = value, "" if value is None else str(value)

    def pre_validate(self, form):
        if getattr(self, "raw", "") and (self.data is None or not self.least <= self.data <= self.most):
            raise ValidationError(_("Enter a whole number from %(least)s to %(most)s, or leave it empty for the "
                                    "default.", least=format_decimal(self.least), most=format_decimal(self.most)))


class SendingLimits:
    """The two fields and what the account form does with them (a mixin of AccountForm)."""

    max_connections = LimitField(_l("Max simultaneous connections"), 1, MOST_CONNECTIONS)
    rate_per_minute = LimitField(_l("Messages per minute"), 0, MOST_PER_MINUTE)

    def describe_limits(self) -> None:
        """Each field's help and placeholder name the default it keeps when left empty."""
        connections, per_minute = limit_defaults()
        self.max_connections.description = _(
            "Connections open to this server at once, all workers together, kept ones included. Empty: the "
            "default, %(default)s.", default=format_decimal(connections))
        default = per_minute_text(per_minute) if per_minute > 0 else _("no limit")
        self.rate_per_minute.description = _(
            "Messages started in any 60 seconds, all workers together; 0: no limit. Empty: the default, "
            "%(default)s.", default=default)
        self.max_connections.render_kw = {"placeholder": str(connections)}
        self.rate_per_minute.render_kw = {"placeholder": str(max(per_minute, 0))}

    def fill_limits(self, preset) -> None:
        """The provider's known limits (empty when it documents none)."""
        self.max_connections.fill(preset.max_connections)
        self.rate_per_minute.fill(preset.rate_per_minute)

    def apply_limits(self, account) -> None:
        account.max_connections = self.max_connections.data
        account.rate_per_minute = self.rate_per_minute.data


def limit_defaults() -> tuple[int, int]:
    """(connections, messages per minute) of an account whose limits are empty: the app's settings."""
    config = current_app.config
    return int(config["OUTBOX_MAX_CONNECTIONS"]), int(config["OUTBOX_RATE_PER_MINUTE"])


def limits_text(account) -> str:
    """An account's own limits in a few words for the report ("" when it keeps the defaults)."""
    parts = []
    if account.max_connections is not None:
        parts.append(ngettext("%(count)s connection", "%(count)s connections", account.max_connections,
                              count=format_decimal(account.max_connections)))
    if account.rate_per_minute is not None:
        parts.append(per_minute_text(account.rate_per_minute) if account.rate_per_minute else _("no rate limit"))
    return ", ".join(parts)


def per_minute_text(count: int) -> str:
    return ngettext("%(count)s message a minute", "%(count)s messages a minute", count, count=format_decimal(count))
