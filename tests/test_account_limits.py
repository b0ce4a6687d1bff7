"""Per-account sending limits: set on the account form ("Sending limits"; empty keeps the configured default),
validated with field errors, audited, shown in the report and its CSV, filled by the provider presets, read by the
claims; OUTBOX_ACCOUNT_LIMITS is no longer read and stops start-up. (Two worker processes holding an account's limits
together: tests/test_outbox_workers.py.)"""
import csv
import html
import io
import re
from datetime import timedelta

import pytest

from tests.support.factories import account_form, edit_form, make_account, make_notification
from tests.support.processes import instance_env, run
from tests.test_account_presets import apply, help_line, options_of
from webapp.config import ConfigError
from webapp.db import database
from webapp.models import AuditEntry, Notification, SmtpAccount, utcnow
from webapp.outbox.queue import claim
from webapp.outbox.settings import OutboxSettings

pytestmark = pytest.mark.engines("sqlite", "postgresql")


def field_error(text: str, name: str) -> str | None:
    found = re.search(rf'<small class="field-error" id="{name}-error">(.*?)</small>', text, re.S)
    return html.unescape(found.group(1)).strip() if found else None


def field_help(text: str, name: str) -> str:
    return html.unescape(re.search(rf'<small id="{name}-help">(.*?)</small>', text, re.S).group(1)).strip()


def input_tag(text: str, name: str) -> str:
    return re.search(rf'<input[^>]*name="{name}"[^>]*>', text).group(0)


def value_of(text: str, name: str) -> str:
    return html.unescape(re.search(r'value="([^"]*)"', input_tag(text, name)).group(1))


# --- The form -------------------------------------------------------------------------------------------------


def test_the_form_has_a_sending_limits_fieldset_whose_empty_fields_say_the_configured_defaults(app, admin):
    app.config.update(OUTBOX_MAX_CONNECTIONS=4, OUTBOX_RATE_PER_MINUTE=0)
    text = admin.get("/accounts/new").get_data(as_text=True)
    fieldset = re.search(r'<fieldset class="sending-limits" id="sending-limits">(.*?)</fieldset>', text, re.S).group(1)
    assert "<legend>Sending limits</legend>" in fieldset
    assert '<label for="max_connections">Max simultaneous connections</label>' in fieldset
    assert '<label for="rate_per_minute">Messages per minute</label>' in fieldset
    # Inside the server section, before Advanced; empty, their placeholder the default.
    assert text.index("<h2>SMTP server settings</h2>") < text.index('id="sending-limits"') < text.index("Advanced")
    assert 'placeholder="4"' in input_tag(text, "max_connections") and value_of(text, "max_connections") == ""
    assert 'placeholder="0"' in input_tag(text, "rate_per_minute")
    assert 'aria-describedby="max_connections-help"' in input_tag(text, "max_connections")
    assert field_help(text, "max_connections").endswith("Empty: the default, 4.")
    assert field_help(text, "rate_per_minute").endswith("0: no limit. Empty: the default, no limit.")

    app.config.update(OUTBOX_MAX_CONNECTIONS=2, OUTBOX_RATE_PER_MINUTE=1200)
    text = admin.get("/accounts/new").get_data(as_text=True)
    assert 'placeholder="2"' in input_tag(text, "max_connections")
    assert field_help(text, "rate_per_minute").endswith("Empty: the default, 1,200 messages a minute.")


def test_the_limits_are_saved_empty_as_none_and_shown_again_on_the_edit_form(admin):
    response = admin.post("/accounts/new", data=account_form(name="limited", max_connections=" 3 ",
                                                             rate_per_minute="30"))
    assert response.status_code == 303
    account = SmtpAccount.get(SmtpAccount.name == "limited")
    assert (account.max_connections, account.rate_per_minute) == (3, 30)
    text = admin.get(f"/accounts/{account.id}/edit").get_data(as_text=True)
    assert (value_of(text, "max_connections"), value_of(text, "rate_per_minute")) == ("3", "30")

    assert admin.post(f"/accounts/{account.id}/edit", data=edit_form(account, secure="yes", max_connections="",
                                                                      rate_per_minute="0")).status_code == 303
    account = SmtpAccount.get_by_id(account.id)
    assert (account.max_connections, account.rate_per_minute) == (None, 0)  # the default; no rate limit


