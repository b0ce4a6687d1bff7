"""The SMTP accounts report's columns, each described once: its heading, its cell, its CSV value, its filter, its
sort order and the label the audit log gives the field it shows.

The report's headings, cells and colspans, the print view, the CSV export, the scheduled report, the filter form and
the audit log read this table. A new column is a new entry here (plus the model field, its migration, the account
form, the translations and the tests).
"""
from collections.abc import Callable
from dataclasses import dataclass

from flask_babel import gettext as _
from peewee import fn

from webapp.accounts.limits import limit_defaults
from webapp.accounts.testing import summary_text
from webapp.models import SmtpAccount
from webapp.translation import lazy_gettext as _l


@dataclass(frozen=True)
class Filter:
    """A search field of the report: its query-string name and label, and how it narrows the list.

    "contains": the text appears in the column, ignoring case; "yes_no": Any / Yes / No.
    """

    name: str
    label: object
    match: str = "contains"


@dataclass(frozen=True)
class Column:
    """One column of the report or of its CSV export."""

    key: str                            # its name in the code (and in `sort=`)
    heading: object                     # the report's heading and the CSV's
    value: Callable                     # account -> what the cell shows (the CSV writes a bool as Yes/No)
    cell: str | None = "text"           # how the report shows it (a branch of accounts/_columns.html); None: CSV only
    reads: tuple = ()                   # the account fields the cell needs (the report selects only these)
    field: str | None = None            # the model field it shows, whose label the audit log uses...
    audit_label: object = None          # ...this one, the account form's label
    filter: Filter | None = None
    sort: tuple = ()                    # the order it sorts by, ascending (empty: not sortable)
    title: object = None                # the heading's meaning, when the heading is an abbreviation


def secure_label(account: SmtpAccount) -> str:
    """The secure connection mode as the report shows it: No, SSL or TLS."""
    return {"ssl": "SSL", "tls": "TLS"}.get(account.mode, _("No"))


def connector_label(account: SmtpAccount) -> str:
    """The connector an account names, or that it relies on the system default one."""
    if not account.use_connector:
        return ""
    return account.connector.name if account.connector else _("System default connector")


def backup_label(account: SmtpAccount) -> str:
    """The backup account's name, saying when it is disabled (the claim ignores it then), or nothing. The account is
    read with its backup (AccountFilterForm.query()), not with a query per row."""
    if not account.backup_account_id:
        return ""
    backup = account.backup_account
    return backup.name if backup.enabled else _("%(name)s (disabled)", name=backup.name)


def _test_time(account: SmtpAccount) -> str:
    return account.last_test_at.isoformat(sep=" ", timespec="seconds") + " UTC" if account.last_test_at else ""


def _test_result(account: SmtpAccount) -> str:
    return {True: _("OK"), False: _("Failed"), None: ""}[account.last_test_ok]


def _connections(account: SmtpAccount) -> int:
    """The account's connection limit, its own or the default."""
    return limit_defaults()[0] if account.max_connections is None else account.max_connections


def _per_minute(account: SmtpAccount):
    """The account's messages a minute, its own or the default (0: no limit)."""
    value = limit_defaults()[1] if account.rate_per_minute is None else account.rate_per_minute
    return value if value > 0 else _("No limit")


def _field(name: str, heading, audit_label=None, **options) -> Column:
    """A column showing the model field `name` as it is."""
    return Column(name, heading, lambda account: getattr(account, name), reads=(getattr(SmtpAccount, name),),
                  field=name, audit_label=audit_label or heading, **options)


