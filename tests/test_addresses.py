"""Addresses people really use (SECURITY 42), wherever an address is typed and on the wire.

Internal and special-use domains (`corp.local` of Active Directory, `localhost`, `.internal`, `.lan`, `.test`) and
local parts beyond ASCII (`usuário@`) are accepted by the account form, the test dialog, the API and the schedules.
A local part beyond ASCII goes with SMTPUTF8 (RFC 6531: MAIL FROM ... SMTPUTF8, UTF-8 headers as RFC 6532 allows)
where the relay offers it, and where it does not, the send is refused before MAIL, naming the address. Domains go
as IDNA 2008 A-labels, as the validator reads them.
"""
import email
import email.policy
import json
import re

import pytest

from tests.support.dialog import dialog_of, text_of
from tests.support.factories import account_form, make_account
from tests.support.outbox import account_for, drain
from webapp.mail.addresses import AddressError, check_address
from webapp.models import ApiToken, Notification, ScheduledReport, SmtpAccount
from webapp.outbox import send_notification
from webapp.outbox.message import reply_words

INTERNAL = ["ops@corp.local", "x@host.test", "ops@localhost", "alerts@mail.internal", "nas@home.lan",
            "ops@mailhost"]
UTF8_LOCAL = ["usuário@example.com", "joão.araújo@exemplo.com.br", "δοκιμή@παράδειγμα.δοκιμή"]
ACCEPTED = INTERNAL + UTF8_LOCAL
SENT = '<span class="badge badge-ok">Sent</span>'  # the test dialog's success


def parsed(content: bytes) -> email.message.EmailMessage:
    """A received message read as an RFC 6532 reader does: UTF-8 text (the stdlib's bytes parser would read its
    headers as ASCII)."""
    return email.message_from_string(content.decode("utf-8"), policy=email.policy.SMTPUTF8)


# --- Accepted wherever an address is typed ------------------------------------------------------------------


@pytest.mark.parametrize("address", ACCEPTED)
def test_security_42_internal_domains_and_utf8_local_parts_are_addresses(address):
    assert check_address(address) == address
    assert check_address(f"Ops Desk <{address}>") == f"Ops Desk <{address}>"


@pytest.mark.parametrize("address", ["ops@site.invalid", "ops@abc.onion", "ops@1.0.0.127.in-addr.arpa"])
def test_names_reserved_to_never_receive_mail_are_still_refused(address):
    """RFC 6761 .invalid never resolves, RFC 7686 .onion is Tor's, .arpa is DNS infrastructure."""
    with pytest.raises(AddressError):
        check_address(address)


@pytest.mark.parametrize("character", ["\u2028", "\u2029", "\x85", "\u200b", "\u202e", "\ufeff", "\xa0", "\ud800"])
def test_a_local_part_beyond_ascii_holds_no_separator_or_invisible_character(character):
    """Raw UTF-8 in a header under SMTPUTF8: a line separator or a direction override there would be the worst."""
    with pytest.raises(AddressError):
        check_address(f"jo{character}ão@example.com")


def test_a_local_part_is_kept_in_nfc_and_the_length_counts_its_utf8_bytes():
    assert check_address("jose\u0301@example.com") == "jos\u00e9@example.com"  # composed é, as a server compares
    # 254 octets on the wire: 137 characters, but 262 octets.
    with pytest.raises(AddressError):
        check_address("é" * 125 + "@example.com")


@pytest.mark.parametrize("address", ACCEPTED)
def test_security_42_the_account_form_accepts_them_in_every_address_field(admin, address):
    response = admin.post("/accounts/new", data=account_form(
        name="internal", sender=f"Ops <{address}>", reply_to=address, return_path=address,
        confirmation_email=address))
    assert response.status_code == 303, text_of(response)[:3000]
    account = SmtpAccount.get(SmtpAccount.name == "internal")
    assert (account.sender, account.reply_to, account.return_path, account.confirmation_email) == (
        f"Ops <{address}>", address, address, address)