@pytest.mark.parametrize("name, value, message", [
    ("max_connections", "0", "from 1 to 100,"),
    ("max_connections", "101", "from 1 to 100,"),
    ("max_connections", "two", "from 1 to 100,"),
    ("max_connections", "-1", "from 1 to 100,"),
    ("max_connections", "1.5", "from 1 to 100,"),
    ("max_connections", "²", "from 1 to 100,"),  # a digit to str.isdigit(), not to int()
    ("rate_per_minute", "100001", "from 0 to 100,000,"),
    ("rate_per_minute", "-5", "from 0 to 100,000,"),
    ("rate_per_minute", "9" * 40, "from 0 to 100,000,"),
])
def test_a_limit_out_of_range_is_a_field_error_and_nothing_is_saved(admin, name, value, message):
    before = SmtpAccount.select().count(), AuditEntry.select().count()
    response = admin.post("/accounts/new", data=account_form(**{name: value}))
    text = response.get_data(as_text=True)
    assert response.status_code == 422
    assert field_error(text, name) == f"Enter a whole number {message} or leave it empty for the default."
    assert 'aria-invalid="true"' in input_tag(text, name)
    assert value_of(text, name) == value  # kept as typed, to correct
    assert (SmtpAccount.select().count(), AuditEntry.select().count()) == before


def test_changing_the_limits_is_audited_under_their_labels(admin):
    make_account(is_default=True)
    account = make_account(name="relay", host="smtp.example.com")
    admin.post(f"/accounts/{account.id}/edit", data=edit_form(account, max_connections="2", rate_per_minute="60"))
    admin.post(f"/accounts/{account.id}/edit", data=edit_form(account, max_connections="", rate_per_minute="60"))
    first, second = AuditEntry.select().where(AuditEntry.action == "update").order_by(AuditEntry.id)
    assert first.changes == {"max_connections": [None, 2], "rate_per_minute": [None, 60]}
    assert second.changes == {"max_connections": [2, None]}
    log = html.unescape(admin.get("/audit/").get_data(as_text=True))
    assert "Max simultaneous connections: — → 2" in log and "Messages per minute: — → 60" in log
    assert "Max simultaneous connections: 2 → —" in log


# --- The report -----------------------------------------------------------------------------------------------


def read_csv(response) -> list[dict]:
    header, *rows = csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff")))
    return [dict(zip(header, row)) for row in rows]


def test_the_report_shows_an_accounts_own_limits_and_the_csv_the_limits_that_hold(app, admin):
    app.config.update(OUTBOX_MAX_CONNECTIONS=4, OUTBOX_RATE_PER_MINUTE=0)
    own = make_account(name="own", max_connections=1, rate_per_minute=30)
    connections_only = make_account(name="connections only", max_connections=2)
    unlimited = make_account(name="unlimited", rate_per_minute=0)
    default = make_account(name="default")
    text = admin.get("/accounts/").get_data(as_text=True)

    def limits_in_row(account):
        row = re.search(rf'<tr id="account-{account.id}".*?</tr>', text, re.S).group(0)
        found = re.search(r'<small class="muted limits">(.*?)</small>', row, re.S)
        return html.unescape(found.group(1)).strip() if found else None

    assert limits_in_row(own) == "Sending limits: 1 connection, 30 messages a minute"
    assert limits_in_row(connections_only) == "Sending limits: 2 connections"
    assert limits_in_row(unlimited) == "Sending limits: no rate limit"
    assert limits_in_row(default) is None  # the defaults: nothing of its own to say
    assert "Sending limits: 1 connection" in admin.get("/accounts/print").get_data(as_text=True)

    rows = {row["Name"]: row for row in read_csv(admin.get("/accounts/export.csv"))}
    limits = {name: (row["Max simultaneous connections"], row["Messages per minute"]) for name, row in rows.items()}
    assert limits == {"own": ("1", "30"), "connections only": ("2", "No limit"), "unlimited": ("4", "No limit"),
                      "default": ("4", "No limit")}
    app.config["OUTBOX_RATE_PER_MINUTE"] = 10
    rows = {row["Name"]: row for row in read_csv(admin.get("/accounts/export.csv"))}
    assert (rows["default"]["Messages per minute"], rows["unlimited"]["Messages per minute"]) == ("10", "No limit")


