"""Failure classification: each exception becomes the right step, transient or permanent (RFC 5321 §4.2.1), with an
English sentence and hint that pybabel extracts (keyword N_) and that format with their own params."""
import errno
import pickle
import re
import smtplib
import socket
import ssl
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError

from webapp.mail import errors, proxy_errors
from webapp.mail.errors import MailError, Step, classify

EXPLAINING_MODULES = [Path(errors.__file__), Path(proxy_errors.__file__)]
WHERE = {"host": "smtp.example.com", "port": 587}


def formatted(error: MailError) -> str:
    """What the view shows: message and hint with their params filled in (raises on a missing placeholder)."""
    return (error.message % error.params) + " " + (error.hint % error.params)


def cert_error(code: int, message: str = "certificate verify failed") -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, message)
    exc.verify_code, exc.verify_message = code, message
    return exc


def disconnected_by(cause: BaseException) -> smtplib.SMTPServerDisconnected:
    """What smtplib raises when a read fails: SMTPServerDisconnected raised while handling the cause."""
    try:
        try:
            raise cause
        except OSError as exc:
            raise smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}")
    except smtplib.SMTPServerDisconnected as wrapped:
        return wrapped


@pytest.mark.parametrize("exc, step, transient", [
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), Step.DNS, False),
    (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), Step.DNS, True),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), Step.CONNECT, True),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), Step.CONNECT, True),
    (OSError(errno.EHOSTUNREACH, "No route to host"), Step.CONNECT, True),
    (TimeoutError("timed out"), Step.TIMEOUT, True),
])
def test_security_15_connection_failures(exc, step, transient):
    error = classify(exc, Step.CONNECT, **WHERE)

    assert (error.step, error.transient) == (step, transient)
    assert "smtp.example.com" in formatted(error)
    assert error.hint


def test_unreachable_network_has_its_own_sentence():
    unreachable = classify(OSError(errno.ENETUNREACH, "Network is unreachable"), Step.CONNECT, **WHERE)
    refused = classify(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), Step.CONNECT, **WHERE)

    assert "cannot be reached" in formatted(unreachable)
    assert "refused the connection" in formatted(refused)
    assert unreachable.hint != refused.hint


@pytest.mark.parametrize("code, reason", [
    (18, "self-signed"), (19, "self-signed"), (10, "expired"), (9, "not valid yet"),
    (62, "another host name"), (64, "another host name"), (20, "unknown certificate authority"),
    (21, "unknown certificate authority"),
])
def test_certificate_reasons(code, reason):
    error = classify(cert_error(code), Step.TLS, **WHERE)

    assert error.step is Step.CERTIFICATE and not error.transient
    assert reason in error.params["reason"] and reason in formatted(error)


def test_unknown_certificate_problem_keeps_openssl_words():
    error = classify(cert_error(50, "application verification failure"), Step.TLS, **WHERE)

    assert error.params["reason"] == "application verification failure"


def test_tls_handshake_failure():
    exc = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    exc.reason = "WRONG_VERSION_NUMBER"

    error = classify(exc, Step.TLS, **WHERE)

    assert error.step is Step.TLS and not error.transient
    assert "WRONG_VERSION_NUMBER" in formatted(error)


@pytest.mark.parametrize("code, transient", [(421, True), (450, True), (451, True), (452, True),
                                             (550, False), (553, False), (554, False)])
@pytest.mark.parametrize("step", [Step.SENDER, Step.RECIPIENT, Step.DATA])
def test_reply_codes_by_step(step, code, transient):
    error = errors.reply_error(step, code, "text", sender="a@example.com", recipient="b@example.com")

    assert (error.step, error.transient, error.code, error.reply) == (step, transient, code, "text")
    formatted(error)


