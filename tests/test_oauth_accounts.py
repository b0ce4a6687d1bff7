"""Accounts whose credential is of an OAuth 2.0 type, end to end against the real OAuth test server and aiosmtpd
taking XOAUTH2/OAUTHBEARER: saved through the vault, tested from the account's row, notifications queued through
the API delivered by the worker; the token endpoint's refusals explained and classed (permanent or retried), a
rotated refresh token stored encrypted, the loopback rule at save and send time, a secret typed for a test; and no
token or secret on a page, in a CSV, the audit log, the logs or the database in clear."""
import logging
import re

import pytest

from tests.support.dialog import dialog_of, facts_of, text_of
from tests.support.factories import summary_of
from tests.support.oauth import GRANT_TYPES, KINDS, make_oauth_credential, smtp_server_for, vault_form
from tests.support.outbox import account_for, drain, fast_worker
from tests.test_accounts_test_settings import field_error, server_form, try_settings
from tests.test_credentials import database_bytes, encodings
from tests.test_outbox_delivery import attempts_of, notify, reload
from webapp.mail import access_tokens
from webapp.mail.access_tokens import TOKENS
from webapp.mail.oauth import CLIENT_CREDENTIALS, JWT_BEARER, REFRESH_TOKEN
from webapp.models import ApiToken, AuditEntry, Credential, Notification, SmtpAccount
from webapp.outbox.message import reply_words

TEST_FORM = {"to": "rita@example.org", "subject": "Check", "body": "Hello", "next": "/accounts/"}
OBTAINED = ("obtained (expires in 59 min)", "obtained (expires in 60 min)")


@pytest.fixture
def loopback(app):
    """OAUTH_ALLOW_LOOPBACK on, as the tests' OAuth server (http://127.0.0.1) needs; off by default."""
    app.config["OAUTH_ALLOW_LOOPBACK"] = True


@pytest.fixture
def access_tokens_issued(monkeypatch) -> list[str]:
    """Every access token the token endpoint hands out in this test, to look for where it must not be."""
    issued = []
    real = access_tokens.token_from_answer
    monkeypatch.setattr(access_tokens, "token_from_answer",
                        lambda answer, host: issued.append(answer["access_token"]) or real(answer, host))
    return issued


def save_credential(admin, data) -> Credential:
    """Add the credential through the vault's form."""
    response = admin.post("/credentials/new", data=data)
    assert response.status_code == 303, field_errors(text_of(response))
    return Credential.get(Credential.name == data["name"])


def field_errors(html: str) -> list[str]:
    return re.findall(r'<small class="field-error"[^>]*>(.*?)</small>', html, re.S)


def sent_from_its_row(admin, account) -> str:
    """Open the account's Test Email dialog from its row and send: the dialog that comes back."""
    assert admin.htmx("get", f"/accounts/{account.id}/test").status_code == 200
    return dialog_of(text_of(admin.htmx("post", f"/accounts/{account.id}/test", data=TEST_FORM)))


def secrets_of(credential: Credential, service_account=None) -> list[str]:
    """The credential's secrets in clear, and the lines of its private key's PEM body."""
    found = [credential.reveal_secret(column) for column in ("client_secret_encrypted", "refresh_token_encrypted")]
    if service_account is not None:
        found += [line for line in service_account.info["private_key"].splitlines() if not line.startswith("-----")]
    return [value for value in found if value]


def everything_shown(admin, *urls) -> str:
    """What the screens and CSV files show an administrator: accounts, credentials, deliveries, the audit log."""
    pages = ("/accounts/", "/accounts/export.csv", "/credentials/", "/deliveries/", "/audit/", "/audit/export.csv",
             *urls)
    return "\n".join(text_of(admin.get(url)) for url in pages)


