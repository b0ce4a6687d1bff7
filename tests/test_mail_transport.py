"""SMTP delivery against real aiosmtpd servers on 127.0.0.1: TLS modes, certificates, AUTH, scripted refusals,
timeouts and the secrets that must never show up in a transcript or an error."""
import base64
import logging
import socket
import threading
import time
from email.utils import parsedate_to_datetime

import pytest

from tests.support.mail import BOUNCE, RECIPIENT, everything_shown, make_message, send
from tests.support.outbox import hold_quit
from webapp.mail import MailError, SmtpSession, Step, send_message
from webapp.mail.client import auth_mechanism
from webapp.mail.transport import _tls_context

USER = "mailer@example.com"
PASSWORD = "Sm7p-s3cret-pa55"
USERS = {USER: PASSWORD}
def secret_forms(user=USER, password=PASSWORD):
    """The password as it would look on the wire: plain, base64, AUTH PLAIN's base64."""
    return [password, *(base64.b64encode(raw.encode()).decode() for raw in
                        (password, f"\0{user}\0{password}", f"{user}\0{user}\0{password}"))]


@pytest.fixture(params=[False, True], ids=["lockstep", "pipelined"])
def smtp_server(smtp_server, request):
    """Every test here runs against a server without and with PIPELINING (RFC 2920): the transport groups
    MAIL, RCPT and DATA when it is offered, and every outcome must read the same either way."""
    return lambda *args, **options: smtp_server(*args, **{"pipelining": request.param, **options})


def assert_nothing_sent(server):
    assert server.received == []
    assert "MAIL" not in server.commands and "AUTH" not in server.commands


# --- delivery -----------------------------------------------------------------------------------------------------

def test_plain_delivery_arrives_with_headers_body_and_envelope(smtp_server):
    server = smtp_server("plain")
    message = make_message(subject="Olá — TEST MESSAGE!", body="ATENÇÃO: ESTA É UMA MENSAGEM DE TESTE!")

    result = send(server, message)

    assert result.ok and result.error is None
    assert result.code == 250 and result.reply.startswith("2.0.0 Ok")
    assert result.tls == "none"
    assert 0 <= result.elapsed < 2
    [received] = server.received
    assert received.mail_from == BOUNCE
    assert received.rcpt_tos == [RECIPIENT]
    arrived = received.message
    assert arrived["From"] == "Ops Desk <ops@example.com>"
    assert arrived["To"] == RECIPIENT
    assert arrived["Subject"] == "Olá — TEST MESSAGE!"
    assert arrived["Message-ID"] == message["Message-ID"]
    assert arrived["Message-ID"].endswith("@example.com>")
    assert abs(time.time() - parsedate_to_datetime(arrived["Date"]).timestamp()) < 60
    assert arrived.get_content_type() == "text/plain"
    assert arrived.get_content().strip() == "ATENÇÃO: ESTA É UMA MENSAGEM DE TESTE!"
    assert result.transcript[0] == f"*: connected to 127.0.0.1:{server.port}"
    assert result.transcript[1].startswith("S: 220 ")
    assert any(line.startswith(f"C: mail FROM:<{BOUNCE}>") for line in result.transcript)
    assert any(line.startswith("C: <message, ") and line.endswith(" bytes>") for line in result.transcript)
    assert result.transcript[-2:] == ["C: quit", "S: 221 Bye"]


def test_lone_dots_and_bare_line_feeds_arrive_intact(smtp_server):
    server = smtp_server("plain")
    body = "first\n.\n..two dots\nlast line .\n.\r\nend"

    result = send(server, make_message(body=body))

    assert result.ok
    content = server.received[0].message.get_content()
    assert content.splitlines() == ["first", ".", "..two dots", "last line .", ".", "end"]


def test_internationalised_domains_travel_punycoded(smtp_server):
    server = smtp_server("plain")
    message = make_message(sender="Büro <ops@bücher.example>", to="Zoë <zoe@bücher.example>")

    result = send_message(server.settings(), message, envelope_from="bounce@bücher.example",
                          recipients=["zoe@bücher.example"])

    assert result.ok, result.error
    received = server.received[0]
    assert received.mail_from == "bounce@xn--bcher-kva.example"
    assert received.rcpt_tos == ["zoe@xn--bcher-kva.example"]
    assert received.message["From"].addresses[0].domain == "xn--bcher-kva.example"
    assert received.message["Message-ID"].endswith("@xn--bcher-kva.example>")