def test_auth_replies():
    wrong = classify(smtplib.SMTPAuthenticationError(535, b"5.7.8 Authentication credentials invalid"),
                     Step.AUTH, **WHERE)
    later = classify(smtplib.SMTPAuthenticationError(454, b"4.7.0 Temporary authentication failure"),
                     Step.AUTH, **WHERE)
    needs_tls = classify(smtplib.SMTPAuthenticationError(538, b"5.7.11 Encryption required"), Step.AUTH, **WHERE)

    assert (wrong.step, wrong.transient, wrong.code) == (Step.AUTH, False, 535)
    assert wrong.reply == "5.7.8 Authentication credentials invalid"
    assert later.transient and not needs_tls.transient
    assert len({wrong.message, later.message, needs_tls.message}) == 3


def test_starttls_replies():
    busy = classify(smtplib.SMTPResponseException(454, b"4.7.0 TLS not available"), Step.STARTTLS, **WHERE)
    refused = classify(smtplib.SMTPResponseException(502, b"5.5.1 not implemented"), Step.STARTTLS, **WHERE)

    assert busy.step is Step.STARTTLS and busy.transient and "temporarily unavailable" in formatted(busy)
    assert refused.step is Step.STARTTLS and not refused.transient


def test_greeting_refusal():
    error = classify(smtplib.SMTPResponseException(554, b"5.7.1 go away"), Step.GREETING, **WHERE)

    assert error.step is Step.GREETING and not error.transient and error.reply == "5.7.1 go away"


def test_disconnects_and_timeouts():
    lost = classify(smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), Step.DATA, **WHERE)
    slow = classify(disconnected_by(TimeoutError("timed out")), Step.DATA, **WHERE, seconds=2, command="DATA")
    no_greeting = classify(disconnected_by(TimeoutError("timed out")), Step.GREETING, **WHERE, seconds=2)
    reset = classify(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), Step.AUTH, **WHERE)

    assert lost.step is Step.CONNECTION_LOST and lost.transient
    assert slow.step is Step.TIMEOUT and slow.transient and "DATA within 2 seconds" in formatted(slow)
    assert "no greeting" in formatted(no_greeting)
    assert reset.step is Step.CONNECTION_LOST and reset.transient


@pytest.mark.parametrize("exc, transient, words", [
    (ProxyConnectionError(errno.ECONNREFUSED, "Could not connect to proxy 127.0.0.1:1080 [Connection refused]"),
     True, "Could not reach"),
    (ProxyTimeoutError("Proxy connection timed out: 2"), True, "did not answer in time"),
    (ProxyError("Username and password authentication failure"), False, "refused the login"),
    (ProxyError("407 Proxy Authentication Required", error_code=407), False, "refused the login"),
    (ProxyError("Connection refused by destination host", error_code=5), True, "could not open a connection"),
    (ProxyError("Host unreachable", error_code=4), True, "could not open a connection"),
    (ProxyError("Connection not allowed by ruleset", error_code=2), False, "could not open a connection"),
    (ProxyError("403 Forbidden", error_code=403), False, "could not open a connection"),
    (ProxyError("502 Bad Gateway", error_code=502), True, "could not open a connection"),
])
def test_proxy_failures_keep_the_proxy_reason(exc, transient, words):
    error = proxy_errors.proxy_failure(exc, "socks5 127.0.0.1:1080", **WHERE)

    assert error.step is Step.PROXY and error.transient is transient
    assert words in formatted(error) and "socks5 127.0.0.1:1080" in formatted(error)
    if not isinstance(exc, ProxyTimeoutError):
        assert error.params["reason"] in formatted(error)


def test_proxy_down_reason_is_the_socket_error():
    try:
        try:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        except OSError as cause:
            raise ProxyConnectionError(cause.errno, "Could not connect to proxy 127.0.0.1:1080") from cause
    except ProxyConnectionError as exc:
        error = proxy_errors.proxy_failure(exc, "socks5 127.0.0.1:1080", **WHERE)

    assert error.params["reason"] == "Connection refused"


