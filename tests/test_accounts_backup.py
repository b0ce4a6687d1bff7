"""The backup account (Conta de contingência) on the account form: its choices, the refusals (disabled, itself, a
circle), the audit and the CSV; the report's badge while an account fails over; the delivery's detail. Disabling or
deleting an account others name as their backup: the warnings, the cleared backups and the report's badge."""
import base64
import csv
import io
import json
import re
from datetime import timedelta

import pytest

from tests.support.factories import QueryCounter, account_form, make_account, make_notification, make_user
from tests.test_accounts_form import field_error
from webapp.models import AuditEntry, Notification, ScheduledReport, SmtpAccount, utcnow
from webapp.outbox import send_notification
from webapp.schedules import run_due_schedules

pytestmark = pytest.mark.engines("sqlite", "postgresql")


def edit_form(account: SmtpAccount, **overrides) -> dict:
    """The account's edit form as saved, with overrides."""
    return account_form(name=account.name, sender=account.sender, reply_to=account.reply_to,
                        return_path=account.return_path, confirmation_email=account.confirmation_email,
                        host=account.host, is_default="yes" if account.is_default else "no", secure="no",
                        **overrides)


def options(text: str) -> list[tuple[str, str]]:
    select = re.search(r'<select[^>]*name="backup_account"[^>]*>(.*?)</select>', text, re.S).group(1)
    return re.findall(r'<option[^>]*value="([^"]*)"[^>]*>([^<]*)</option>', select)


def test_the_field_lists_the_enabled_accounts_other_than_itself(admin):
    main = make_account(name="Main", is_default=True)
    make_account(name="Spare")
    make_account(name="Off", enabled=False)
    text = admin.get(f"/accounts/{main.id}/edit").get_data(as_text=True)
    assert "<h2>Failover</h2>" in text and '<label for="backup_account">Backup account</label>' in text
    assert [name for _, name in options(text)] == ["None", "Spare"]
    assert [name for _, name in options(admin.get("/accounts/new").get_data(as_text=True))] == ["None", "Main",
                                                                                                "Spare"]


def test_a_backup_is_saved_audited_and_exported(admin):
    main = make_account(name="Main", is_default=True)
    spare = make_account(name="Spare")
    response = admin.post(f"/accounts/{main.id}/edit", data=edit_form(main, backup_account=str(spare.id)))
    assert response.status_code == 303
    assert SmtpAccount.get_by_id(main.id).backup_account_id == spare.id
    entry = AuditEntry.get(AuditEntry.action == "update")
    assert entry.changes == {"backup_account": [None, spare.id]}
    assert "Backup account: — → " in admin.get("/audit/").get_data(as_text=True)
    csv = admin.get("/accounts/export.csv").get_data(as_text=True)
    header, *rows = csv.splitlines()
    assert "Backup account" in header
    assert any(row.startswith(f"{main.id},") and row.rstrip().endswith("Spare") for row in rows)
    # Chosen as nothing again: no backup.
    admin.post(f"/accounts/{main.id}/edit", data=edit_form(main, backup_account=""))
    assert SmtpAccount.get_by_id(main.id).backup_account_id is None


# The CSV in each language: its separator, its "Backup account" heading and how it says a backup is disabled.
CSV_LANGUAGES = [("en", ",", "Backup account", "{} (disabled)"),
                 ("pt_BR", ";", "Conta de contingência", "{} (desativada)")]


def backed_up_pairs(numbers, disabled: str) -> dict[str, str]:
    """For each number, an account naming a spare of its own as backup (every other spare disabled); each account's
    name → its expected CSV backup cell, a disabled spare said as `disabled` formats it."""
    expected = {}
    for n in numbers:
        spare = make_account(name=f"Spare-{n}", enabled=n % 2 == 1)
        make_account(name=f"Main-{n}", backup_account=spare.id)
        expected[f"Main-{n}"] = spare.name if spare.enabled else disabled.format(spare.name)
    return expected


