"""The account form's Advanced part (custom CA, HELO name) and "Test these settings" with unsaved values.

SECURITY.md items 6 (the stored secret never follows a changed host, port or security setting — Keycloak
#39486), 7 (allowed hosts), 19 (line breaks in the HELO name) and 25 (CSRF: no socket opened).
"""
import base64
import re

import pytest

from tests.support.dialog import dialog_of, text_of
from tests.support.factories import account_form, make_account, make_client, make_connector, make_credential
from webapp.models import AuditEntry, SmtpAccount

LOGIN = "mailer@example.com"
SECRET = "Tr0ub4dor&3-smtp"


def field_error(html: str, field: str) -> str:
    match = re.search(rf'<small class="field-error" id="{field}-error">(.*?)</small>', html, re.S)
    return match.group(1).strip() if match else ""


def server_form(server, **overrides) -> dict:
    """An account form pointing at a test server, with a test recipient."""
    fields = dict(host=server.host, port=str(server.port), secure="no", test_to="rita@example.org",
                  sender="Ops <ops@example.com>", return_path="bounces@example.com")
    if server.mode != "plain":
        fields.update(secure="yes", secure_type=server.mode)
    fields.update(overrides)
    return account_form(**fields)


def try_settings(client, data, account=None, htmx=True):
    url = "/accounts/test-settings" + (f"?account_id={account.id}" if account else "")
    if htmx:
        return client.htmx("post", url, data=data)
    return client.post(url, data=data)


def snapshot() -> list[dict]:
    return [a.audit_snapshot() for a in SmtpAccount.select().order_by(SmtpAccount.id)]


# --- The Advanced part of the form ------------------------------------------------------------------------


def test_the_advanced_part_is_collapsed_and_holds_the_ca_and_the_helo_name(admin):
    html = text_of(admin.get("/accounts/new"))
    advanced = re.search(r'<details class="advanced" >\s*<summary>Advanced</summary>.*?</details>', html, re.S)
    assert advanced, "a collapsed Advanced part"
    assert '<label for="ca_cert">Custom CA certificate (PEM)</label>' in advanced.group(0)
    assert '<label for="helo_name">HELO/EHLO name</label>' in advanced.group(0)


def test_the_ca_certificate_and_helo_name_are_saved_and_audited(admin, certificates):
    response = admin.post("/accounts/new", data=account_form(name="Private CA", ca_cert=certificates.ca_pem,
                                                             helo_name="Mailer.Example.com"))
    assert response.status_code == 303
    account = SmtpAccount.get(SmtpAccount.name == "Private CA")
    assert account.ca_cert.strip() == certificates.ca_pem.strip()
    assert account.helo_name == "mailer.example.com"
    entry = AuditEntry.get(AuditEntry.action == "create", AuditEntry.object_id == account.id)
    assert entry.changes["helo_name"] == [None, "mailer.example.com"]
    assert "BEGIN CERTIFICATE" in entry.changes["ca_cert"][1]
    # Editing shows them again, and clearing them stores nothing.
    html = text_of(admin.get(f"/accounts/{account.id}/edit"))
    assert "-----BEGIN CERTIFICATE-----" in html and 'value="mailer.example.com"' in html
    data = account_form(name="Private CA", ca_cert="", helo_name="", is_default="yes")  # the only account
    assert admin.post(f"/accounts/{account.id}/edit", data=data).status_code == 303
    account = SmtpAccount.get_by_id(account.id)
    assert account.ca_cert is None and account.helo_name is None
    entry = AuditEntry.select().where(AuditEntry.action == "update").order_by(AuditEntry.id.desc()).get()
    assert entry.changes["helo_name"] == ["mailer.example.com", None]


@pytest.mark.parametrize("field,value,error", [
    ("ca_cert", "not a certificate", "This is not a certificate in PEM form."),
    ("ca_cert", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
     "This is not a certificate in PEM form."),
    ("ca_cert", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "This contains a private key."),
    ("ca_cert", "x" * (64 * 1024 + 1), "The certificate is too large: at most 64 KB."),
    ("helo_name", "mail.example.com\r\nMAIL FROM:<x@y>", "Enter a host name"),
    ("helo_name", "two words", "Enter a host name"),
    ("helo_name", "h" * 256, "Use at most 255 characters."),
])
def test_a_wrong_ca_certificate_or_helo_name_is_a_field_error_and_opens_the_advanced_part(
        admin, field, value, error):
    response = admin.htmx("post", "/accounts/new", data=account_form(**{field: value}))
    assert response.status_code == 422
    html = text_of(response)
    assert error in field_error(html, field)
    assert '<details class="advanced" open>' in html
    assert SmtpAccount.select().count() == 0