def test_mail_error_round_trips_through_pickle_and_reads_in_english():
    error = errors.auth_refused("smtp.example.com", 535, "5.7.8 invalid")

    copy = pickle.loads(pickle.dumps(error))

    assert (copy.step, copy.transient, copy.message, copy.params, copy.code, copy.reply) == (
        error.step, error.transient, error.message, error.params, error.code, error.reply)
    assert str(error) == "smtp.example.com rejected the username or secret. [535 5.7.8 invalid]"


def test_n_returns_its_text_unchanged():
    assert errors.N_("A sentence.") is not None and errors.N_("A sentence.") == "A sentence."


@pytest.mark.parametrize("path", EXPLAINING_MODULES, ids=lambda path: path.name)
def test_every_marked_message_is_a_literal_pybabel_extracts(path):
    source = path.read_text()
    extracted = [msg for _, msg, _, _ in extract_from_file("python", str(path), keywords={"N_": None})]

    assert len(extracted) == len(re.findall(r'\bN_\(\s*"', source)) > 10
    # %-format placeholders only, so `gettext(message) % params` works in every language.
    for message in extracted:
        assert re.sub(r"%\(\w+\)s", "", message).count("%") == 0, message


def test_every_helper_formats_with_its_own_params():
    built = [
        errors.dns_error(socket.gaierror(socket.EAI_NONAME, "x"), "h", 25),
        errors.dns_error(socket.gaierror(socket.EAI_AGAIN, "x"), "h", 25),
        errors.bad_ca_certificate(ValueError("no PEM")),
        errors.timeout_error("h", 2, None), errors.timeout_error("h", 2, "RCPT"),
        errors.timeout_error("h", 2, None, Step.TLS), errors.deadline_error("h", 30),
        errors.timeout_error("h", 2, None, Step.GREETING, 2701, "tls"),
        errors.timeout_error("h", 2, None, Step.TLS, 465, "ssl"),
        errors.connection_lost("h"), errors.connection_lost("h", proxy="http p:1"),
        errors.greeting_refused("h", 554, "no"),
        errors.starttls_not_offered("h", 587), errors.starttls_not_offered("h", 465),
        errors.starttls_refused("h", 454, "later"), errors.starttls_refused("h", 554, "no"),
        errors.auth_not_offered("h", 25, "plain"), errors.auth_not_offered("h", 587, "tls"),
        errors.auth_no_mechanism("h", "GSSAPI"), errors.auth_unencodable("h"),
        errors.auth_refused("h", 535, "no"), errors.auth_refused("h", 454, "later"),
        errors.auth_refused("h", 530, "no"), errors.smtputf8_needed("recipient", "é@example.com", "h"),
        errors.line_break("helo_name"), errors.line_break("address"),
        errors.oversized_reply("h", 65536), errors.oversized_reply("h", 65536, "EHLO"),
        errors.oversized_reply("h", 8192, line=True), errors.oversized_reply("h", 8192, "EHLO", line=True),
        proxy_errors.oversized_answer("http p:1", "h", 16384),
        proxy_errors.proxy_login_unsendable("socks5 p:1", "h", 25), proxy_errors.not_an_address("1.2.3.4.5", 25),
        proxy_errors.blocked_address("h", 25, "169.254.1.1", "169.254.0.0/16"),
        proxy_errors.blocked_address("169.254.1.1", 25, "169.254.1.1", "169.254.0.0/16"),
        proxy_errors.blocked_address("h", 25, "169.254.1.1", "169.254.0.0/16", proxy="socks5 p:1"),
        errors.reply_error(Step.SENDER, 530, "Authentication required", logged_in=False, sender="a@b"),
        errors.reply_error(Step.RECIPIENT, 554, "Relay access denied", logged_in=False, recipient="a@b"),
        classify(RuntimeError("odd"), Step.DATA, host="h", port=25),
    ]

    for error in built:
        assert formatted(error).strip(), error
        assert isinstance(error.step, Step)