def assert_nowhere(secrets: list[str], app, admin, caplog, *shown, urls=()):
    """None of the secrets on a screen, in a CSV, the audit log, the logs, or the database file in clear."""
    screens = "\n".join([everything_shown(admin, *urls), *shown])
    data = database_bytes(app)
    audit = "\n".join(str(entry.changes) for entry in AuditEntry.select())
    for secret in secrets:
        assert secret not in screens and secret not in caplog.text and secret not in audit
        assert not any(form in data for form in encodings(secret))


# --- each credential type, from the dialog and through the worker ---------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_each_type_tests_from_its_row_and_delivers_through_the_worker(app, admin, client, oauth, smtp_server,
                                                                      service_account, loopback, kind, caplog,
                                                                      access_tokens_issued):
    caplog.set_level(logging.DEBUG)
    credential = save_credential(admin, vault_form(kind, oauth, service_account))
    server = smtp_server_for(smtp_server, oauth, kind)
    account = account_for(server, use_auth=True, credential=credential)

    dialog = sent_from_its_row(admin, account)
    assert "The server accepted the message" in dialog and facts_of(dialog)["Access token"] in OBTAINED

    _row, key = ApiToken.issue("monitoring", created_by=admin.user)
    response = client.post("/api/v1/notifications", json={"to": "ana@example.org", "subject": "Disk", "text": "91%"},
                           headers={"Authorization": f"Bearer {key}"}, csrf=False)
    assert response.status_code == 202
    drain(oauth_allow_loopback=True)

    notification = Notification.get_by_id(response.get_json()["id"])
    assert notification.status == "sent" and notification.attempts == 1
    assert [mailbox for _, mailbox in server.handler.logins] == [credential.username] * 2
    assert [received.message["Subject"] for received in server.received] == ["Check", "Disk"]
    # One token for both: the dialog's, from the process's cache, where the worker's lanes find it too.
    assert [request["grant_type"] for request in oauth.token_requests()] == [GRANT_TYPES[kind]]
    assert len(access_tokens_issued) == 1
    assert_nowhere([*access_tokens_issued, *secrets_of(credential, service_account if kind == JWT_BEARER else None)],
                   app, admin, caplog, dialog, urls=(f"/deliveries/{notification.id}",))


def test_invalid_client_is_explained_in_the_dialog(app, admin, oauth, smtp_server, loopback, caplog):
    caplog.set_level(logging.DEBUG)
    credential = save_credential(admin, vault_form(CLIENT_CREDENTIALS, oauth, client_secret="not-the-secret-0000"))
    server = smtp_server_for(smtp_server, oauth, CLIENT_CREDENTIALS)
    account = account_for(server, use_auth=True, credential=credential)

    dialog = sent_from_its_row(admin, account)

    assert "<strong>Step: access token</strong>" in dialog
    assert ("The token endpoint 127.0.0.1 did not accept the client ID or secret (HTTP 401, invalid_client: client "
            "authentication failed).") in dialog
    assert "Certificates &amp; secrets" in dialog and "Access token</dt>" not in dialog
    assert "AUTH" not in server.commands and server.received == []
    assert SmtpAccount.get_by_id(account.id).last_test_ok is False
    assert_nowhere(["not-the-secret-0000"], app, admin, caplog, dialog)


# --- the worker's failure classes ------------------------------------------------------------------------------

def test_a_revoked_refresh_token_fails_in_the_worker_at_once_and_marks_the_account(app, admin, oauth, smtp_server,
                                                                                  caplog):
    caplog.set_level(logging.DEBUG)
    credential = make_oauth_credential(REFRESH_TOKEN, oauth)
    oauth.revoke(credential.reveal_secret("refresh_token_encrypted"))  # the user removed the app's access
    server = smtp_server_for(smtp_server, oauth, REFRESH_TOKEN)
    account = account_for(server, use_auth=True, credential=credential, last_test_ok=True)
    batch = [notify(subject=f"n{n}") for n in range(3)]

    drain(oauth_allow_loopback=True)

    for notification in map(reload, batch):
        assert (notification.status, notification.attempts, notification.last_step) == ("failed", 1, "token")
        assert not attempts_of(notification)[0].transient
        assert "refused the refresh token: it was revoked or has expired" in reply_words(notification.last_reply)
    # One token request for the whole batch, and the mail server never asked to log in.
    assert [request["error"] for request in oauth.token_requests()] == ["invalid_grant"]
    assert "AUTH" not in server.commands and server.received == []
    account = SmtpAccount.get_by_id(account.id)
    assert account.last_test_ok is False
    assert summary_of(account).startswith("Delivery failed: access token: The token endpoint 127.0.0.1 refused the "
                                          "refresh token")
    page = text_of(admin.get(f"/deliveries/{batch[0].id}"))
    assert "access token" in page and "refused the refresh token: it was revoked or has expired" in page
    assert_nowhere(secrets_of(credential), app, admin, caplog, page)