# --- Test these settings ----------------------------------------------------------------------------------


def test_the_form_has_a_test_these_settings_button_that_works_with_and_without_javascript(admin):
    account = make_account()
    html = text_of(admin.get(f"/accounts/{account.id}/edit?next=/accounts/"))
    url = f"/accounts/test-settings?account_id={account.id}&amp;next=/accounts/"
    button = re.search(r'<button type="submit" class="secondary" formaction="([^"]+)"(.*?)>Test these settings'
                       r'</button>', html, re.S)
    assert button and button.group(1) == url
    assert f'hx-post="{url}"' in button.group(2) and 'hx-target="#test-dialog"' in button.group(2)
    assert 'hx-indicator="#settings-test-progress"' in button.group(2)
    assert '<label for="test_to">Send to</label>' in html
    assert '<div id="test-dialog" hidden></div>' in html


def test_unsaved_settings_are_tried_and_nothing_is_saved(admin, smtp_server):
    server = smtp_server("plain")
    before = snapshot()
    response = try_settings(admin, server_form(server, name="Not yet saved"))
    assert response.status_code == 200
    assert response.headers["HX-Retarget"] == "#test-dialog"
    html = text_of(response)
    dialog = dialog_of(html)
    assert "<html" not in html
    assert '<h2 id="test-dialog-title">Test Email - Account <em>Not yet saved</em></h2>' in dialog
    assert "Unsaved settings from the form: nothing was saved." in dialog
    assert '<span class="badge badge-ok">Sent</span>' in dialog
    assert "<code>250 2.0.0 Ok: queued as test1</code>" in dialog
    assert "<form method=\"post\"" not in dialog  # only the outcome: the form is the account form
    [received] = server.received
    assert received.mail_from == "bounces@example.com" and received.rcpt_tos == ["rita@example.org"]
    assert received.message["Subject"] == "TEST MESSAGE!"
    assert received.message.get_content().strip() == "ATTENTION: THIS IS A TEST MESSAGE!"
    assert snapshot() == before == []
    entry = AuditEntry.get(AuditEntry.action == "test")
    assert entry.object_type == "smtp_account" and entry.object_name == "Not yet saved"
    assert entry.object_id is None and entry.changes["settings"] == "unsaved" and entry.changes["ok"] is True


def test_the_test_message_is_in_the_users_language(app, smtp_server):
    client = make_client(app, "admin", language="pt_BR")
    server = smtp_server("plain")
    try_settings(client, server_form(server))
    message = server.received[0].message
    assert message["Subject"] == "MENSAGEM DE TESTE!"
    assert message.get_content().strip() == "ATENÇÃO: ESTA É UMA MENSAGEM DE TESTE!"


def test_editing_tries_the_new_values_and_leaves_the_saved_account_alone(admin, smtp_server):
    old, new = smtp_server("plain"), smtp_server("plain")
    account = make_account(name="Relay", host=old.host, port=old.port)
    before = snapshot()
    html = text_of(try_settings(admin, server_form(new, name="Relay renamed"), account))
    assert '<span class="badge badge-ok">Sent</span>' in html
    assert len(new.received) == 1 and old.connections == 0
    assert snapshot() == before
    assert SmtpAccount.get_by_id(account.id).last_test_at is None  # a test of unsaved values is not the account's
    entry = AuditEntry.get(AuditEntry.action == "test")
    assert entry.object_id == account.id and entry.object_name == "Relay"


def test_validation_errors_come_back_in_the_form_with_422(admin, smtp_server):
    server = smtp_server("plain")
    response = try_settings(admin, server_form(server, test_to="", sender="not an address"))
    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == "#account-form" and response.headers["HX-Reswap"] == "outerHTML"
    html = text_of(response)
    assert html.lstrip().startswith('<form id="account-form"')
    assert field_error(html, "test_to") == "This field is required."
    assert "Enter a valid e-mail address" in field_error(html, "sender")
    response = try_settings(admin, server_form(server, test_to="a@example.org, b@example.org"))
    assert field_error(text_of(response), "test_to") == "Enter exactly one address: a test goes to one recipient."
    assert server.connections == 0 and SmtpAccount.select().count() == 0


