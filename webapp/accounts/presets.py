"""Provider presets for the account form: the server settings of the relays people use, as one table of data."""
from dataclasses import dataclass

from babel.lists import format_list
from flask_babel import get_locale, gettext as _

from webapp.credentials.forms import KIND_LABELS
from webapp.translation import LazyText, lazy_gettext as _l


@dataclass(frozen=True)
class Preset:
    """One provider's server settings and the one line of help that goes with them."""

    key: str
    label: str
    host: str = ""  # empty: the preset fills nothing (Custom)
    port: int | None = None
    security: str | None = "tls"  # the form's secure_type: "ssl" implicit TLS, "tls" STARTTLS; None: no TLS
    use_auth: bool = True
    credential_kinds: tuple[str, ...] = ("password",)
    help: str = ""
    group: str | None = None  # the <optgroup> it is listed under
    other_hosts: tuple[str, ...] = ()  # hosts of the same provider that an account may hold instead of `host`
    # The provider's documented limits per account (the form's "Sending limits"; None: none known, the default),
    # and what its help says of them.
    max_connections: int | None = None
    rate_per_minute: int | None = None
    limits_help: str = ""

    @property
    def fills(self) -> bool:
        return bool(self.host)

    def help_line(self) -> str:
        """The provider's help and the credential type it expects, in the reader's language."""
        if not self.fills:
            return ""
        kinds = [str(KIND_LABELS[kind]) for kind in self.credential_kinds]
        expected = _("Expected credential: %(kinds)s", kinds=format_list(kinds, style="or", locale=get_locale()))
        return " ".join(text for text in map(str, (self.help, self.limits_help, expected)) if text)

    def limit_data(self) -> dict:
        """The limits its <option> carries for static/js/presets.js ("": none known, the field is emptied)."""
        return {"data-max-connections": "" if self.max_connections is None else str(self.max_connections),
                "data-rate-per-minute": "" if self.rate_per_minute is None else str(self.rate_per_minute)}

    def matches(self, host: str | None) -> bool:
        """Whether an account's host is this provider's."""
        host = (host or "").strip().lower().rstrip(".")
        return self.fills and host in (self.host, *self.other_hosts)


# The AWS Regions where SES has an SMTP endpoint (email-smtp.<region>.amazonaws.com), as the AWS console names them.
SES_REGIONS = (
    ("us-east-1", _l("US East (N. Virginia)")),
    ("us-east-2", _l("US East (Ohio)")),
    ("us-west-1", _l("US West (N. California)")),
    ("us-west-2", _l("US West (Oregon)")),
    ("af-south-1", _l("Africa (Cape Town)")),
    ("ap-south-1", _l("Asia Pacific (Mumbai)")),
    ("ap-south-2", _l("Asia Pacific (Hyderabad)")),
    ("ap-southeast-3", _l("Asia Pacific (Jakarta)")),
    ("ap-northeast-3", _l("Asia Pacific (Osaka)")),
    ("ap-northeast-2", _l("Asia Pacific (Seoul)")),
    ("ap-southeast-1", _l("Asia Pacific (Singapore)")),
    ("ap-southeast-2", _l("Asia Pacific (Sydney)")),
    ("ap-northeast-1", _l("Asia Pacific (Tokyo)")),
    ("ca-central-1", _l("Canada (Central)")),
    ("eu-central-1", _l("Europe (Frankfurt)")),
    ("eu-west-1", _l("Europe (Ireland)")),
    ("eu-west-2", _l("Europe (London)")),
    ("eu-south-1", _l("Europe (Milan)")),
    ("eu-west-3", _l("Europe (Paris)")),
    ("eu-north-1", _l("Europe (Stockholm)")),
    ("me-south-1", _l("Middle East (Bahrain)")),
    ("sa-east-1", _l("South America (São Paulo)")),
    ("us-gov-west-1", _l("AWS GovCloud (US-West)")),
)