def test_helo_name_is_used_for_ehlo(smtp_server):
    server = smtp_server("plain")

    result = send(server, helo_name="relay.example.org")

    assert result.ok
    assert "C: ehlo relay.example.org" in result.transcript


@pytest.mark.parametrize("settings, recipients", [
    ({"helo_name": "relay.example.org\r\nMAIL FROM:<x@evil.example>"}, [RECIPIENT]),
    ({}, ["to@example.net>\r\nRCPT TO:<other@evil.example"]),
])
def test_line_breaks_in_helo_or_addresses_are_refused_before_connecting(smtp_server, settings, recipients):
    server = smtp_server("plain")

    result = send(server, recipients=recipients, **settings)

    assert not result.ok and result.error.step is Step.POLICY and not result.error.transient
    assert server.connections == 0


def test_starttls_with_auth_verified_through_the_custom_ca(smtp_server, certificates):
    server = smtp_server("starttls", users=USERS)

    result = send(server, username=USER, password=PASSWORD, ca_pem=certificates.ca_pem)

    assert result.ok, result.error
    assert result.tls == "verified"
    assert server.commands[:4] == ["EHLO", "STARTTLS", "EHLO", "AUTH"]
    assert server.handler.logins == [("PLAIN", USER)]
    assert server.received[0].mail_from == BOUNCE
    tls_line = result.transcript.index("C: STARTTLS")
    assert result.transcript[tls_line + 2].startswith("*: TLS established (TLSv1.")
    assert "C: AUTH PLAIN ********" in result.transcript
    assert not any(secret in everything_shown(result) for secret in secret_forms())


def test_implicit_tls_with_auth(smtp_server, certificates):
    server = smtp_server("ssl", users=USERS)

    result = send(server, username=USER, password=PASSWORD, ca_pem=certificates.ca_pem)

    assert result.ok, result.error
    assert result.tls == "verified"
    assert server.commands[:2] == ["EHLO", "AUTH"]
    assert len(server.received) == 1


def test_auth_login_exchange_is_masked_line_by_line(smtp_server, certificates):
    server = smtp_server("ssl", users=USERS, auth_exclude=("PLAIN",))

    result = send(server, username=USER, password=PASSWORD, ca_pem=certificates.ca_pem)

    assert result.ok, result.error
    assert server.handler.logins == [("LOGIN", USER)]
    auth = result.transcript.index("C: AUTH LOGIN ********")
    assert result.transcript[auth + 1].startswith("S: 334 ")
    assert result.transcript[auth + 2] == "C: ********"
    assert result.transcript[auth + 3].startswith("S: 235 ")
    assert base64.b64encode(USER.encode()).decode() not in everything_shown(result)
    assert not any(secret in everything_shown(result) for secret in secret_forms())


# --- certificates ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["starttls", "ssl"])
@pytest.mark.parametrize("cert, reason", [
    ("self_signed", "self-signed"),
    ("expired", "expired"),
    ("wrong_host", "another host name"),
])
def test_security_11_certificate_problems_stop_before_anything_is_sent(smtp_server, certificates, mode, cert, reason):
    server = smtp_server(mode, cert=cert, users=USERS)

    result = send(server, username=USER, password=PASSWORD, ca_pem=certificates.ca_pem)

    assert not result.ok
    assert result.error.step is Step.CERTIFICATE and not result.error.transient
    assert reason in result.error.params["reason"]
    assert reason in str(result.error)
    assert result.tls == "none"
    assert_nothing_sent(server)
    assert server.handler.logins == []


def test_ca_signed_certificate_is_unknown_without_the_custom_ca(smtp_server):
    server = smtp_server("starttls")

    result = send(server)

    assert result.error.step is Step.CERTIFICATE
    assert "unknown certificate authority" in result.error.params["reason"]
    assert_nothing_sent(server)


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_security_12_ignoring_certificate_errors_encrypts_and_says_unverified(smtp_server, mode):
    server = smtp_server(mode, cert="self_signed", users=USERS)

    result = send(server, username=USER, password=PASSWORD, verify_tls=False)

    assert result.ok, result.error
    assert result.tls == "unverified"
    assert any("certificate NOT verified" in line for line in result.transcript)
    assert len(server.received) == 1


