"""The Test Email dialog from the report row, against real aiosmtpd servers and a real SOCKS5 proxy.

DESIGN.md "Test configuration"; SECURITY.md items 5 (no secret after a 535), 7 (allowed hosts at send time),
23 (overlong input), 24 (markup escaped), 25 (CSRF, no socket opened) and 26 (roles).
"""
import base64
import json
import logging
import re
import threading
import time

import pytest

from tests.support.concurrency import close_connection
from tests.support.dialog import dialog_of, text_of
from tests.support.factories import make_account, make_client, make_connector, make_credential, summary_of
from webapp.models import AuditEntry, Setting, SmtpAccount
from webapp.outbox.settings import FOOTER_SETTING

LOGIN = "mailer@example.com"
SECRET = "Tr0ub4dor&3-smtp"
WRONG_SECRET = "Wr0ng-Secret-4471"


def secret_forms(secret: str, login: str = LOGIN) -> list[str]:
    """The secret as it could leak: clear, base64 alone (AUTH LOGIN), inside AUTH PLAIN's base64."""
    return [secret] + [base64.b64encode(raw.encode()).decode()
                       for raw in (secret, f"\0{login}\0{secret}", f"{login}\0{login}\0{secret}")]


def send(client, account, htmx=True, **fields):
    data = {"to": "Rita <rita@example.org>", "subject": "Quarterly check", "next": "/accounts/",
            "body": "First line.\nA line with a lone dot follows:\n.\nLast line — ção."}
    data.update(fields)
    if htmx:
        return client.htmx("post", f"/accounts/{account.id}/test", data=data)
    return client.post(f"/accounts/{account.id}/test", data=data)


def plain_account(server, **overrides) -> SmtpAccount:
    fields = dict(name="Plain relay", host=server.host, port=server.port, sender="Ops <ops@example.com>",
                  return_path="bounces@example.com")
    fields.update(overrides)
    return make_account(**fields)


def starttls_account(server, certificates, secret=SECRET, **overrides) -> SmtpAccount:
    credential = make_credential(name="Relay login", username=LOGIN, secret=secret)
    fields = dict(name="Submission", host=server.host, port=server.port, secure=True, secure_type="tls",
                  use_auth=True, credential=credential, ca_cert=certificates.ca_pem,
                  sender="Billing <billing@example.com>", return_path="bounces@example.com")
    fields.update(overrides)
    return make_account(**fields)


def audit_entries(account) -> list[AuditEntry]:
    return list(AuditEntry.select().where(AuditEntry.action == "test", AuditEntry.object_id == account.id))


# --- Opening the dialog ----------------------------------------------------------------------------------


def test_the_dialog_is_a_fragment_for_htmx_and_a_page_without_javascript(admin):
    account = make_account(name="Main")
    fragment = text_of(admin.htmx("get", f"/accounts/{account.id}/test?next=/accounts/%3Fname%3Dma"))
    assert "<html" not in fragment
    assert re.search(r'<dialog open id="test-dialog"[^>]*hx-target="this" hx-swap="outerHTML"', fragment)
    assert '<form method="dialog"' in fragment  # closes in place, no request, no page load
    assert f'hx-post="/accounts/{account.id}/test"' in fragment
    assert 'hx-indicator="#test-progress"' in fragment and 'hx-disabled-elt="find button[type=submit]"' in fragment
    assert '<input type="hidden" name="next" value="/accounts/?name=ma">' in fragment

    page = admin.get(f"/accounts/{account.id}/test")
    assert page.status_code == 200
    html = text_of(page)
    assert "<html" in html and '<dialog open id="test-dialog"' in html
    assert f'<form method="post" action="/accounts/{account.id}/test"' in html
    assert '<a href="/accounts/" role="button" class="secondary">Close</a>' in html  # back to the report