CUSTOM = Preset("custom", _l("Custom"))
_SES_HELP = _l("Use the SMTP credentials created in the SES console for this Region (they differ per Region), not "
               "IAM access keys.")
_MAILGUN_HELP = _l("Use the SMTP credentials from the sending domain's settings in Mailgun, not the API key.")
# Zoho: organisation mail on a paid plan, and accounts kept in another data centre, use their own host.
_ZOHO_HOSTS = ("smtp.zoho.eu", "smtp.zoho.in", "smtppro.zoho.com", "smtppro.zoho.eu", "smtppro.zoho.in")

PRESETS = (
    CUSTOM,
    Preset("microsoft365", "Microsoft 365", "smtp.office365.com", 587,
           credential_kinds=("oauth_client", "oauth_refresh"),
           help=_l("Basic authentication (a password) for SMTP AUTH is being turned off: use an OAuth 2.0 credential. "
                   "The mailbox needs Authenticated SMTP enabled in the Microsoft 365 admin center."),
           # Microsoft Learn, "Message storage and concurrent connection throttling for SMTP Authenticated
           # Submission": three concurrent connections and 30 messages a minute per mailbox.
           max_connections=3, rate_per_minute=30,
           limits_help=_l("Microsoft 365 accepts at most 3 connections at once and 30 messages a minute per "
                          "mailbox, and 10,000 recipients a day.")),
    Preset("gmail", "Gmail / Google Workspace", "smtp.gmail.com", 587,
           credential_kinds=("oauth_refresh", "oauth_jwt", "password"),
           help=_l("Use OAuth 2.0: a refresh token from “Connect with the provider”, or a service account with "
                   "domain-wide delegation for the scope https://mail.google.com/. Without OAuth, the password must "
                   "be an app password."),
           # Google Workspace Admin Help, "Gmail sending limits in Google Workspace" (answer 166852).
           limits_help=_l("Google Workspace sends at most 2,000 messages a day per user (500 on a trial account), "
                          "counted over a rolling 24 hours; past that, sending stops for up to 24 hours.")),
    *(Preset(f"ses-{code}", LazyText("Amazon SES · {} · {}".format, name, code),
             f"email-smtp.{code}.amazonaws.com", 587, help=_SES_HELP, group=_l("Amazon SES (region)"))
      for code, name in SES_REGIONS),
    Preset("sendgrid", "SendGrid", "smtp.sendgrid.net", 587,
           help=_l("The username is literally apikey; the password is an API key with the Mail Send permission.")),
    Preset("mailgun-us", _l("Mailgun (US)"), "smtp.mailgun.org", 587, help=_MAILGUN_HELP),
    Preset("mailgun-eu", _l("Mailgun (EU)"), "smtp.eu.mailgun.org", 587, help=_MAILGUN_HELP),
    Preset("postmark", "Postmark", "smtp.postmarkapp.com", 587,
           help=_l("The username and the password are both the server's Server API token.")),
    Preset("brevo", "Brevo", "smtp-relay.brevo.com", 587,
           help=_l("The username is the SMTP login shown under SMTP & API; the password is an SMTP key, not the "
                   "account's password.")),
    Preset("zoho", "Zoho", "smtp.zoho.com", 587, other_hosts=_ZOHO_HOSTS,
           help=_l("With two-factor authentication, use an app-specific password. Organisation mail uses "
                   "smtppro.zoho.com, and accounts in other regions their own host, such as smtp.zoho.eu.")),
)
BY_KEY = {preset.key: preset for preset in PRESETS}


def preset_named(key: str | None) -> Preset:
    """The preset with this key; Custom for an unknown one."""
    return BY_KEY.get(key or "", CUSTOM)


def preset_for_host(host: str | None) -> Preset:
    """The preset whose host an account holds, else Custom: the form shows it for a saved account."""
    return next((preset for preset in PRESETS if preset.matches(host)), CUSTOM)