def backup_cells(data: bytes, separator: str, heading: str) -> dict[str, str]:
    """Each row's account name → its backup cell, from a CSV."""
    header, *rows = csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=separator)
    return {row[1]: row[header.index(heading)] for row in rows}


@pytest.mark.parametrize("language,separator,heading,disabled", CSV_LANGUAGES)
def test_the_csv_reads_every_backup_in_its_one_query_and_says_a_disabled_one(admin, language, separator, heading,
                                                                             disabled):
    """The signed-in user, then the accounts with their credential, connector and backup: two queries, for one row
    without a backup or 21 with; a disabled backup says so in the reader's language (the claim ignores it)."""
    admin.use_language(language)
    make_account(name="Lone", is_default=True)
    with QueryCounter() as one_row:
        response = admin.get("/accounts/export.csv")
    assert backup_cells(response.get_data(), separator, heading) == {"Lone": ""}
    expected = {"Lone": "", **backed_up_pairs(range(10), disabled)}
    with QueryCounter() as many_rows:
        response = admin.get("/accounts/export.csv")
    assert backup_cells(response.get_data(), separator, heading) == {
        **expected, **{f"Spare-{n}": "" for n in range(10)}}
    assert one_row.count == many_rows.count == 2


@pytest.mark.parametrize("language,separator,heading,disabled", CSV_LANGUAGES)
def test_the_scheduled_report_reads_every_backup_in_its_one_query_too(app, language, separator, heading, disabled):
    """Its run's queries are as many for one account as for 21 with backups; its CSV says a disabled backup in the
    language of whoever scheduled it."""
    make_account(name="Lone", is_default=True)
    due = utcnow().replace(microsecond=0) - timedelta(minutes=1)
    schedule = ScheduledReport.create(recipients="ops@example.com", frequency="daily", next_run_at=due,
                                      created_by=make_user("admin", locale=language))
    with QueryCounter() as one_row:
        assert run_due_schedules(now=due) == 1
    expected = {"Lone": "", **backed_up_pairs(range(10), disabled), **{f"Spare-{n}": "" for n in range(10)}}
    with QueryCounter() as many_rows:
        assert run_due_schedules(now=due + timedelta(days=1)) == 1
    assert one_row.count == many_rows.count
    (attachment,) = json.loads(Notification.select().order_by(Notification.id.desc()).get().attachments)
    assert backup_cells(base64.b64decode(attachment["data"]), separator, heading) == expected
    assert ScheduledReport.get_by_id(schedule.id).next_run_at == due + timedelta(days=2)


@pytest.mark.parametrize("case", ["disabled", "itself", "circle of two", "circle of three", "unknown"])
def test_the_form_refuses_a_disabled_backup_itself_and_a_circle(admin, case):
    a = make_account(name="A", is_default=True)
    b = make_account(name="B")
    c = make_account(name="C")
    if case == "disabled":
        SmtpAccount.update(enabled=False).where(SmtpAccount.id == b.id).execute()
        SmtpAccount.update(backup_account=b.id).where(SmtpAccount.id == a.id).execute()  # disabled since it was set
        choice, expected = b.id, "The backup account B is disabled: enable it, or choose another."
        # The saved backup stays listed, marked, so that saving says so instead of dropping it.
        assert ("%d" % b.id, "B (disabled)") in options(admin.get(f"/accounts/{a.id}/edit").get_data(as_text=True))
    elif case == "itself":
        choice, expected = a.id, "An account cannot be its own backup."
    elif case == "circle of two":
        SmtpAccount.update(backup_account=a.id).where(SmtpAccount.id == b.id).execute()
        choice, expected = b.id, "This would make a circle of backups: A → B → A."
    elif case == "circle of three":
        SmtpAccount.update(backup_account=c.id).where(SmtpAccount.id == b.id).execute()
        SmtpAccount.update(backup_account=a.id).where(SmtpAccount.id == c.id).execute()
        choice, expected = b.id, "This would make a circle of backups: A → B → C → A."
    else:
        choice, expected = 99999, "Choose an account from the list."
    before = SmtpAccount.get_by_id(a.id).backup_account_id
    response = admin.post(f"/accounts/{a.id}/edit", data=edit_form(a, backup_account=str(choice)))
    assert response.status_code == 422
    assert field_error(response, "backup_account") == expected
    assert SmtpAccount.get_by_id(a.id).backup_account_id == before
    assert not AuditEntry.select().where(AuditEntry.action == "update").exists()