def test_an_unavailable_token_endpoint_is_retried_and_the_account_left_alone(app, oauth, smtp_server):
    credential = make_oauth_credential(CLIENT_CREDENTIALS, oauth)
    server = smtp_server_for(smtp_server, oauth, CLIENT_CREDENTIALS)
    account = account_for(server, use_auth=True, credential=credential, last_test_ok=True)
    oauth.configure(token_failure={"status": 503, "error": "temporarily_unavailable"})
    notification = notify()

    worker = fast_worker(oauth_allow_loopback=True)
    try:
        worker.run_once()
    finally:
        worker.close()

    notification = reload(notification)
    assert (notification.status, notification.last_step) == ("retrying", "token")
    assert attempts_of(notification)[0].transient
    assert SmtpAccount.get_by_id(account.id).last_test_ok is True
    oauth.configure(token_failure=None)
    drain(oauth_allow_loopback=True)
    assert (reload(notification).status, reload(notification).attempts) == ("sent", 2)


# --- a rotated refresh token -----------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["dialog", "worker"])
def test_a_rotated_refresh_token_is_stored_encrypted_and_used_from_then_on(app, admin, oauth, smtp_server, loopback,
                                                                           where, caplog):
    caplog.set_level(logging.DEBUG)
    oauth.configure(rotate_refresh_tokens=True)  # as Microsoft does
    credential = save_credential(admin, vault_form(REFRESH_TOKEN, oauth))
    original = credential.reveal_secret("refresh_token_encrypted")
    account = account_for(smtp_server_for(smtp_server, oauth, REFRESH_TOKEN), use_auth=True, credential=credential)

    if where == "dialog":
        assert "The server accepted the message" in sent_from_its_row(admin, account)
    else:
        notify()
        drain(oauth_allow_loopback=True)

    stored = Credential.get_by_id(credential.id)
    rotated = stored.reveal_secret("refresh_token_encrypted")
    assert rotated != original and rotated not in stored.refresh_token_encrypted
    # Quietly: no audit entry says the credential changed (only its creation, and the test when there was one).
    assert [entry.action for entry in AuditEntry.select().where(AuditEntry.object_type == "credential")] == ["create"]
    assert stored.updated_at == credential.updated_at

    # The provider ends the old one; a process with an empty cache goes on with the stored one.
    oauth.revoke(original)
    TOKENS.clear()
    later = notify(subject="later")
    drain(oauth_allow_loopback=True)
    assert reload(later).status == "sent"
    newest = Credential.get_by_id(credential.id).reveal_secret("refresh_token_encrypted")
    assert_nowhere([original, rotated, newest], app, admin, caplog)


def test_a_rotated_refresh_token_does_not_replace_one_pasted_meanwhile(app, oauth):
    oauth.configure(rotate_refresh_tokens=True)
    credential = make_oauth_credential(REFRESH_TOKEN, oauth)
    grant = credential.oauth_grant()
    pasted = oauth.refresh_token()
    credential.set_secret(pasted, "refresh_token_encrypted")
    credential.save()
    Credential.store_rotated_refresh_token(grant, "rotated-for-the-old-one")
    assert Credential.get_by_id(credential.id).reveal_secret("refresh_token_encrypted") == pasted