@pytest.mark.parametrize("language,title,labels,subject,message,button", [
    ("pt_BR", "Teste de E-mail - Conta", ("Enviar para", "Assunto", "Mensagem"), "MENSAGEM DE TESTE!",
     "ATENÇÃO: ESTA É UMA MENSAGEM DE TESTE!", "Enviar"),
    ("en", "Test Email - Account", ("Send to", "Subject", "Message"), "TEST MESSAGE!",
     "ATTENTION: THIS IS A TEST MESSAGE!", "Send"),
])
def test_the_defaults_and_labels_follow_the_language(app, language, title, labels, subject, message, button):
    client = make_client(app, "admin", language=language)
    account = make_account(name="Main")
    html = text_of(client.htmx("get", f"/accounts/{account.id}/test"))
    assert f'<h2 id="test-dialog-title">{title} <em>Main</em></h2>' in html
    for label, name in zip(labels, ("to", "subject", "body")):
        assert f'<label for="{name}">{label}</label>' in html
    assert re.search(r'<input [^>]*name="to"[^>]*value=""', html)
    assert f'value="{subject}"' in html
    assert re.search(rf"<textarea [^>]*>\s*{re.escape(message)}</textarea>", html)
    assert f'<button type="submit">{button}</button>' in html


def test_the_report_row_opens_the_dialog_in_place_or_as_a_page(admin):
    account = make_account(name="Main")
    html = text_of(admin.get("/accounts/?name=ma"))
    row = re.search(rf'<tr id="account-{account.id}".*?</tr>', html, re.S).group(0)
    opener = re.search(r'<form method="get" action="([^"]+)"([^>]*)>.*?</form>', row, re.S)
    assert opener.group(1) == f"/accounts/{account.id}/test"
    # htmx sends the form's fields too: next= comes along either way.
    assert f'hx-get="/accounts/{account.id}/test" hx-target="#test-dialog" hx-swap="outerHTML"' in opener.group(2)
    assert '<input type="hidden" name="next" value="/accounts/?name=ma">' in opener.group(0)
    assert ">Test configuration</button>" in opener.group(0)
    assert '<div id="test-dialog" hidden></div>' in html  # where the dialog lands, outside the swapped rows


def test_auditors_see_test_configuration_disabled_and_cannot_open_or_send(app):
    auditor = make_client(app, "auditor")
    account = make_account(name="Main")
    html = text_of(auditor.get("/accounts/"))
    button = re.search(r'<button [^>]*disabled\s+aria-describedby="(why-test-\d+)">Test configuration</button>', html)
    assert button, "the disabled button, described by the visible reason"
    assert (f'<small id="{button.group(1)}" class="why">Only operators and administrators can test an account.'
            f'</small>') in html
    assert f"/accounts/{account.id}/test" not in html
    assert auditor.get(f"/accounts/{account.id}/test").status_code == 403
    assert send(auditor, account).status_code == 403
    assert audit_entries(account) == []


def test_anonymous_visitors_are_sent_to_sign_in(client):
    account = make_account()
    assert client.get(f"/accounts/{account.id}/test").headers["Location"].startswith("/auth/login")
    response = client.htmx("post", f"/accounts/{account.id}/test", data={"to": "a@example.org"})
    assert response.status_code == 401 and response.headers["HX-Redirect"].startswith("/auth/login")


def test_a_missing_account_is_404(admin):
    assert admin.htmx("get", "/accounts/999/test").status_code == 404
    assert send(admin, SmtpAccount(id=999)).status_code == 404


def test_the_test_endpoint_only_accepts_get_and_post(admin):
    account = make_account()
    assert admin.put(f"/accounts/{account.id}/test").status_code == 405


# --- Sending for real --------------------------------------------------------------------------------------