def test_without_javascript_the_form_page_comes_back_with_the_outcome(admin, smtp_server):
    server = smtp_server("plain")
    html = text_of(try_settings(admin, server_form(server, name="No JS"), htmx=False))
    assert "<html" in html and '<form id="account-form"' in html
    assert 'value="No JS"' in html  # the typed values are kept
    dialog = dialog_of(html)
    assert '<span class="badge badge-ok">Sent</span>' in dialog
    assert '<form method="dialog"' in dialog  # closing uncovers the form, no request needed
    assert SmtpAccount.select().count() == 0


def test_starttls_auth_and_a_custom_ca_before_saving(admin, smtp_server, certificates):
    server = smtp_server("starttls", users={LOGIN: SECRET})
    credential = make_credential(name="Relay login", username=LOGIN, secret=SECRET)
    # No saved account sends this credential anywhere yet: its secret is typed for the test.
    data = server_form(server, use_auth="yes", credential=str(credential.id), ca_cert=certificates.ca_pem,
                       test_secret=SECRET)
    html = text_of(try_settings(admin, data))
    dialog = dialog_of(html)
    assert '<span class="badge badge-ok">Sent</span>' in dialog and ">verified<" in dialog
    assert server.handler.logins[0][1] == LOGIN
    assert SECRET not in html and base64.b64encode(f"\0{LOGIN}\0{SECRET}".encode()).decode() not in html
    # Without the CA, the same settings fail at the certificate, before AUTH.
    server.handler.logins.clear()
    html = text_of(try_settings(admin, {**data, "ca_cert": ""}))
    assert "<strong>Step: certificate</strong>" in html and server.handler.logins == []


def test_the_stored_credential_does_not_follow_a_changed_port(admin, smtp_server, certificates):
    """SECURITY 6: same credential, other port → refused before any socket; the new server hears nothing."""
    saved_server = smtp_server("starttls", users={LOGIN: SECRET})
    other_server = smtp_server("starttls", users={LOGIN: SECRET})
    credential = make_credential(name="Relay login", username=LOGIN, secret=SECRET)
    account = make_account(name="Relay", host=saved_server.host, port=saved_server.port, secure=True,
                           secure_type="tls", use_auth=True, credential=credential, ca_cert=certificates.ca_pem)
    data = server_form(saved_server, name="Relay", use_auth="yes", credential=str(credential.id),
                       ca_cert=certificates.ca_pem)

    moved = {**data, "port": str(other_server.port)}
    html = text_of(try_settings(admin, moved, account))
    dialog = dialog_of(html)
    assert "<strong>Step: refused by policy</strong>" in dialog
    assert ("The saved credential Relay login is used only with the host, port, connector and security settings "
            "the account was saved with, and they were changed, so nothing was sent.") in dialog
    assert other_server.connections == 0 and other_server.handler.logins == [] and other_server.commands == []
    assert saved_server.connections == 0
    entry = AuditEntry.get(AuditEntry.action == "test")
    assert entry.changes["step"] == "policy" and entry.changes["ok"] is False

    # Turning certificate checks off is a changed security setting too.
    html = text_of(try_settings(admin, {**data, "ignore_cert_errors": "yes"}, account))
    assert "<strong>Step: refused by policy</strong>" in html and saved_server.connections == 0

    # Unchanged host, port and mode: the stored credential is used.
    html = text_of(try_settings(admin, data, account))
    assert '<span class="badge badge-ok">Sent</span>' in html
    assert saved_server.handler.logins[0][1] == LOGIN


def test_security_6_the_stored_credential_does_not_follow_a_changed_host(admin, smtp_server, certificates):
    server = smtp_server("plain", users={LOGIN: SECRET})
    credential = make_credential(name="Relay login", username=LOGIN, secret=SECRET)
    account = make_account(name="Relay", host="localhost", port=server.port, use_auth=True, credential=credential)
    data = server_form(server, name="Relay", host="127.0.0.1", use_auth="yes", credential=str(credential.id))
    html = text_of(try_settings(admin, data, account))
    assert "<strong>Step: refused by policy</strong>" in html
    assert server.connections == 0 and server.handler.logins == []