def test_security_42_the_api_accepts_them_in_every_address_field(client, admin):
    make_account(name="Main", is_default=True)
    _row, token = ApiToken.issue("internal services", created_by=admin.user)
    body = {"to": INTERNAL[:3], "cc": [f"Zé <{UTF8_LOCAL[0]}>"], "bcc": [UTF8_LOCAL[1]], "reply_to": INTERNAL[3],
            "return_path": UTF8_LOCAL[2], "confirmation_email": INTERNAL[4], "subject": "Backup", "text": "Done."}
    response = client.post("/api/v1/notifications", data=json.dumps(body), content_type="application/json",
                           headers={"Authorization": f"Bearer {token}"}, csrf=False)
    assert response.status_code == 202, response.get_json()
    notification = Notification.get()
    assert notification.to_list == INTERNAL[:3]
    assert notification.cc_list == [f"Zé <{UTF8_LOCAL[0]}>"] and notification.bcc_list == [UTF8_LOCAL[1]]
    assert (notification.reply_to, notification.return_path, notification.confirmation_email) == (
        INTERNAL[3], UTF8_LOCAL[2], INTERNAL[4])


def test_security_42_schedules_accept_them(admin):
    response = admin.post("/schedules/new", data={"recipients": "\n".join(ACCEPTED), "frequency": "daily",
                                                  "first_run": "2099-01-01T07:00", "filters": ""})
    assert response.status_code == 303, text_of(response)[:3000]
    assert ScheduledReport.get().recipient_list == ACCEPTED


# --- SMTPUTF8 through the test dialog -------------------------------------------------------------------------


def dialog_send(admin, account, to):
    data = {"to": to, "subject": "Teste de endereços", "body": "Atenção: teste.", "next": "/accounts/"}
    return dialog_of(text_of(admin.htmx("post", f"/accounts/{account.id}/test", data=data)))


def relay_account(server, **overrides) -> SmtpAccount:
    fields = dict(name="Relay", host=server.host, port=server.port, sender="Operações <ops@corp.local>",
                  return_path="bounces@corp.local")
    return make_account(**{**fields, **overrides})


@pytest.mark.parametrize("to", INTERNAL)
def test_security_42_the_test_dialog_delivers_to_internal_domains(admin, smtp_server, to):
    server = smtp_server("plain")
    dialog = dialog_send(admin, relay_account(server), f"Ops <{to}>")
    assert SENT in dialog, dialog
    (received,) = server.received
    assert (received.mail_from, received.rcpt_tos) == ("bounces@corp.local", [to])
    assert "SMTPUTF8" not in received.mail_options  # plain ASCII needs nothing more
    assert parsed(received.content)["To"].addresses[0].addr_spec == to


def test_security_42_the_test_dialog_sends_utf8_local_parts_with_smtputf8(admin, smtp_server):
    server = smtp_server("plain", smtputf8=True)
    account = relay_account(server, sender="Operações <usuário@exemplo.com.br>",
                            return_path="devoluções@exemplo.com.br")
    dialog = dialog_send(admin, account, "Zé <zé@bücher.example>")
    assert SENT in dialog, dialog
    assert re.search(r"C: mail FROM:&lt;devoluções@exemplo.com.br&gt; .*SMTPUTF8", dialog)  # the transcript
    (received,) = server.received
    assert received.mail_from == "devoluções@exemplo.com.br"
    assert received.rcpt_tos == ["zé@xn--bcher-kva.example"]  # the domain as an A-label, the local part as typed
    assert "SMTPUTF8" in received.mail_options
    assert re.search(rb"^From: =\?utf-8\?\S+\?= <usu\xc3\xa1rio@exemplo.com.br>\r$", received.content, re.M)  # RFC 6532
    message = parsed(received.content)
    assert message["From"].addresses[0].display_name == "Operações"
    assert message["From"].addresses[0].addr_spec == "usuário@exemplo.com.br"
    assert message["To"].addresses[0].addr_spec == "zé@xn--bcher-kva.example"
    assert message.get_content().strip() == "Atenção: teste."


@pytest.mark.parametrize("role,address,sender,to", [
    ("recipient", "zé@exemplo.com.br", "Ops <ops@corp.local>", "Zé <zé@exemplo.com.br>"),
    ("sender", "devoluções@corp.local", "Ops <ops@corp.local>", "ops@corp.local"),
    ("From header only", "usuário@corp.local", "Operações <usuário@corp.local>", "ops@corp.local"),
])
def test_security_42_without_smtputf8_the_dialog_names_the_address_and_sends_nothing(admin, smtp_server, role,
                                                                                     address, sender, to):
    server = smtp_server("plain")  # aiosmtpd without enable_SMTPUTF8: SMTPUTF8 is not offered
    account = relay_account(server, sender=sender,
                            return_path="devoluções@corp.local" if role == "sender" else "bounces@corp.local")
    dialog = dialog_send(admin, account, to)
    assert SENT not in dialog
    assert f"The address {address} has characters beyond ASCII before the @" in dialog, dialog
    assert f"only a server that offers SMTPUTF8 can carry it, and {server.host} does not offer it" in dialog
    assert "MAIL" not in server.commands and server.received == []