def test_a_chain_without_a_circle_is_accepted(admin):
    a = make_account(name="A", is_default=True)
    b = make_account(name="B")
    c = make_account(name="C")
    SmtpAccount.update(backup_account=c.id).where(SmtpAccount.id == b.id).execute()
    assert admin.post(f"/accounts/{a.id}/edit", data=edit_form(a, backup_account=str(b.id))).status_code == 303
    assert SmtpAccount.get_by_id(a.id).backup_account_id == b.id


def test_the_report_shows_an_account_failing_over_until_its_cool_down_ends(admin):
    main = make_account(name="Main", is_default=True)
    spare = make_account(name="Spare")
    SmtpAccount.update(backup_account=spare.id, failover_until=utcnow() + timedelta(minutes=5),
                       failover_failures=2).where(SmtpAccount.id == main.id).execute()
    text = admin.get("/accounts/").get_data(as_text=True)
    row = re.search(rf'<tr id="account-{main.id}".*?</tr>', text, re.S).group(0)
    assert re.search(r'class="badge badge-warn failing-over"[^>]*>failing over to Spare</span>', row)
    assert "failing-over" not in re.search(rf'<tr id="account-{spare.id}".*?</tr>', text, re.S).group(0)
    # Over: the cool-down has ended (the next claim tries the primary again).
    SmtpAccount.update(failover_until=utcnow() - timedelta(seconds=1)).where(SmtpAccount.id == main.id).execute()
    assert "failing-over" not in admin.get("/accounts/").get_data(as_text=True)
    # The worker's state is not a setting: it never shows in the audit log.
    assert not AuditEntry.select().where(AuditEntry.object_type == "smtp_account").exists()


def test_a_delivery_carried_by_the_backup_says_so_in_its_detail_and_the_list(admin):
    make_account(name="Main", is_default=True)
    spare = make_account(name="Spare")
    number = send_notification(to=["ops@example.org"], subject="Disk full", text="97%")
    reason = {"ok": False, "step": "greeting", "code": 421, "reply": "4.3.2 down", "params": {"host": "smtp.main"},
              "message": "%(host)s refused the session.", "hint": ""}
    reply = json.dumps({"ok": True, "code": 250, "reply": "2.0.0 Ok",
                        "failover": {"primary": "Main", "backup": "Spare", "reason": reason}})
    Notification.update(status="sent", sent_via=spare.id, last_code=250, last_reply=reply, sent_at=utcnow()).where(
        Notification.id == number).execute()
    said = "sent through backup Spare after Main failed: 421 4.3.2 down — smtp.main refused the session."
    detail = admin.get(f"/deliveries/{number}").get_data(as_text=True)
    assert re.search(r'<dd class="sent-via">backup account Spare</dd>', detail)
    assert said in detail
    assert said in admin.get("/deliveries/").get_data(as_text=True)


# --- Disabling or deleting a backup -------------------------------------------------------------------------------

LEFT_TWO = ("The accounts “Main”, “Other” use “Spare” as their backup: they have no backup while “Spare” is "
            "disabled.")