# --- OAUTH_ALLOW_LOOPBACK off: the default ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_a_loopback_token_url_is_refused_when_saving(admin, oauth, service_account, kind):
    response = admin.post("/credentials/new", data=vault_form(kind, oauth, service_account))
    assert response.status_code == 422
    assert any("SMTPDESK_OAUTH_ALLOW_LOOPBACK" in error for error in field_errors(text_of(response)))
    assert Credential.select().count() == 0


def test_a_loopback_token_url_is_refused_when_sending(app, admin, oauth, smtp_server):
    credential = make_oauth_credential(CLIENT_CREDENTIALS, oauth)  # saved while the setting was on
    server = smtp_server_for(smtp_server, oauth, CLIENT_CREDENTIALS)
    account = account_for(server, use_auth=True, credential=credential)

    dialog = sent_from_its_row(admin, account)
    assert "<strong>Step: refused by policy</strong>" in dialog
    assert f"The credential&#39;s token URL {oauth.token_url} does not use https" in dialog
    assert "SMTPDESK_OAUTH_ALLOW_LOOPBACK" in dialog

    notification = notify()
    drain()  # the worker's setting is off too
    notification = reload(notification)
    assert (notification.status, notification.attempts, notification.last_step) == ("failed", 1, "policy")
    # Refused before any socket: the mail server never saw a connection, let alone EHLO or AUTH.
    assert oauth.token_requests() == [] and server.connections == 0


# --- "Test these settings" with a typed secret -----------------------------------------------------------------

def test_a_typed_client_secret_is_used_for_that_test_only(app, admin, oauth, smtp_server, loopback, caplog):
    caplog.set_level(logging.DEBUG)
    credential = make_oauth_credential(CLIENT_CREDENTIALS, oauth, client_secret="stored-and-wrong-0000")
    server = smtp_server_for(smtp_server, oauth, CLIENT_CREDENTIALS)
    typed = oauth.app_client.client_secret
    data = server_form(server, use_auth="yes", credential=str(credential.id), test_secret=typed)

    response = try_settings(admin, data)

    dialog = dialog_of(text_of(response))
    assert "The server accepted the message" in dialog and facts_of(dialog)["Access token"] in OBTAINED
    assert AuditEntry.get(AuditEntry.action == "test").changes["secret"] == "typed"
    assert Credential.get_by_id(credential.id).reveal_secret("client_secret_encrypted") == "stored-and-wrong-0000"
    assert_nowhere([typed], app, admin, caplog, text_of(response))


@pytest.mark.parametrize("kind", [REFRESH_TOKEN, JWT_BEARER])
def test_a_typed_secret_is_refused_for_a_refresh_token_or_a_service_account(admin, oauth, smtp_server, loopback,
                                                                           service_account, kind):
    credential = make_oauth_credential(kind, oauth, service_account)
    server = smtp_server_for(smtp_server, oauth, kind)
    data = server_form(server, use_auth="yes", credential=str(credential.id), test_secret="Typed-0000")

    response = try_settings(admin, data)

    assert response.status_code == 422
    assert "cannot be typed here" in field_error(text_of(response), "test_secret")
    assert oauth.token_requests() == [] and server.connections == 0


def test_stored_oauth_secrets_stay_with_saved_settings_without_advising_to_type_them(admin, oauth, smtp_server,
                                                                                     loopback):
    credential = make_oauth_credential(REFRESH_TOKEN, oauth)  # no saved account uses it yet
    server = smtp_server_for(smtp_server, oauth, REFRESH_TOKEN)
    data = server_form(server, use_auth="yes", credential=str(credential.id))

    response = try_settings(admin, data)

    html = text_of(response)
    assert response.status_code == 422
    assert field_error(html, "test_secret").startswith("The stored secrets of this credential go only with")
    assert "Type the secret" not in field_error(html, "test_secret")
    assert "refresh token or service account key cannot be typed for a test" in dialog_of(html)
    assert oauth.token_requests() == [] and server.connections == 0