def test_the_stored_credential_does_not_follow_a_new_proxy_route(admin, smtp_server, socks5_proxy):
    """A proxy sees what passes through it: routing the saved login through another hop is a changed setting."""
    server = smtp_server("plain", users={LOGIN: SECRET})
    credential = make_credential(name="Relay login", username=LOGIN, secret=SECRET)
    account = make_account(name="Relay", host=server.host, port=server.port, use_auth=True, credential=credential)
    connector = make_connector(name="Elsewhere", host=socks5_proxy.host, port=socks5_proxy.port)
    data = server_form(server, name="Relay", use_auth="yes", credential=str(credential.id),
                       use_connector="yes", connector=str(connector.id))
    html = text_of(try_settings(admin, data, account))
    assert "<strong>Step: refused by policy</strong>" in html
    assert server.connections == 0 and server.handler.logins == []


def test_another_credential_a_saved_account_uses_with_the_new_settings_may_be_chosen(admin, smtp_server,
                                                                                      certificates):
    saved_server = smtp_server("starttls", users={LOGIN: SECRET})
    new_server = smtp_server("starttls", users={"other@example.com": "Other-s3cret"})
    stored = make_credential(name="Old login", username=LOGIN, secret=SECRET)
    other = make_credential(name="New login", username="other@example.com", secret="Other-s3cret",
                            allowed_hosts="127.0.0.1")
    account = make_account(name="Relay", host=saved_server.host, port=saved_server.port, secure=True,
                           secure_type="tls", use_auth=True, credential=stored)
    make_account(name="New relay", host=new_server.host, port=new_server.port, secure=True, secure_type="tls",
                 use_auth=True, credential=other, ca_cert=certificates.ca_pem)
    data = server_form(new_server, name="Relay", use_auth="yes", credential=str(other.id),
                       ca_cert=certificates.ca_pem)
    html = text_of(try_settings(admin, data, account))
    assert '<span class="badge badge-ok">Sent</span>' in html
    assert new_server.handler.logins == [(new_server.handler.logins[0][0], "other@example.com")]
    assert saved_server.connections == 0


def test_a_credential_not_allowed_for_the_host_is_a_field_error_and_nothing_is_sent(admin, smtp_server):
    """SECURITY 7 in the form: the credential's allowed hosts do not include the host."""
    server = smtp_server("plain", users={LOGIN: SECRET})
    credential = make_credential(name="Elsewhere", username=LOGIN, secret=SECRET, allowed_hosts="smtp.example.com")
    response = try_settings(admin, server_form(server, use_auth="yes", credential=str(credential.id)))
    assert response.status_code == 422
    assert "may not be sent to 127.0.0.1" in field_error(text_of(response), "credential")
    assert server.connections == 0


def test_operators_and_auditors_cannot_test_unsaved_settings(app, smtp_server):
    server = smtp_server("plain")
    for role in ("operator", "auditor"):
        client = make_client(app, role)
        assert try_settings(client, server_form(server)).status_code == 403
        assert try_settings(client, server_form(server), htmx=False).status_code == 403
    assert server.connections == 0