# --- The presets ----------------------------------------------------------------------------------------------


def test_microsoft_365_carries_its_limits_and_gmail_its_daily_cap_in_its_help(admin):
    options = options_of(admin.get("/accounts/new").get_data(as_text=True))
    microsoft = options["microsoft365"]
    assert (microsoft["data-max-connections"], microsoft["data-rate-per-minute"]) == ("3", "30")
    assert "at most 3 connections at once and 30 messages a minute per mailbox" in microsoft["data-help"]
    gmail = options["gmail"]
    assert (gmail["data-max-connections"], gmail["data-rate-per-minute"]) == ("", "")
    assert "at most 2,000 messages a day per user (500 on a trial account)" in gmail["data-help"]
    assert "rolling 24 hours; past that, sending stops for up to 24 hours. Expected credential:" in gmail["data-help"]
    for key in ("sendgrid", "ses-us-east-1", "custom"):  # no limit documented that a preset could fill
        assert options[key].get("data-max-connections", "") == "" and options[key].get("data-rate-per-minute", "") == ""


def test_apply_fills_the_providers_limits_and_empties_them_for_one_without(admin):
    before = SmtpAccount.select().count()
    text = apply(admin, provider="microsoft365", max_connections="9", rate_per_minute="").get_data(as_text=True)
    assert (value_of(text, "max_connections"), value_of(text, "rate_per_minute")) == ("3", "30")
    assert "30 messages a minute per mailbox" in help_line(text)

    text = apply(admin, provider="gmail", max_connections="3", rate_per_minute="30").get_data(as_text=True)
    assert (value_of(text, "max_connections"), value_of(text, "rate_per_minute")) == ("", "")
    assert "2,000 messages a day" in help_line(text)

    # Custom fills nothing: what was typed stays.
    text = apply(admin, provider="custom", max_connections="2", rate_per_minute="7").get_data(as_text=True)
    assert (value_of(text, "max_connections"), value_of(text, "rate_per_minute")) == ("2", "7")
    assert SmtpAccount.select().count() == before


# --- The claims -----------------------------------------------------------------------------------------------


def test_a_claim_reads_the_accounts_own_limits_and_the_defaults_for_empty_ones(app):
    account = make_account(is_default=True)
    for n in range(6):
        make_notification(account=account, subject=f"n{n}")
    # Empty: the defaults (here one connection and a rate of 4), which hold for any worker.
    defaults = OutboxSettings(batch_size=10, max_connections=1, rate_per_minute=4)
    assert len(claim("first", defaults)) == 4  # the rate counts the messages in flight
    assert claim("second", defaults) == []     # one connection: the first worker's
    # Its own limits win from the next claim on: two connections, no rate limit.
    SmtpAccount.update(max_connections=2, rate_per_minute=0).where(SmtpAccount.id == account.id).execute()
    assert len(claim("second", defaults)) == 2
    assert claim("third", defaults) == []


def test_an_accounts_own_rate_holds_where_the_default_has_none(app):
    limited = make_account(is_default=True, rate_per_minute=2)
    free = make_account()
    for n in range(4):
        make_notification(account=limited, subject=f"limited{n}")
        make_notification(account=free, subject=f"free{n}")
    claimed = claim("w", OutboxSettings(batch_size=10))
    assert sorted(n.subject for n in claimed) == ["free0", "free1", "free2", "free3", "limited0", "limited1"]