def test_unreadable_custom_ca_is_reported_before_connecting(smtp_server):
    server = smtp_server("starttls")

    result = send(server, ca_pem="-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")

    assert result.error.step is Step.CERTIFICATE
    assert "could not be read" in str(result.error)
    assert server.connections == 0


def test_tls_context_verifies_by_default_with_tls_1_2_minimum(smtp_server):
    server = smtp_server("starttls")
    verifying = _tls_context(server.settings())
    encrypting_only = _tls_context(server.settings(verify_tls=False))

    assert verifying.check_hostname and verifying.verify_mode.name == "CERT_REQUIRED"
    assert verifying.minimum_version.name == "TLSv1_2"
    assert not encrypting_only.check_hostname and encrypting_only.verify_mode.name == "CERT_NONE"
    assert encrypting_only.minimum_version.name == "TLSv1_2"


def test_security_13_implicit_tls_against_a_plain_server_is_a_quick_handshake_error(smtp_server):
    server = smtp_server("plain")

    started = time.monotonic()
    result = send(server, mode="ssl")

    assert result.error.step is Step.TLS and not result.error.transient
    assert time.monotonic() - started < 2
    assert server.received == []


# --- STARTTLS fails closed ------------------------------------------------------------------------------------------

def test_security_9_starttls_not_offered_fails_before_auth_and_mail(smtp_server, certificates):
    # This server would take AUTH and MAIL in clear text: the client must not offer them.
    server = smtp_server("plain", users=USERS)

    result = send(server, mode="tls", username=USER, password=PASSWORD, ca_pem=certificates.ca_pem)

    assert not result.ok
    assert result.error.step is Step.STARTTLS and not result.error.transient
    assert "does not offer STARTTLS" in str(result.error)
    assert server.commands == ["EHLO"]
    assert server.handler.logins == [] and server.received == []
    assert not any(line.startswith(("C: AUTH", "C: mail")) for line in result.transcript)


def hint(result) -> str:
    return result.error.hint % result.error.params


def test_the_failure_hint_names_the_port_and_mode_that_were_used(smtp_server, certificates):
    # A plain server on a port that is not 465: STARTTLS and SSL both fail, and each hint speaks of this port and
    # the mode chosen, never of port 465's habits.
    server = smtp_server("plain")

    starttls = send(server, mode="tls", ca_pem=certificates.ca_pem)
    implicit = send(server, mode="ssl")

    assert starttls.error.step is Step.STARTTLS
    assert f"port {server.port} is the server's submission port" in hint(starttls)
    assert "465" not in hint(starttls).replace(str(server.port), "")  # the free port itself may hold "465"
    assert implicit.error.step is Step.TLS
    assert f"SSL (implicit TLS) was used on port {server.port}" in hint(implicit)
    assert "465" not in hint(implicit).replace(str(server.port), "")


def test_security_10_454_to_starttls_is_transient_and_nothing_follows_in_clear(smtp_server, certificates):
    server = smtp_server("starttls", users=USERS, starttls_reply="454 4.7.0 TLS not available due to temporary reason")

    result = send(server, username=USER, password=PASSWORD, ca_pem=certificates.ca_pem)

    assert result.error.step is Step.STARTTLS and result.error.transient
    assert result.error.code == 454
    assert "temporarily unavailable" in str(result.error)
    assert server.commands == ["EHLO", "STARTTLS"]
    assert result.tls == "none"


# --- authentication -------------------------------------------------------------------------------------------------

def test_wrong_password_is_a_permanent_auth_error_that_leaks_nothing(smtp_server, certificates, caplog):
    server = smtp_server("starttls", users=USERS)
    wrong = "Wr0ng-pa55word-77"
    caplog.set_level(logging.DEBUG)

    result = send(server, username=USER, password=wrong, ca_pem=certificates.ca_pem)

    assert result.error.step is Step.AUTH and not result.error.transient
    assert result.error.code == 535
    assert "rejected the username or secret" in str(result.error)
    assert server.handler.logins == [("PLAIN", USER)]
    shown = everything_shown(result)
    assert not any(secret in shown for secret in secret_forms(password=wrong))
    assert "C: AUTH PLAIN ********" in result.transcript
    assert server.received == [] and "MAIL" not in server.commands
    # Our own log records (aiosmtpd's server-side "mail.log" is not ours) hold no secret either.
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail"))
    assert not any(secret in ours for secret in secret_forms(password=wrong))