def test_without_the_csrf_token_no_socket_is_opened(admin, smtp_server):
    server = smtp_server("plain")
    response = admin.post("/accounts/test-settings", data=server_form(server), csrf=False)
    assert response.status_code == 400
    response = admin.post("/accounts/test-settings", data=server_form(server), csrf=False,
                          headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert server.connections == 0 and AuditEntry.select().where(AuditEntry.action == "test").count() == 0


def test_testing_a_missing_account_is_404(admin, smtp_server):
    server = smtp_server("plain")
    response = admin.htmx("post", "/accounts/test-settings?account_id=999", data=server_form(server))
    assert response.status_code == 404 and server.connections == 0


# --- A stored credential goes only where a saved account sends it (SECURITY 32) ---------------------------

MOVED = ("The stored secret of this credential goes only with the host, port, connector and security settings of a "
         "saved account that uses it. Type the secret here to test these settings, save the account first, or "
         "choose the settings of an account that uses it.")


@pytest.fixture
def relay(smtp_server, certificates):
    """A saved STARTTLS account logging in with a stored credential, and a plain-text server elsewhere that would
    take the same login in clear: (account, credential, saved server, other server)."""
    saved_server = smtp_server("starttls", users={LOGIN: SECRET})
    other_server = smtp_server("plain", users={LOGIN: SECRET})
    credential = make_credential(name="Relay login", username=LOGIN, secret=SECRET)
    account = make_account(name="Relay", host=saved_server.host, port=saved_server.port, secure=True,
                           secure_type="tls", use_auth=True, credential=credential, ca_cert=certificates.ca_pem)
    return account, credential, saved_server, other_server


def test_security_32_the_add_form_never_sends_a_stored_credential_to_new_settings(admin, relay):
    """Whatever account_id the client sends (none, an account without this credential, the account itself), the
    saved accounts decide, and the stored secret never goes in clear to the new port."""
    account, credential, saved_server, other_server = relay
    unrelated = make_account(name="Unrelated", host="127.0.0.1", port=other_server.port)
    data = server_form(other_server, name="Copy", use_auth="yes", credential=str(credential.id))
    for editing in (None, unrelated, account):
        response = try_settings(admin, data, editing)
        assert other_server.handler.logins == [], f"the stored secret went to the new port (editing {editing})"
        assert response.status_code == 422
        assert response.headers["HX-Retarget"] == "#account-form"
        html = text_of(response)
        assert field_error(html, "test_secret") == MOVED
        dialog = dialog_of(html)
        assert 'hx-swap-oob="true"' in dialog and "<strong>Step: refused by policy</strong>" in dialog
        assert SECRET not in html
    assert "no saved account uses these, so nothing was sent." in dialog_of(text_of(try_settings(admin, data)))
    assert other_server.connections == 0 and other_server.handler.logins == [] and other_server.commands == []
    assert saved_server.connections == 0
    steps = [entry.changes["step"] for entry in AuditEntry.select().where(AuditEntry.action == "test")]
    assert steps and set(steps) == {"policy"}
    assert SmtpAccount.select().count() == 2  # nothing saved


def test_security_32_without_javascript_the_refusal_is_the_form_with_its_field_error(admin, relay):
    account, credential, saved_server, other_server = relay
    data = server_form(other_server, name="Copy", use_auth="yes", credential=str(credential.id))
    response = try_settings(admin, data, htmx=False)
    assert response.status_code == 422
    html = text_of(response)
    assert "<html" in html and field_error(html, "test_secret") == MOVED
    assert "<strong>Step: refused by policy</strong>" in dialog_of(html)
    assert other_server.connections == 0 and other_server.handler.logins == []


def test_security_32_the_very_settings_of_a_saved_account_are_tested_with_its_stored_secret(admin, relay,
                                                                                           certificates):
    account, credential, saved_server, other_server = relay
    data = server_form(saved_server, name="Copy", use_auth="yes", credential=str(credential.id),
                       ca_cert=certificates.ca_pem)
    html = text_of(try_settings(admin, data))  # from the Add form: no account_id
    assert '<span class="badge badge-ok">Sent</span>' in html
    assert [login for _, login in saved_server.handler.logins] == [LOGIN]


def test_security_32_an_unsaved_change_is_tested_with_the_secret_typed_again(admin, relay):
    account, credential, saved_server, other_server = relay
    credential.set_secret("Stale-stored-secret")  # the typed secret is the one sent, not the stored one
    credential.save()
    data = server_form(other_server, name="Relay", use_auth="yes", credential=str(credential.id),
                       test_secret=SECRET)
    response = try_settings(admin, data, account)
    assert response.status_code == 200
    html = text_of(response)
    assert '<span class="badge badge-ok">Sent</span>' in html
    assert other_server.handler.logins == [(other_server.handler.logins[0][0], LOGIN)]
    assert SECRET not in html and base64.b64encode(f"\0{LOGIN}\0{SECRET}".encode()).decode() not in html
    entry = AuditEntry.get(AuditEntry.action == "test")
    assert entry.changes["secret"] == "typed" and SECRET not in str(entry.changes)
    assert saved_server.connections == 0


def test_the_secret_for_a_test_is_never_shown_again(admin, relay):
    account, credential, saved_server, other_server = relay
    data = server_form(other_server, name="Relay", use_auth="yes", credential=str(credential.id),
                       test_secret=SECRET, sender="not an address")
    response = try_settings(admin, data, account)
    assert response.status_code == 422
    html = text_of(response)
    assert SECRET not in html
    assert re.search(r'<input[^>]*id="test_secret"[^>]*type="password"', html)
    assert other_server.connections == 0