def test_a_claim_looks_past_an_account_at_its_limit_to_the_others_oldest_due_first(app):
    """The oldest due notifications, more than a claim looks at, belong to an account at its rate: the claim takes the
    other accounts' due ones (queued or retrying) in due order, from m0014's index, not a scan of the queue."""
    limited = make_account(is_default=True, rate_per_minute=1)
    others = make_account(), make_account()
    start = utcnow() - timedelta(minutes=10)
    for n in range(25):
        make_notification(account=limited, subject=f"limited{n}", next_attempt_at=start)
    due = {"late": (others[0], "queued", 5), "early": (others[1], "retrying", 2), "middle": (others[0], "retrying", 3),
           "first": (others[1], "queued", 1), "future": (others[0], "queued", 20)}
    for subject, (account, status, minutes) in due.items():
        make_notification(status, account=account, subject=subject, next_attempt_at=start + timedelta(minutes=minutes))
    settings = OutboxSettings(batch_size=10)
    assert [n.subject for n in claim("w", settings)] == ["limited0", "first", "early", "middle", "late"]
    assert claim("w2", settings) == []  # the limited account's rate is spent, the rest is not due


@pytest.mark.sqlite_only("counts SQLite's virtual machine steps (its progress handler); PostgreSQL has no such count")
def test_a_claim_past_an_accounts_spent_backlog_does_not_walk_that_backlog(app):
    """A claim holds SQLite's write lock, so its work must not grow with an account's backlog that it passes over
    (its rate spent). Counted in SQLite's virtual machine steps, not time: the same claim over 1 and over 3,000 of
    them does about the same work. (Timed, with 100,000: `make bench-claims`.)"""
    limited = make_account(is_default=True, rate_per_minute=1)
    other = make_account()
    start = utcnow() - timedelta(minutes=10)
    first = make_notification(account=limited, subject="limited", next_attempt_at=start)
    make_notification(account=limited, subject="limited", next_attempt_at=start)
    settings = OutboxSettings(batch_size=50)
    assert [n.id for n in claim("spent", settings)] == [first.id]  # its rate for the minute is spent

    def steps_of_a_claim() -> int:
        for n in range(50):
            make_notification(account=other, subject=f"other{n}", next_attempt_at=start)
        steps = 0

        def count_step() -> int:
            nonlocal steps
            steps += 1
            return 0  # go on

        database.connection().set_progress_handler(count_step, 100)
        try:
            claimed = claim("w", settings)
        finally:
            database.connection().set_progress_handler(None, 100)
        assert [n.subject for n in claimed] == [f"other{n}" for n in range(50)]
        Notification.update(status="sent").where(Notification.id.in_([n.id for n in claimed])).execute()
        return steps

    over_one = steps_of_a_claim()
    row = {name: value for name, value in first.__data__.items() if name != "id"}
    Notification.insert_many([{**row, "message_id": f"<backlog{n}@test>"} for n in range(3000)]).execute()
    over_a_backlog = steps_of_a_claim()

    assert over_a_backlog < 1.5 * over_one, (over_one, over_a_backlog)


# --- OUTBOX_ACCOUNT_LIMITS ------------------------------------------------------------------------------------


def test_outbox_account_limits_stops_start_up_with_one_line_saying_to_use_the_form(app, tmp_path):
    from cryptography.fernet import Fernet

    from webapp import create_app

    with pytest.raises(ConfigError, match="OUTBOX_ACCOUNT_LIMITS is no longer read: set each account's limits"):
        create_app({"TESTING": True, "SECRET_KEY": "x", "DATABASE": str(tmp_path / "x.db"),
                    "VAULT_KEYS": Fernet.generate_key().decode(),
                    "OUTBOX_ACCOUNT_LIMITS": {"relay": {"max_connections": 1}}})
    setting = '{"relay": {"max_connections": 1}}'
    result = run(["worker", "--until-idle"], instance_env(app, OUTBOX_ACCOUNT_LIMITS=setting))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: OUTBOX_ACCOUNT_LIMITS is no longer read: set each account's limits under \"Sending limits\" on its "
        "form (SMTP Configuration > Edit), then remove the setting."]