def test_auth_configured_but_not_offered(smtp_server):
    server = smtp_server("plain")

    result = send(server, username=USER, password=PASSWORD)

    assert result.error.step is Step.AUTH and not result.error.transient
    assert "does not offer authentication" in str(result.error)
    assert f"connects to port {server.port} without encryption" in hint(result)
    assert_nothing_sent(server)


def test_non_ascii_password_is_refused_without_showing_it(smtp_server, certificates):
    server = smtp_server("ssl", users=USERS)
    password = "pässwörd-secret"

    result = send(server, username=USER, password=password, ca_pem=certificates.ca_pem)

    assert result.error.step is Step.AUTH
    assert password not in everything_shown(result)


def test_security_41_a_wrong_password_is_tried_once_with_the_strongest_mechanism_offered(smtp_server, certificates):
    # smtplib's login() would go on with LOGIN after PLAIN's 535: one wrong password, two failed logins counted by
    # the server (fail2ban, Dovecot's delay).
    server = smtp_server("starttls", users=USERS)

    result = send(server, username=USER, password="Wr0ng-pa55word-77", ca_pem=certificates.ca_pem)

    assert result.error.step is Step.AUTH and result.error.code == 535
    assert server.handler.logins == [("PLAIN", USER)]
    assert server.commands.count("AUTH") == 1
    assert [line for line in result.transcript if line.startswith("C: AUTH")] == ["C: AUTH PLAIN ********"]


@pytest.mark.parametrize("offered, encrypted, chosen", [
    ("CRAM-MD5 PLAIN LOGIN", True, "PLAIN"),      # many servers keep only a hash, and CRAM-MD5 needs the password
    ("cram-md5 login", True, "LOGIN"),
    ("CRAM-MD5", True, "CRAM-MD5"),
    ("CRAM-MD5 PLAIN LOGIN", False, "CRAM-MD5"),  # in clear, the one that does not send the password
    ("PLAIN LOGIN", False, "PLAIN"),
    ("XOAUTH2 GSSAPI", True, None),
])
def test_one_mechanism_is_chosen_from_those_offered(offered, encrypted, chosen):
    assert auth_mechanism(offered, encrypted=encrypted) == chosen


def test_a_server_offering_only_login_gets_login(smtp_server, certificates):
    server = smtp_server("starttls", users=USERS, auth_exclude=("PLAIN",))

    result = send(server, username=USER, password=PASSWORD, ca_pem=certificates.ca_pem)

    assert result.ok, result.error
    assert server.handler.logins == [("LOGIN", USER)]


# --- refusals -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("verb, reply, step, transient", [
    ("MAIL", "451 4.3.0 try later", Step.SENDER, True),
    ("MAIL", "553 5.1.8 sender address rejected", Step.SENDER, False),
    ("MAIL", "550 5.7.1 not allowed", Step.SENDER, False),
    ("RCPT", "450 4.2.1 mailbox busy", Step.RECIPIENT, True),
    ("RCPT", "452 4.5.3 too many recipients", Step.RECIPIENT, True),
    ("RCPT", "550 5.1.1 no such user", Step.RECIPIENT, False),
    ("RCPT", "553 5.1.3 bad destination mailbox address syntax", Step.RECIPIENT, False),
    ("DATA", "451 4.3.0 try later", Step.DATA, True),
    ("DATA", "554 5.7.1 message refused", Step.DATA, False),
])
def test_scripted_refusals_name_the_step(smtp_server, verb, reply, step, transient):
    server = smtp_server("plain", replies={verb: reply})

    result = send(server)

    assert not result.ok
    assert result.error.step is step and result.error.transient is transient
    assert result.error.code == int(reply[:3]) == result.code
    assert result.error.reply == reply[4:] == result.reply
    assert server.received == []
    expected = {Step.SENDER: BOUNCE, Step.RECIPIENT: RECIPIENT, Step.DATA: "message"}[step]
    assert expected in str(result.error)