# --- SMTPUTF8 through the worker -----------------------------------------------------------------------------


def test_security_42_the_worker_sends_utf8_local_parts_with_smtputf8(app, smtp_server):
    server = smtp_server("plain", smtputf8=True, pipelining=True)
    account_for(server, sender="Operações <usuário@exemplo.com.br>", return_path="devoluções@exemplo.com.br",
                reply_to="atendimento@exemplo.com.br")
    international = send_notification(to=["José <joão@exemplo.com.br>", "ops@corp.local"], cc=["ana@nas.lan"],
                                      subject="Relatório", text="Olá, João!")
    drain()
    assert Notification.get_by_id(international).status == "sent"
    (received,) = server.received
    assert received.mail_from == "devoluções@exemplo.com.br"
    assert received.rcpt_tos == ["joão@exemplo.com.br", "ops@corp.local", "ana@nas.lan"]
    assert "SMTPUTF8" in received.mail_options
    message = parsed(received.content)
    assert [a.addr_spec for a in message["To"].addresses] == ["joão@exemplo.com.br", "ops@corp.local"]
    assert message["From"].addresses[0].addr_spec == "usuário@exemplo.com.br"
    assert message.get_content().strip() == "Olá, João!"


def test_security_42_the_worker_fails_them_with_the_reason_where_smtputf8_is_missing(app, smtp_server):
    server = smtp_server("plain", pipelining=True)
    account_for(server, sender="Ops <ops@corp.local>", return_path="bounces@corp.local")
    before = send_notification(to=["ana@corp.local"], subject="Before", text="1")
    international = send_notification(to=["joão@exemplo.com.br"], subject="International", text="2")
    after = send_notification(to=["bia@corp.local"], subject="After", text="3")
    drain()
    failed = Notification.get_by_id(international)
    assert failed.status == "failed"
    assert "joão@exemplo.com.br has characters beyond ASCII before the @" in reply_words(failed.last_reply)
    assert "does not offer it" in reply_words(failed.last_reply)
    # Refused before MAIL: the connection stays in step and carries the others.
    assert {Notification.get_by_id(n).status for n in (before, after)} == {"sent"}
    assert [r.rcpt_tos for r in server.received] == [["ana@corp.local"], ["bia@corp.local"]]
    assert server.connections == 1


@pytest.mark.parametrize("offered", [True, False], ids=["smtputf8", "no-smtputf8"])
def test_security_42_a_utf8_sender_in_the_headers_alone_needs_smtputf8_too(app, smtp_server, offered):
    """The envelope is ASCII (Return-Path), the From is not: RFC 6532 headers go only with SMTPUTF8."""
    server = smtp_server("plain", smtputf8=offered)
    account_for(server, sender="Operações <usuário@corp.local>", return_path="bounces@corp.local")
    notification = send_notification(to=["ana@corp.local"], subject="Relatório", text="Olá")
    drain()
    notification = Notification.get_by_id(notification)
    if offered:
        assert notification.status == "sent"
        (received,) = server.received
        assert received.mail_from == "bounces@corp.local" and "SMTPUTF8" in received.mail_options
        assert parsed(received.content)["From"].addresses[0].addr_spec == "usuário@corp.local"
    else:
        assert notification.status == "failed" and server.received == [] and "MAIL" not in server.commands
        assert "The address usuário@corp.local has characters beyond ASCII before the @" in reply_words(
            notification.last_reply)


def test_security_42_internationalised_domains_go_as_idna_2008_a_labels(app, smtp_server):
    """IDNA 2003 (Python's "idna" codec) maps ß to ss: faß.de would become fass.de, another domain."""
    server = smtp_server("plain")
    account_for(server, sender="Ops <ops@straße.example>", return_path="bounces@corp.local")
    send_notification(to=["anna@faß.de"], subject="Straße", text="ß")
    drain()
    (received,) = server.received
    assert received.rcpt_tos == ["anna@xn--fa-hia.de"]
    message = parsed(received.content)
    assert message["To"].addresses[0].addr_spec == "anna@xn--fa-hia.de"
    assert message["From"].addresses[0].addr_spec == "ops@xn--strae-oqa.example"
    assert message["Message-ID"].endswith("@xn--strae-oqa.example>")