def test_success_through_a_plain_server_delivers_the_message_and_updates_the_row(admin, smtp_server):
    server = smtp_server("plain")
    account = plain_account(server)
    started = time.monotonic()
    response = send(admin, account)
    assert response.status_code == 200
    html = text_of(response)

    # The message arrived as typed, from the account's sender, with the Return-Path as envelope sender.
    [received] = server.received
    assert received.mail_from == "bounces@example.com"
    assert received.rcpt_tos == ["rita@example.org"]
    message = received.message
    assert message["From"] == "Ops <ops@example.com>"
    assert message["To"] == "Rita <rita@example.org>"
    assert message["Subject"] == "Quarterly check"
    assert message["Date"] and message["Message-ID"].endswith("@example.com>")
    assert message.get_content().replace("\r\n", "\n") == "First line.\nA line with a lone dot follows:\n.\n" \
                                                           "Last line — ção.\n"

    # The dialog shows the success in place: final reply, elapsed time, TLS not used, the route.
    dialog = dialog_of(html)
    assert "<html" not in html
    assert '<span class="badge badge-ok">Sent</span>' in dialog
    ms = int(re.search(r"The server accepted the message in (\d+) ms.", dialog).group(1))
    assert 0 <= ms <= (time.monotonic() - started) * 1000 + 1
    assert "<code>250 2.0.0 Ok: queued as test1</code>" in dialog
    assert "<dt>TLS</dt><dd>not used</dd>" in dialog
    assert "<dt>Route</dt><dd>direct connection</dd>" in dialog
    assert "<summary>Details</summary>" in dialog
    assert re.search(r"<pre>.*C: mail FROM:&lt;bounces@example\.com&gt;.*</pre>", dialog, re.S | re.I)
    # Sent again with the same values.
    assert 'value="Rita &lt;rita@example.org&gt;"' in dialog and 'value="Quarterly check"' in dialog

    # The account keeps the result; its row comes back out of band.
    account = SmtpAccount.get_by_id(account.id)
    assert account.last_test_ok is True and account.last_test_at is not None
    assert summary_of(account) == "250 2.0.0 Ok: queued as test1"
    assert account.last_tls_verified is None
    oob = re.search(r"<template>\s*<tr id=\"account-(\d+)\" hx-swap-oob=\"true\".*?</tr>\s*</template>", html, re.S)
    assert oob and int(oob.group(1)) == account.id
    assert '<span class="badge badge-ok">OK</span>' in oob.group(0) and "250 2.0.0 Ok: queued as test1" in oob.group(0)

    # One audit line: the outcome, never the message.
    [entry] = audit_entries(account)
    assert entry.actor_name == admin.user.username and entry.object_type == "smtp_account"
    assert entry.changes == {"ok": True, "step": None, "code": 250, "to": "Rita <rita@example.org>", "tls": "none"}
    assert "Quarterly" not in entry.changes_json and "First line" not in entry.changes_json


@pytest.mark.parametrize("receipt_and_footer", [True, False], ids=["receipt-and-footer", "neither"])
def test_the_test_message_carries_the_accounts_reply_to_receipt_and_footer_and_says_so(
        admin, smtp_server, receipt_and_footer):
    server = smtp_server("plain")
    Setting.set_value(FOOTER_SETTING, "Sent by the ops desk — do not reply.")
    account = plain_account(server, reply_to="Help desk <help@example.com>", confirmation_email="receipts@example.com",
                            read_confirmation=receipt_and_footer, footer_enabled=receipt_and_footer)

    dialog = dialog_of(text_of(send(admin, account)))

    [received] = server.received
    message = received.message
    assert message["Reply-To"] == "Help desk <help@example.com>"
    body = message.get_content()
    if receipt_and_footer:
        assert message["Disposition-Notification-To"] == "receipts@example.com"
        assert "Sent by the ops desk — do not reply." in body and body.startswith("First line.")
        assert ("<dt>From the account</dt>\n        <dd>Reply-To: Help desk &lt;help@example.com&gt;; read "
                "confirmation asked, to receipts@example.com; the system footer appended</dd>") in dialog
    else:
        assert message["Disposition-Notification-To"] is None
        assert "ops desk" not in body
        assert ("<dt>From the account</dt>\n        <dd>Reply-To: Help desk &lt;help@example.com&gt;</dd>"
                in dialog)


