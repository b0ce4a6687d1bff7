"""The account and credential forms save only the columns they own: what a worker writes meanwhile (a test's outcome,
the failover state, a provider-rotated refresh token) is not put back to the value the form's request read."""
import re
from datetime import datetime, timedelta

import pytest

from tests.support.apps import elsewhere
from tests.support.factories import edit_form, make_account
from tests.support.oauth import oauth_form
from webapp.accounts.forms import AccountForm
from webapp.credentials.forms import CredentialForm
from webapp.models import AuditEntry, Credential, SmtpAccount
from webapp.vault import vault

UNTIL = datetime(2031, 5, 6, 7, 8, 9)


def version_in(response) -> str:
    """The version the edit page's form carries (the account's updated_at when it was opened)."""
    return re.search(r'name="version"[^>]*value="([^"]*)"', response.get_data(as_text=True)).group(1)


def worker_writes(app, account_id: int) -> None:
    """What the outbox and the test dialog write on an account, on a connection of their own, committed."""
    elsewhere(app, "UPDATE smtp_account SET last_test_ok = ?, last_test_summary = ?, failover_failures = ?, "
                   "failover_until = ?, auth_worked_with = ? WHERE id = ?",
              (False, "worker's summary", 3, UNTIL, "7:worked", account_id))


def assert_worker_values_kept(account_id: int) -> None:
    saved = SmtpAccount.get_by_id(account_id)
    assert (saved.last_test_ok, saved.last_test_summary) == (False, "worker's summary")
    assert (saved.failover_failures, saved.failover_until, saved.auth_worked_with) == (3, UNTIL, "7:worked")


def edit_account(admin, account: SmtpAccount, version: str, **changes):
    response = admin.post(f"/accounts/{account.id}/edit", data=edit_form(account, version=version, **changes))
    assert response.status_code == 303, response.get_data(as_text=True)


# --- The account form ------------------------------------------------------------------------------------------


def test_an_account_edit_keeps_what_a_worker_wrote_after_the_page_was_loaded(app, admin):
    make_account(is_default=True)
    account = make_account(name="relay", last_test_ok=True, last_test_summary="old summary")
    version = version_in(admin.get(f"/accounts/{account.id}/edit"))

    worker_writes(app, account.id)
    edit_account(admin, account, version, host="smtp2.example.com")

    assert SmtpAccount.get_by_id(account.id).host == "smtp2.example.com"
    assert_worker_values_kept(account.id)
    entry = AuditEntry.get(AuditEntry.action == "update")
    assert entry.changes == {"host": ["smtp.example.com", "smtp2.example.com"]}


# SQLite: the form's save holds the one write lock (BEGIN IMMEDIATE) from its read to its commit, so no worker can
# write in between; PostgreSQL's workers lock only the rows they write, and can.
@pytest.mark.engines("postgresql")
def test_an_account_edit_keeps_what_a_worker_wrote_while_it_was_being_saved(app, admin, monkeypatch):
    make_account(is_default=True)
    account = make_account(name="relay")
    version = version_in(admin.get(f"/accounts/{account.id}/edit"))
    apply_to = AccountForm.apply_to

    def worker_meanwhile(form, row):
        # The save read the row again under its lock already: a worker writes now, before the form's values go in.
        worker_writes(app, row.id)
        return apply_to(form, row)

    monkeypatch.setattr(AccountForm, "apply_to", worker_meanwhile)
    edit_account(admin, account, version, host="smtp2.example.com", is_default="no")

    assert SmtpAccount.get_by_id(account.id).host == "smtp2.example.com"
    assert_worker_values_kept(account.id)


def test_an_account_edited_into_the_default_keeps_the_worker_values_and_one_default(app, admin):
    first = make_account(is_default=True)
    account = make_account(name="relay")
    version = version_in(admin.get(f"/accounts/{account.id}/edit"))

    worker_writes(app, account.id)
    edit_account(admin, account, version, is_default="yes", helo_name="mail.example.com")

    saved = SmtpAccount.get_by_id(account.id)
    assert (saved.is_default, saved.helo_name) == (True, "mail.example.com")
    assert not SmtpAccount.get_by_id(first.id).is_default
    assert_worker_values_kept(account.id)