def test_421_to_mail_is_transient(smtp_server):
    server = smtp_server("plain", replies={"MAIL": "421 4.3.2 shutting down"})

    result = send(server)

    assert result.error.step is Step.SENDER and result.error.transient


def test_partly_refused_recipients_are_reported_with_the_delivery(smtp_server):
    server = smtp_server("plain", replies={"RCPT": {"gone@example.net": "550 5.1.1 no such user"}})

    result = send(server, recipients=[RECIPIENT, "gone@example.net"])

    assert result.ok
    assert result.refused == {"gone@example.net": (550, "5.1.1 no such user")}
    assert server.received[0].rcpt_tos == [RECIPIENT]


@pytest.mark.parametrize("verb, reply", [
    ("RCPT", "554 5.7.1 <to@example.net>: Client host rejected: Access denied"),  # Postfix, smtpd_*_restrictions
    ("RCPT", "554 5.7.1 <to@example.net>: Relay access denied"),  # Postfix, reject_unauth_destination
    ("RCPT", "550 relay not permitted, authentication required"),  # Exim
    ("RCPT", "550 5.7.1 <to@example.net>... Relaying denied. Proper authentication required."),  # sendmail
    ("MAIL", "553 5.7.1 <bounce@example.com>: Sender address rejected: not logged in"),  # Postfix, login maps
])
def test_security_41_a_relay_refusing_a_client_that_did_not_log_in_says_authentication_is_probably_needed(
        smtp_server, verb, reply):
    server = smtp_server("plain", replies={verb: reply})

    result = send(server)

    error = result.error
    assert error.step is (Step.RECIPIENT if verb == "RCPT" else Step.SENDER) and not error.transient
    assert error.code == int(reply[:3]) and error.reply == reply[4:]
    assert "the relay probably requires authentication" in str(error)
    assert error.hint % error.params == ("Turn on authentication for this account and choose the relay's "
                                         "credential (add it under Credentials first if it is not there).")


def test_security_41_a_server_that_requires_auth_before_mail_says_so(smtp_server):
    # aiosmtpd's own answer when AUTH is required and the client did not log in: 530 5.7.0 (RFC 4954).
    server = smtp_server("plain", users=USERS)

    result = send(server)

    assert result.error.step is Step.SENDER and result.error.code == 530
    assert "the relay probably requires authentication" in str(result.error)


def test_a_relay_refusal_after_a_successful_login_keeps_the_recipient_explanation(smtp_server):
    server = smtp_server("plain", users=USERS, replies={"RCPT": "554 5.7.1 <to@example.net>: Relay access denied"})

    result = send(server, username=USER, password=PASSWORD)

    assert result.error.step is Step.RECIPIENT
    assert str(result.error).startswith(f"The server refused the recipient {RECIPIENT}.")
    assert "authentication" not in str(result.error)


# --- timeouts and connection failures -------------------------------------------------------------------------------

def test_security_14_server_that_never_greets_times_out(smtp_server, silent_server):
    host, port = silent_server
    server = smtp_server("plain")

    started = time.monotonic()
    result = send(server, port=port)
    elapsed = time.monotonic() - started

    assert result.error.step is Step.TIMEOUT and result.error.transient
    assert "no greeting" in str(result.error)
    assert elapsed < 4 + 1 and result.elapsed < 4 + 1


def test_security_14_stall_in_data_times_out(smtp_server):
    server = smtp_server("plain", stall={"DATA": 30})

    started = time.monotonic()
    result = send(server)

    assert result.error.step is Step.TIMEOUT and result.error.transient
    assert "DATA" in str(result.error)
    assert time.monotonic() - started < 4 + 1


def test_overall_deadline_bounds_a_dialogue_of_slow_steps(smtp_server):
    # Each reply comes within the read timeout, but together they exceed the deadline.
    server = smtp_server("plain", stall={"MAIL": 0.8, "RCPT": 0.8, "DATA": 0.8})

    started = time.monotonic()
    result = send(server, timeout=2, deadline=1.5)

    assert result.error.step is Step.TIMEOUT and result.error.transient
    assert "overall limit" in str(result.error)
    assert time.monotonic() - started < 1.5 + 1