def test_success_through_starttls_with_auth_verified_by_the_custom_ca(admin, smtp_server, certificates):
    server = smtp_server("starttls", users={LOGIN: SECRET})
    account = starttls_account(server, certificates)
    html = text_of(send(admin, account, to="ops@example.org", subject="TLS check", body="Over TLS."))
    dialog = dialog_of(html)
    assert '<span class="badge badge-ok">Sent</span>' in dialog
    assert '<dt>TLS</dt><dd><span class="badge badge-ok">verified</span></dd>' in dialog
    assert server.handler.logins and server.handler.logins[0][1] == LOGIN
    assert server.commands.index("STARTTLS") < server.commands.index("AUTH") < server.commands.index("MAIL")
    [received] = server.received
    assert received.mail_from == "bounces@example.com" and received.rcpt_tos == ["ops@example.org"]
    assert received.message["From"] == "Billing <billing@example.com>"
    assert received.message["Subject"] == "TLS check"
    assert received.message.get_content().strip() == "Over TLS."
    account = SmtpAccount.get_by_id(account.id)
    assert account.last_test_ok and account.last_tls_verified is True
    for leaked in secret_forms(SECRET):
        assert leaked not in html
    # The row now says the last test verified TLS.
    assert "TLS verified" in text_of(admin.get("/accounts/"))


def test_security_12_ignoring_certificate_errors_sends_and_says_tls_was_not_verified(admin, smtp_server, certificates):
    server = smtp_server("starttls", cert="self_signed", users={LOGIN: SECRET})
    account = starttls_account(server, certificates, ca_cert=None, ignore_cert_errors=True)
    dialog = dialog_of(text_of(send(admin, account)))
    assert '<span class="badge badge-ok">Sent</span>' in dialog
    assert "encrypted, certificate not verified" in dialog
    assert SmtpAccount.get_by_id(account.id).last_tls_verified is False


def test_security_5_a_wrong_secret_is_explained_and_never_shown_logged_or_stored(
        admin, smtp_server, certificates, caplog):
    """SECURITY 5: after a 535, no password nor its AUTH base64 in the dialog, audit, summary or logs."""
    caplog.set_level(logging.DEBUG)
    server = smtp_server("starttls", users={LOGIN: SECRET})
    account = starttls_account(server, certificates, secret=WRONG_SECRET)
    response = send(admin, account)
    assert response.status_code == 200
    html = text_of(response)
    dialog = dialog_of(html)
    assert '<span class="badge badge-bad">Failed</span>' in dialog
    assert "<strong>Step: authentication</strong>" in dialog
    assert "permanent — fix the settings" in dialog
    assert "127.0.0.1 rejected the username or secret." in dialog
    assert "Check the credential (username and secret) chosen for this account." in dialog
    assert re.search(r"Server reply: <code>535 5\.7\.8 Authentication credentials invalid</code>", dialog)
    assert "C: AUTH PLAIN ********" in dialog or "C: AUTH LOGIN" in dialog  # the transcript, scrubbed
    assert server.received == [] and "MAIL" not in server.commands

    account = SmtpAccount.get_by_id(account.id)
    assert account.last_test_ok is False
    assert summary_of(account) == "authentication: 535 5.7.8 Authentication credentials invalid"
    [entry] = audit_entries(account)
    assert entry.changes["ok"] is False and entry.changes["step"] == "auth" and entry.changes["code"] == 535
    # The test server's own protocol log (logger "mail.log") sees the AUTH line, as any server would.
    app_logs = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail.log"))
    for leaked in secret_forms(WRONG_SECRET):
        assert leaked not in html
        assert leaked not in entry.changes_json
        assert leaked not in account.last_test_summary
        assert leaked not in app_logs
    report = text_of(admin.get("/accounts/")) + text_of(admin.get("/audit/"))
    assert not any(leaked in report for leaked in secret_forms(WRONG_SECRET))


def test_a_self_signed_certificate_is_explained_and_nothing_is_sent(admin, smtp_server, certificates):
    server = smtp_server("starttls", cert="self_signed", users={LOGIN: SECRET})
    account = starttls_account(server, certificates)  # trusts the test CA, which did not sign this certificate
    dialog = dialog_of(text_of(send(admin, account)))
    assert "<strong>Step: certificate</strong>" in dialog
    assert "The certificate of 127.0.0.1 was not accepted: the certificate is self-signed." in dialog
    assert "permanent — fix the settings" in dialog
    assert "AUTH" not in server.commands and server.received == []
    assert summary_of(account).startswith("certificate: ")