def test_an_edit_saved_by_someone_else_is_still_refused(app, admin):
    make_account(is_default=True)
    account = make_account(name="relay")
    version = version_in(admin.get(f"/accounts/{account.id}/edit"))
    SmtpAccount.update(name="renamed", updated_at=account.updated_at + timedelta(seconds=1)).where(
        SmtpAccount.id == account.id).execute()

    response = admin.post(f"/accounts/{account.id}/edit", data=edit_form(account, version=version, host="other"))

    assert response.status_code == 422
    assert (SmtpAccount.get_by_id(account.id).name, SmtpAccount.get_by_id(account.id).host) == \
        ("renamed", "smtp.example.com")


# --- The credential form ---------------------------------------------------------------------------------------


def refresh_credential(admin) -> Credential:
    data = oauth_form("oauth_refresh", name="gmail")
    assert admin.post("/credentials/new", data=data).status_code == 303
    return Credential.get(Credential.name == "gmail")


def credential_edit(credential: Credential, **changes) -> dict:
    """The edit form as the page fills it in: the stored settings, the secret fields left empty."""
    data = {"name": credential.name, "kind": credential.kind, "mailbox": credential.username,
            "token_url": credential.token_url, "authorization_url": credential.authorization_url,
            "client_id": credential.client_id, "scope": credential.scope, "description": credential.description,
            "allowed_hosts": credential.allowed_hosts}
    return {**data, **changes}


def rotate(app, credential_id: int, token: str) -> None:
    """What Credential.store_rotated_refresh_token() writes when the provider rotates the token, from another
    process: the new token encrypted, only while the credential still holds the one that was used."""
    held = Credential.get_by_id(credential_id).refresh_token_encrypted
    elsewhere(app, "UPDATE credential SET refresh_token_encrypted = ? WHERE id = ? AND refresh_token_encrypted = ?",
              (vault.encrypt(token), credential_id, held))


def rotate_while_saving(app, monkeypatch) -> None:
    """From now on, the sending path stores a rotated refresh token after the edit's request read the credential."""
    fill = CredentialForm.fill

    def rotated_meanwhile(form, row):
        rotate(app, row.id, "1//Rotated-Token-9000")
        return fill(form, row)

    monkeypatch.setattr(CredentialForm, "fill", rotated_meanwhile)


@pytest.mark.parametrize("when", ["after the page was loaded", "while the edit was being saved"])
def test_a_credential_edit_keeps_a_refresh_token_rotated_meanwhile(app, admin, monkeypatch, when):
    credential = refresh_credential(admin)
    if when == "after the page was loaded":
        assert admin.get(f"/credentials/{credential.id}/edit").status_code == 200
        rotate(app, credential.id, "1//Rotated-Token-9000")
    else:
        rotate_while_saving(app, monkeypatch)
    response = admin.post(f"/credentials/{credential.id}/edit",
                          data=credential_edit(credential, description="Gmail relay"))

    assert response.status_code == 303
    saved = Credential.get_by_id(credential.id)
    assert saved.description == "Gmail relay"
    assert saved.reveal_secret("refresh_token_encrypted") == "1//Rotated-Token-9000"
    assert AuditEntry.get(AuditEntry.action == "update").changes == {"description": ["", "Gmail relay"]}


def test_a_refresh_token_pasted_in_the_form_still_replaces_the_stored_one(app, admin, monkeypatch):
    credential = refresh_credential(admin)
    rotate_while_saving(app, monkeypatch)
    response = admin.post(f"/credentials/{credential.id}/edit",
                          data=credential_edit(credential, refresh_token="1//Pasted-Token-1234"))

    assert response.status_code == 303
    assert Credential.get_by_id(credential.id).reveal_secret("refresh_token_encrypted") == "1//Pasted-Token-1234"
    assert AuditEntry.get(AuditEntry.action == "update").changes == {"refresh_token_encrypted": "changed"}