def backed_up_by_two() -> tuple[SmtpAccount, SmtpAccount, SmtpAccount]:
    """Spare, named as their backup by Main (the default) and Other; Lone names none."""
    main = make_account(name="Main", is_default=True)
    other = make_account(name="Other")
    spare = make_account(name="Spare")
    make_account(name="Lone")
    SmtpAccount.update(backup_account=spare.id).where(SmtpAccount.id.in_((main.id, other.id))).execute()
    return main, other, spare


def row(text: str, account: SmtpAccount) -> str:
    return re.search(rf'<tr id="account-{account.id}".*?</tr>', text, re.S).group(0)


def flashes(text: str) -> list[tuple[str, str]]:
    return re.findall(r'<p class="flash flash-(\w+)">([^<]*)</p>', text)


def test_disabling_a_backup_on_the_form_saves_and_warns_which_accounts_lose_it(admin):
    main, other, spare = backed_up_by_two()
    response = admin.post(f"/accounts/{spare.id}/edit", data=edit_form(spare, enabled="no"))
    assert response.status_code == 303
    assert not SmtpAccount.get_by_id(spare.id).enabled
    # Their backup stays named (enabling Spare again gives it back); the report says they have none meanwhile.
    assert SmtpAccount.get_by_id(main.id).backup_account_id == spare.id
    assert flashes(admin.get(response.headers["Location"]).get_data(as_text=True)) == [
        ("success", "Account “Spare” saved."), ("warning", LEFT_TWO)]
    # Saved again while disabled, or enabled: nothing is lost by that save.
    response = admin.post(f"/accounts/{spare.id}/edit", data=edit_form(spare, enabled="no", helo_name="relay2.example"))
    assert flashes(admin.get(response.headers["Location"]).get_data(as_text=True)) == [
        ("success", "Account “Spare” saved.")]
    response = admin.post(f"/accounts/{spare.id}/edit", data=edit_form(spare, enabled="yes"))
    assert flashes(admin.get(response.headers["Location"]).get_data(as_text=True)) == [
        ("success", "Account “Spare” saved.")]


def test_disabling_an_account_nobody_names_as_backup_warns_of_nothing(admin):
    backed_up_by_two()
    lone = SmtpAccount.get(SmtpAccount.name == "Lone")
    response = admin.post(f"/accounts/{lone.id}/edit", data=edit_form(lone, enabled="no"))
    assert flashes(admin.get(response.headers["Location"]).get_data(as_text=True)) == [
        ("success", "Account “Lone” saved.")]
    admin.htmx("post", f"/accounts/{lone.id}/enable")
    response = admin.post(f"/accounts/{lone.id}/disable", data={"next": "/accounts/"})
    assert flashes(admin.get(response.headers["Location"]).get_data(as_text=True)) == [
        ("success", "Account “Lone” disabled.")]


def test_disabling_a_backup_from_its_row_warns_too(admin):
    main, other, spare = backed_up_by_two()
    response = admin.htmx("post", f"/accounts/{spare.id}/disable")
    assert flashes(response.get_data(as_text=True)) == [("success", "Account “Spare” disabled."),
                                                       ("warning", LEFT_TWO)]
    admin.htmx("post", f"/accounts/{spare.id}/enable")
    SmtpAccount.update(backup_account=None).where(SmtpAccount.id == other.id).execute()
    response = admin.post(f"/accounts/{spare.id}/disable", data={"next": "/accounts/"})
    assert flashes(admin.get(response.headers["Location"]).get_data(as_text=True)) == [
        ("success", "Account “Spare” disabled."),
        ("warning", "The account “Main” uses “Spare” as its backup: it has no backup while “Spare” is disabled.")]