def test_a_refused_recipient_shows_the_step_and_the_server_reply(admin, smtp_server):
    server = smtp_server("plain", replies={"RCPT": "550 5.1.1 no such user"})
    account = plain_account(server)
    dialog = dialog_of(text_of(send(admin, account, to="nobody@example.org")))
    assert "<strong>Step: recipient refused</strong>" in dialog
    assert "The server refused the recipient nobody@example.org." in dialog
    assert "Server reply: <code>550 5.1.1 no such user</code>" in dialog
    assert "permanent — fix the settings" in dialog
    assert summary_of(account) == "recipient refused: 550 5.1.1 no such user"


def test_security_41_a_relay_that_wants_a_login_says_so_instead_of_blaming_the_recipient(app, smtp_server):
    # What Postfix answers a client that did not log in (smtpd_recipient_restrictions = permit_sasl_authenticated,
    # reject), to an account with authentication off.
    server = smtp_server("plain", replies={"RCPT": "554 5.7.1 <rita@example.org>: Client host rejected: Access denied"})
    account = plain_account(server)
    for language, words in [
        ("en", ("The server refused the recipient rita@example.org: the relay probably requires authentication, "
                "and this account does not log in.",
                "Turn on authentication for this account and choose the relay&#39;s credential")),
        ("pt_BR", ("O servidor recusou o destinatário rita@example.org: o relay provavelmente exige autenticação, "
                   "e esta conta não usa autenticação.",
                   "Ative a autenticação nesta conta e escolha a credencial do relay")),
    ]:
        client = make_client(app, "admin", language=language)
        dialog = dialog_of(text_of(send(client, account, to="rita@example.org")))
        assert all(text in dialog for text in words), dialog
        assert "Server reply: <code>554 5.7.1" in dialog or "Resposta do servidor: <code>554 5.7.1" in dialog


def test_a_temporary_refusal_says_it_may_work_later(admin, smtp_server):
    server = smtp_server("plain", replies={"MAIL": "451 4.3.0 try later"})
    dialog = dialog_of(text_of(send(admin, plain_account(server))))
    assert "<strong>Step: sender refused</strong>" in dialog
    assert "temporary — may work later" in dialog


def test_a_silent_server_times_out_within_the_deadline(app, admin, silent_server):
    app.config.update(SMTP_TIMEOUT=1, SMTP_DEADLINE=2)
    host, port = silent_server
    account = make_account(host=host, port=port)
    started = time.monotonic()
    dialog = dialog_of(text_of(send(admin, account)))
    assert time.monotonic() - started < 3.5
    assert "<strong>Step: timeout</strong>" in dialog
    assert "temporary — may work later" in dialog
    assert "sent no greeting within 1 seconds" in dialog or "within the overall limit of 2 seconds" in dialog


def test_a_closed_port_is_a_connection_failure(admin, closed_port):
    account = make_account(host="127.0.0.1", port=closed_port)
    dialog = dialog_of(text_of(send(admin, account)))
    assert "<strong>Step: connection</strong>" in dialog
    assert f"127.0.0.1 refused the connection on port {closed_port}." in dialog


def test_the_dialog_goes_through_the_accounts_connector(admin, smtp_server, socks5_proxy):
    server = smtp_server("plain")
    connector = make_connector(name="Office SOCKS", kind="socks5", host=socks5_proxy.host, port=socks5_proxy.port)
    account = plain_account(server, use_connector=True, connector=connector)
    dialog = dialog_of(text_of(send(admin, account)))
    assert '<span class="badge badge-ok">Sent</span>' in dialog
    assert "<dt>Route</dt><dd>network connector Office SOCKS</dd>" in dialog
    assert "through the connector socks5 127.0.0.1" in dialog  # the transcript says so
    assert len(server.received) == 1


