"""The backup account (Conta de contingência) on the account form: its choices, the refusals (disabled, itself, a
circle), the audit and the CSV; the report's badge while an account fails over; the delivery's detail."""
import json
import re
from datetime import timedelta

import pytest

from tests.support.factories import account_form, make_account
from tests.test_accounts_form import field_error
from webapp.models import AuditEntry, Notification, SmtpAccount, utcnow
from webapp.outbox import send_notification

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


def test_a_deleted_backup_leaves_the_account_without_one(admin):
    main = make_account(name="Main", is_default=True)
    spare = make_account(name="Spare")
    SmtpAccount.update(backup_account=spare.id).where(SmtpAccount.id == main.id).execute()
    assert admin.post(f"/accounts/{spare.id}/delete").status_code in (302, 303)
    assert SmtpAccount.get_by_id(main.id).backup_account_id is None


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