def test_the_report_marks_an_account_whose_backup_is_disabled(admin):
    main, other, spare = backed_up_by_two()
    # Failing over when its backup was disabled: the claim ignores that backup, so the report does not say it.
    SmtpAccount.update(failover_until=utcnow() + timedelta(minutes=5)).where(SmtpAccount.id == main.id).execute()
    admin.post(f"/accounts/{spare.id}/disable")
    for url in ("/accounts/", "/accounts/print"):
        text = admin.get(url).get_data(as_text=True)
        for account in (main, other):
            assert re.search(r'<span class="badge badge-warn backup-disabled" title="Its backup account Spare is '
                             r'disabled: this account has no failover until that account is enabled again or another '
                             r'backup is chosen.">backup Spare disabled</span>', row(text, account))
        assert "failing-over" not in row(text, main)
        assert "backup-disabled" not in row(text, spare)
    # The row an action sends back says it too.
    assert "backup Spare disabled" in admin.htmx("post", f"/accounts/{other.id}/disable").get_data(as_text=True)
    admin.htmx("post", f"/accounts/{spare.id}/enable")
    text = admin.get("/accounts/").get_data(as_text=True)
    assert "backup-disabled" not in text
    assert "failing over to Spare" in row(text, main)


def test_deleting_a_backup_asks_naming_the_accounts_that_lose_it(admin):
    main, other, spare = backed_up_by_two()
    text = admin.get(f"/accounts/{spare.id}/edit").get_data(as_text=True)
    losing = ("The accounts “Main”, “Other” use this account as their backup: deleting it leaves them without a "
              "backup.")
    assert f'<p class="form-warning" id="delete-backup-warning">{losing}</p>' in text
    assert (f'data-confirm="Delete the account “Spare”? This cannot be undone. {losing}"') in text
    SmtpAccount.update(backup_account=None).where(SmtpAccount.id == other.id).execute()
    text = admin.get(f"/accounts/{spare.id}/edit").get_data(as_text=True)
    assert ("The account “Main” uses this account as its backup: deleting it leaves that account without a "
            "backup.") in text
    text = admin.get(f"/accounts/{other.id}/edit").get_data(as_text=True)
    assert "delete-backup-warning" not in text
    assert 'data-confirm="Delete the account “Other”? This cannot be undone."' in text


def test_deleting_a_backup_clears_it_on_the_accounts_naming_it_and_audits_each(admin):
    main, other, spare = backed_up_by_two()
    opened = admin.get(f"/accounts/{main.id}/edit").get_data(as_text=True)
    version = re.search(r'name="version" type="hidden" value="([^"]*)"', opened).group(1)
    response = admin.post(f"/accounts/{spare.id}/delete")
    assert response.status_code == 303
    assert flashes(admin.get(response.headers["Location"]).get_data(as_text=True)) == [
        ("success", "Account “Spare” deleted."),
        ("warning", "The accounts “Main”, “Other” have no backup any more.")]
    assert SmtpAccount.get_or_none(SmtpAccount.id == spare.id) is None
    assert [SmtpAccount.get_by_id(a.id).backup_account_id for a in (main, other)] == [None, None]
    entries = list(AuditEntry.select().where(AuditEntry.object_type == "smtp_account").order_by(AuditEntry.id))
    assert [(e.action, e.object_id, e.changes) for e in entries] == [
        ("update", main.id, {"backup_account": [spare.id, None]}),
        ("update", other.id, {"backup_account": [spare.id, None]}),
        ("delete", spare.id, entries[-1].changes)]
    # The form opened on Main before says Main changed, instead of saving its old backup back.
    response = admin.post(f"/accounts/{main.id}/edit", data=edit_form(main, version=version))
    assert response.status_code == 422
    assert "This account was changed by someone else" in response.get_data(as_text=True)


def test_a_refused_delete_leaves_the_backups_named(admin):
    main, other, spare = backed_up_by_two()
    make_notification("sent", account=spare)  # the delivery log still refers to it
    response = admin.post(f"/accounts/{spare.id}/delete")
    assert response.headers["Location"] == f"/accounts/{spare.id}/edit"
    assert [SmtpAccount.get_by_id(a.id).backup_account_id for a in (main, other)] == [spare.id, spare.id]
    assert not AuditEntry.select().where(AuditEntry.object_type == "smtp_account").exists()