def test_a_disabled_account_may_still_be_tested(admin, smtp_server):
    server = smtp_server("plain")
    account = plain_account(server, enabled=False)
    assert '<span class="badge badge-ok">Sent</span>' in text_of(send(admin, account))


def test_operators_may_test(app, smtp_server):
    operator = make_client(app, "operator")
    server = smtp_server("plain")
    account = plain_account(server)
    html = text_of(operator.get("/accounts/"))
    assert f'hx-get="/accounts/{account.id}/test' in html
    assert operator.htmx("get", f"/accounts/{account.id}/test").status_code == 200
    assert '<span class="badge badge-ok">Sent</span>' in text_of(send(operator, account))
    assert audit_entries(account)[0].actor_name == operator.user.username


def test_without_javascript_the_outcome_is_a_whole_page(admin, smtp_server):
    server = smtp_server("plain")
    account = plain_account(server)
    html = text_of(send(admin, account, htmx=False))
    assert "<html" in html and '<span class="badge badge-ok">Sent</span>' in html
    assert "hx-swap-oob" not in html


# --- Refused before any socket ----------------------------------------------------------------------------


def test_without_the_csrf_token_nothing_is_sent(admin, smtp_server):
    server = smtp_server("plain")
    account = plain_account(server)
    for headers in ({}, {"HX-Request": "true"}):
        response = admin.post(f"/accounts/{account.id}/test", data={"to": "a@example.org", "subject": "s",
                                                                     "body": "b"}, headers=headers, csrf=False)
        assert response.status_code == 400
    assert server.connections == 0 and server.commands == []
    assert audit_entries(account) == []
    assert SmtpAccount.get_by_id(account.id).last_test_at is None


def test_security_7_a_credential_not_allowed_for_the_host_is_refused_at_send_time(admin, smtp_server, certificates):
    """SECURITY 7: the allowed hosts changed after the account was saved; the secret is not sent."""
    server = smtp_server("starttls", users={LOGIN: SECRET})
    account = starttls_account(server, certificates)
    account.credential.allowed_hosts = "smtp.example.com\n*.example.net"
    account.credential.save()
    dialog = dialog_of(text_of(send(admin, account)))
    assert "<strong>Step: refused by policy</strong>" in dialog
    assert "The credential Relay login may not be sent to 127.0.0.1: its allowed hosts do not include it." in dialog
    assert server.connections == 0
    entry = audit_entries(account)[0]
    assert entry.changes["ok"] is False and entry.changes["step"] == "policy"


def test_a_connector_that_is_not_there_is_refused_and_nothing_goes_direct(admin, smtp_server):
    server = smtp_server("plain")
    account = plain_account(server, use_connector=True, connector=None)
    dialog = dialog_of(text_of(send(admin, account)))
    assert "<strong>Step: refused by policy</strong>" in dialog
    assert "it names none and no system default connector is set" in dialog
    assert server.connections == 0


# --- What the dialog accepts ------------------------------------------------------------------------------


@pytest.mark.parametrize("fields,field,error", [
    ({"to": ""}, "to", "This field is required."),
    ({"to": "a@example.org, b@example.org"}, "to", "Enter exactly one address: a test goes to one recipient."),
    ({"to": "a@example.org; b@example.org"}, "to", "Enter exactly one address: a test goes to one recipient."),
    ({"to": "a@b@c"}, "to", "Enter exactly one address: a test goes to one recipient."),
    ({"to": "rita@example.org\r\nBcc: x@example.org"}, "to", "Line breaks and control characters"),
    ({"to": "to@"}, "to", "Enter a valid e-mail address"),
    ({"to": "x" * 250 + "@example.org"}, "to", "This address is too long."),
    ({"subject": ""}, "subject", "This field is required."),
    ({"subject": "Hi\r\nBcc: x@example.org"}, "subject", "Line breaks and control characters"),
    ({"subject": "s" * 999}, "subject", "Use at most 998 characters."),
    ({"body": "   "}, "body", "This field is required."),
    ({"body": "x" * (100 * 1024 + 1)}, "body", "The message is too long: at most 100 KB."),
    ({"body": "nul \x00 byte"}, "body", "Control characters are not allowed in the message."),
])
def test_invalid_fields_answer_422_with_the_dialog_and_nothing_is_sent(admin, smtp_server, fields, field, error):
    server = smtp_server("plain")
    account = plain_account(server)
    response = send(admin, account, **fields)
    assert response.status_code == 422
    html = text_of(response)
    assert "<html" not in html
    assert error in re.search(rf'<small class="field-error" id="{field}-error">(.*?)</small>', html, re.S).group(1)
    assert server.connections == 0 and audit_entries(account) == []