S = SmtpAccount
COLUMNS = (
    _field("id", _l("ID"), filter=Filter("id", _l("ID")), sort=(S.id,)),
    _field("name", _l("Name"), _l("Account name"), cell="row_header", filter=Filter("name", _l("Name")),
           sort=(fn.casefold(S.name), S.id)),
    _field("sender", _l("Sender e-mail"), filter=Filter("sender", _l("Sender"))),
    _field("reply_to", _l("Reply-To"), _l("Reply-To e-mail"), filter=Filter("reply_to", _l("Reply-To"))),
    _field("return_path", _l("Return-Path"), _l("Return-Path e-mail"),
           filter=Filter("return_path", _l("Return-Path"))),
    _field("confirmation_email", _l("Confirmation e-mail"), filter=Filter("confirmation", _l("Confirmation"))),
    _field("enabled", _l("Enabled"), cell="enabled", filter=Filter("enabled", _l("Enabled"), "yes_no")),
    _field("is_default", _l("Default"), _l("Default account"), cell="default"),
    Column("secure", _l("Secure connection"), secure_label, reads=(S.secure, S.secure_type), field="secure",
           audit_label=_l("Use secure connection?")),
    _field("force_settings", _l("Uses config"), _l("Force settings use"), cell="yes_no",
           title=_l("Force settings use")),
    _field("read_confirmation", _l("Read confirmation"), _l("Send read confirmation"), cell="yes_no"),
    _field("footer_enabled", _l("Footer"), _l("Enable footer"), cell="yes_no"),
    # The rest are in the CSV only, except the health of the account ("Last test").
    _field("host", _l("SMTP host"), cell=None),
    Column("port", _l("Port"), lambda account: account.effective_port, cell=None, field="port",
           audit_label=_l("Port")),
    _field("use_auth", _l("Use authentication?"), cell=None),
    Column("credential", _l("Credential for authentication"),
           lambda account: account.credential.name if account.credential else "", cell=None, field="credential",
           audit_label=_l("Credential for authentication")),
    _field("ignore_cert_errors", _l("Ignore certificate error"), cell=None),
    Column("tls_unverified", _l("TLS not verified"), lambda account: account.tls_unverified, cell=None),
    _field("use_connector", _l("Use network connector?"), cell=None),
    Column("connector", _l("Network connector"), connector_label, cell=None, field="connector",
           audit_label=_l("Network connector")),
    # Sending limits: what holds (the account's own, or the default); the report's health cell shows its own.
    Column("max_connections", _l("Max simultaneous connections"), _connections, cell=None, field="max_connections",
           audit_label=_l("Max simultaneous connections")),
    Column("rate_per_minute", _l("Messages per minute"), _per_minute, cell=None, field="rate_per_minute",
           audit_label=_l("Messages per minute")),
    Column("last_test", _l("Last test"), _test_time, cell="health", field="last_test_at", audit_label=_l("Last test"),
           reads=(S.last_test_at, S.last_test_ok, S.last_test_summary, S.last_tls_verified, S.secure,
                  S.ignore_cert_errors, S.max_connections, S.rate_per_minute, S.backup_account,
                  S.failover_until)),
    Column("last_test_ok", _l("Last test result"), _test_result, cell=None, field="last_test_ok",
           audit_label=_l("Last test succeeded")),
    Column("last_test_summary", _l("Last test summary"), lambda account: summary_text(account.last_test_summary),
           cell=None, field="last_test_summary", audit_label=_l("Last test result")),
    # Failover: the backup account (the report's health cell shows when the account is failing over to it).
    Column("backup_account", _l("Backup account"), backup_label, cell=None, field="backup_account",
           audit_label=_l("Backup account")),
)
del S

REPORT_COLUMNS = tuple(column for column in COLUMNS if column.cell)
FILTERS = tuple(column.filter for column in COLUMNS if column.filter)
# The fields a report row reads: the id always (its row and its actions), then what its cells need.
REPORT_FIELDS = tuple(dict.fromkeys((SmtpAccount.id, *(f for column in REPORT_COLUMNS for f in column.reads))))
SORTS = {column.key: column.sort for column in COLUMNS if column.sort}

# What the audit log calls the account's fields: the columns' labels, and those of the fields no column shows.
AUDIT_LABELS = {
    **{column.field: column.audit_label for column in COLUMNS if column.field},
    "secure_type": _l("Secure connection type (SSL / TLS)"),
    "last_tls_verified": _l("TLS verified"),
    "ca_cert": _l("Custom CA certificate (PEM)"),
    "helo_name": _l("HELO/EHLO name"),
}


def csv_table(accounts) -> tuple[list, list]:
    """The CSV's header and rows for these accounts (read with their credential and connector)."""
    yes_no = {True: _("Yes"), False: _("No")}

    def text(value):
        return yes_no[value] if isinstance(value, bool) else value

    return ([str(column.heading) for column in COLUMNS],
            [[text(column.value(account)) for column in COLUMNS] for account in accounts])