@pytest.fixture
def trickling_server():
    """A server that sends its greeting one byte every 0.2 s, forever: each read succeeds, the dialogue never ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()

    def serve():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                while not stop.wait(0.2):
                    try:
                        conn.sendall(b"2")
                    except OSError:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()
    stop.set()
    thread.join()
    listener.close()


def test_deadline_watchdog_stops_a_trickling_server(smtp_server, trickling_server):
    server = smtp_server("plain")
    _, port = trickling_server

    started = time.monotonic()
    result = send(server, port=port, timeout=1, deadline=2)

    assert result.error.step is Step.TIMEOUT and result.error.transient
    assert "overall limit" in str(result.error)
    assert time.monotonic() - started < 2 + 1


def test_connection_refused(closed_port, smtp_server):
    server = smtp_server("plain")

    result = send(server, port=closed_port)

    assert result.error.step is Step.CONNECT and result.error.transient
    assert "refused the connection" in str(result.error)
    assert result.error.hint


def test_unresolvable_host_is_a_dns_error_without_any_connection(smtp_server, monkeypatch):
    server = smtp_server("plain")

    def no_connection(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_connection)
    result = send(server, host="nonexistent.invalid")

    assert result.error.step is Step.DNS
    assert "nonexistent.invalid" in str(result.error)
    assert result.error.hint


# --- sessions -------------------------------------------------------------------------------------------------------

def test_session_sends_many_messages_over_one_connection(smtp_server, certificates):
    server = smtp_server("starttls", users=USERS)

    with SmtpSession(server.settings(username=USER, password=PASSWORD, ca_pem=certificates.ca_pem)) as session:
        results = [session.send(make_message(subject=f"n{n}"), envelope_from=BOUNCE, recipients=[RECIPIENT])
                   for n in range(3)]

    assert all(result.ok for result in results)
    assert server.connections == 1
    assert [r.message["Subject"] for r in server.received] == ["n0", "n1", "n2"]
    assert "C: STARTTLS" in results[0].transcript and "C: STARTTLS" not in results[1].transcript
    assert server.commands.count("AUTH") == 1 and server.commands[-1] == "QUIT"


def test_session_stays_usable_after_a_refusal_and_reopens_after_a_break(smtp_server):
    server = smtp_server("plain", replies={"RCPT": {"gone@example.net": "550 5.1.1 no such user"}})

    with SmtpSession(server.settings()) as session:
        refused = session.send(make_message(), envelope_from=BOUNCE, recipients=["gone@example.net"])
        delivered = session.send(make_message(), envelope_from=BOUNCE, recipients=[RECIPIENT])
        assert server.connections == 1
        server.handler.stall["DATA"] = 30
        stalled = session.send(make_message(), envelope_from=BOUNCE, recipients=[RECIPIENT])
        del server.handler.stall["DATA"]
        again = session.send(make_message(), envelope_from=BOUNCE, recipients=[RECIPIENT])

    assert refused.error.step is Step.RECIPIENT and not refused.error.transient
    assert delivered.ok
    assert stalled.error.step is Step.TIMEOUT
    assert again.ok and server.connections == 2
    assert len(server.received) == 2


@pytest.mark.parametrize("drip", [None, 0.2], ids=["silent", "dripping"])
def test_security_36_closing_bounds_the_quit_as_a_whole_however_the_relay_answers(smtp_server, drip):
    # QUIT is a courtesy: a relay that never answers it, or drips a line of its answer within every read timeout,
    # must not hold the worker thread closing the connection for a read timeout, or for ever.
    server = smtp_server("plain")
    held = hold_quit(server, drip=drip)
    session = SmtpSession(server.settings(timeout=30.0, deadline=60.0))
    try:
        assert session.send(make_message(), envelope_from=BOUNCE, recipients=[RECIPIENT]).ok
        closing = threading.Thread(target=session.close)
        closing.start()
        closing.join(15)  # generous: "does not hang", not speed
        assert not closing.is_alive()
        assert held.waiting == 1  # QUIT was said, and its answer is still held back
    finally:
        held.release()
        closing.join(30)


def test_mail_error_carries_no_traceback(smtp_server):
    server = smtp_server("plain", replies={"DATA": "554 5.7.1 no"})

    error = send(server).error

    assert isinstance(error, MailError)
    assert error.__traceback__ is None and error.__cause__ is None and error.__context__ is None