def test_a_megabyte_subject_and_ten_thousand_recipients_get_clear_errors(admin, smtp_server):
    """SECURITY 23: bounded input, exactly one recipient."""
    server = smtp_server("plain")
    account = plain_account(server)
    html = text_of(send(admin, account, subject="S" * 1024 * 1024))
    assert "Use at most 998 characters." in html
    many = ", ".join(f"user{n}@example.org" for n in range(10_000))
    html = text_of(send(admin, account, to=many))
    assert "Enter exactly one address: a test goes to one recipient." in html
    response = admin.htmx("post", f"/accounts/{account.id}/test",
                          data={"to": [f"user{n}@example.org" for n in range(10_000)], "subject": "s", "body": "b"})
    assert response.status_code == 422
    assert "Enter exactly one address: a test goes to one recipient." in text_of(response)
    assert server.connections == 0


def test_a_request_over_two_megabytes_is_refused_with_a_friendly_message(admin, smtp_server):
    server = smtp_server("plain")
    account = plain_account(server)
    response = send(admin, account, htmx=False, body="x" * (3 * 1024 * 1024))
    assert response.status_code == 413
    assert "What was sent is too large (at most 2 MB). Shorten it and try again." in text_of(response)
    assert server.connections == 0


def test_markup_in_the_account_name_and_result_is_escaped_in_the_dialog(admin, smtp_server):
    """SECURITY 24."""
    server = smtp_server("plain", replies={"RCPT": '550 5.1.1 <script>alert(1)</script>"><img onerror=x>'})
    account = plain_account(server, name='<script>alert("name")</script>',
                            last_test_summary='"><img src=x onerror=alert(1)>')
    html = text_of(admin.htmx("get", f"/accounts/{account.id}/test"))
    assert "<script>" not in html and "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;" in html
    html = text_of(send(admin, account))
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_audit_log_reads_the_test(admin, smtp_server):
    server = smtp_server("plain")
    send(admin, plain_account(server))
    html = text_of(admin.get("/audit/?action=test"))
    assert "tested" in html and "Plain relay" in html
    entry = AuditEntry.get(AuditEntry.action == "test")
    assert json.loads(entry.changes_json)["ok"] is True


def test_a_test_dialog_waiting_on_a_slow_server_holds_up_no_other_request(app, smtp_server):
    server = smtp_server("plain", stall={"DATA": 1})  # within the tests' 2 s SMTP timeout
    account = make_account(name="Slow relay", host=server.host, port=server.port)
    tester, viewer = make_client(app, "admin"), make_client(app, "auditor")
    finished = {}

    def test_dialog():
        try:
            response = tester.htmx("post", f"/accounts/{account.id}/test", data={
                "to": "rita@example.org", "subject": "Check", "body": "Hello.", "next": "/accounts/"})
            finished["dialog"] = (time.monotonic(), response.status_code)
        finally:
            close_connection()

    dialog = threading.Thread(target=test_dialog)
    dialog.start()
    while not server.handler.connections:  # the dialog has reached the server, and waits on it
        time.sleep(0.01)
    report = viewer.get("/accounts/")
    finished["report"] = time.monotonic()
    dialog.join()
    assert report.status_code == 200 and "Slow relay" in report.text
    assert finished["dialog"][1] == 200 and len(server.received) == 1
    assert finished["report"] < finished["dialog"][0]
