"""Every delivery failure as one MailError: which step failed, transient or not, and what the admin can do. (The
network connector's failures and the outbound policy's refusals are explained in proxy_errors.py, OAuth 2.0's in
oauth_errors.py.)

Messages and hints are English literals marked with N_() (extracted with `pybabel -k N_`); the view translates
them and fills the %(name)s placeholders from `params`, which never hold a secret.
"""
import errno
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from enum import Enum

from python_socks import ProxyTimeoutError


def N_(text: str) -> str:
    """Mark a message for translation (extracted with -k N_); return it unchanged."""
    return text


class Step(str, Enum):
    """Which part of the dialogue failed."""

    DNS = "dns"
    CONNECT = "connect"
    PROXY = "proxy"
    GREETING = "greeting"
    TLS = "tls"
    CERTIFICATE = "certificate"
    STARTTLS = "starttls"
    TOKEN = "token"  # the OAuth 2.0 access token, asked of the token endpoint before AUTH
    AUTH = "auth"
    SENDER = "sender"
    RECIPIENT = "recipient"
    DATA = "data"
    TIMEOUT = "timeout"
    CONNECTION_LOST = "connection_lost"
    POLICY = "policy"
    INTERNAL = "internal"  # our own fault, not the server's: counted as a transient attempt so it cannot loop


@dataclass(eq=False)
class MailError(Exception):
    """A failure explained: the step, whether a later attempt may succeed, a sentence and a hint for the admin."""

    step: Step
    transient: bool
    message: str
    hint: str
    params: dict = field(default_factory=dict)
    code: int | None = None
    reply: str | None = None

    def __post_init__(self):
        # Exception.__reduce__ rebuilds from args: keep them so the error pickles (worker processes).
        self.args = (self.step, self.transient, self.message, self.hint, self.params, self.code, self.reply)

    def __str__(self) -> str:
        text = self.message % self.params
        if self.code is not None:
            text += f" [{self.code} {self.reply or ''}]".rstrip()
        return text


class OversizedReply(smtplib.SMTPServerDisconnected):
    """A reply (or an HTTP proxy's answer) longer than we read: the connection was closed instead of reading on.
    limit: the limit in bytes that was passed, of the whole reply or (line=True) of one of its lines."""

    def __init__(self, limit: int, line: bool = False):
        super().__init__(f"{'a reply line' if line else 'the reply'} went on past {limit} bytes")
        self.limit = limit
        self.line = line


TRY_LATER = N_("The server asked to try again later; a later attempt may succeed.")

# OpenSSL verify codes (x509_vfy.h) -> the reason shown to the admin.
CERTIFICATE_REASONS = {
    9: N_("the certificate is not valid yet"),
    10: N_("the certificate has expired"),
    18: N_("the certificate is self-signed"),
    19: N_("the certificate chain ends in a self-signed certificate that is not trusted"),
    2: N_("the certificate was issued by an unknown certificate authority"),
    20: N_("the certificate was issued by an unknown certificate authority"),
    21: N_("the certificate was issued by an unknown certificate authority"),
    23: N_("the certificate has been revoked"),
    62: N_("the certificate was issued for another host name"),
    64: N_("the certificate was issued for another host name"),
}


def reply_text(reply: bytes | str | None) -> str | None:
    """A server reply as text: decoded, stripped."""
    if reply is None:
        return None
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return reply.strip()


def is_transient_code(code: int | None) -> bool:
    """RFC 5321 §4.2.1: 4yz is a transient negative completion; 5yz (and anything unreadable) is permanent."""
    return code is not None and 400 <= code < 500


def dns_error(exc: socket.gaierror, host: str, port: int) -> MailError:
    """A name that could not be resolved; EAI_AGAIN means the resolver itself failed for now."""
    params = {"host": host, "port": port, "reason": exc.strerror or str(exc)}
    if exc.errno == socket.EAI_AGAIN:
        return MailError(Step.DNS, True, N_("The name server could not resolve %(host)s right now (%(reason)s)."),
                         N_("Try again later; if it persists, check the DNS settings of this machine."), params)
    return MailError(Step.DNS, False, N_("The host name %(host)s could not be resolved (%(reason)s)."),
                     N_("Check the spelling of the server name, or enter its IP address."), params)


def connect_error(exc: OSError, host: str, port: int) -> MailError:
    """A TCP connection that could not be opened directly."""
    params = {"host": host, "port": port, "reason": exc.strerror or str(exc) or type(exc).__name__}
    if isinstance(exc, socket.gaierror):
        return dns_error(exc, host, port)
    if isinstance(exc, TimeoutError):
        return MailError(Step.TIMEOUT, True, N_("Connecting to %(host)s port %(port)s timed out."),
                         N_("The server did not answer: check the host, the port and any firewall that drops "
                            "packets."), params)
    if isinstance(exc, ConnectionRefusedError):
        return MailError(Step.CONNECT, True, N_("%(host)s refused the connection on port %(port)s."),
                         N_("Check the port number and that the mail server is running; a firewall may also "
                            "refuse the connection."), params)
    if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return MailError(Step.CONNECT, True, N_("%(host)s port %(port)s cannot be reached (%(reason)s)."),
                         N_("Check this machine's network connection and routes, or use a network connector."),
                         params)
    return MailError(Step.CONNECT, True, N_("Could not connect to %(host)s port %(port)s (%(reason)s)."),
                     N_("Check the host, the port and the firewall."), params)


def tls_error(exc: ssl.SSLError | OSError, host: str, port: int, mode: str | None = None) -> MailError:
    """A TLS handshake that failed; certificate problems carry their reason. mode: the account's ("ssl" or "tls"),
    so the hint fits the port and mode that were actually used."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = CERTIFICATE_REASONS.get(exc.verify_code, exc.verify_message or str(exc))
        return MailError(Step.CERTIFICATE, False,
                         N_("The certificate of %(host)s was not accepted: %(reason)s."),
                         N_("Install a valid certificate on the server, add its CA certificate under Advanced, or "
                            "— only on a network you trust — choose to ignore certificate errors. Nothing was sent."),
                         {"host": host, "port": port, "reason": reason})
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return MailError(Step.TLS, False, N_("The TLS handshake with %(host)s port %(port)s failed (%(reason)s)."),
                     tls_mode_hint(port, mode), {"host": host, "port": port, "reason": str(reason)})


def tls_mode_hint(port: int | None, mode: str | None) -> str:
    """What to check when TLS could not start, for the port and mode that were used."""
    if mode == "ssl" and port in (25, 587):
        return N_("SSL (implicit TLS) was used on port %(port)s, which usually expects STARTTLS: choose TLS as the "
                  "secure connection type. Nothing was sent.")
    if mode == "ssl":
        return N_("SSL (implicit TLS) was used on port %(port)s, and the server did not start TLS there: check the "
                  "port, or choose TLS (STARTTLS) if the server expects a plain greeting first. Nothing was sent.")
    if mode == "tls":
        return N_("The server on port %(port)s accepted STARTTLS but the TLS handshake did not complete: check the "
                  "server's TLS configuration (protocol versions and ciphers). Nothing was sent.")
    return N_("Check the port and the secure connection type: SSL (implicit TLS) starts encrypted, TLS (STARTTLS) "
              "starts in plain text and then encrypts. Nothing was sent.")


def bad_ca_certificate(exc: Exception) -> MailError:
    """The custom CA certificate (PEM) of the account could not be loaded."""
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return MailError(Step.CERTIFICATE, False, N_("The custom CA certificate could not be read (%(reason)s)."),
                     N_("Paste the CA certificate in PEM form, from -----BEGIN CERTIFICATE----- to "
                        "-----END CERTIFICATE-----."), {"reason": str(reason)})


def timeout_error(host: str, seconds: float, command: str | None, step: Step = Step.GREETING,
                  port: int | None = None, mode: str | None = None) -> MailError:
    """No reply in time: during the TLS handshake, to the greeting (command None) or to that command."""
    params = {"host": host, "seconds": _seconds(seconds), "command": command or "", "port": port or ""}
    if step is Step.TLS:
        return MailError(Step.TIMEOUT, True,
                         N_("%(host)s did not complete the TLS handshake within %(seconds)s seconds."),
                         tls_mode_hint(port, mode), params)
    if command is None:
        return MailError(Step.TIMEOUT, True,
                         N_("%(host)s accepted the connection but sent no greeting within %(seconds)s seconds."),
                         N_("The port may belong to another service: check the port and the secure connection "
                            "type.") if mode == "ssl" or port is None else
                         N_("Port %(port)s may belong to another service, or the server may expect SSL (implicit "
                            "TLS) there, as port 465 usually does: check the port and the secure connection type."),
                         params)
    return MailError(Step.TIMEOUT, True, N_("%(host)s did not reply to %(command)s within %(seconds)s seconds."),
                     N_("The server or the network is slow or stalled; try again later."), params)


def deadline_error(host: str, seconds: float) -> MailError:
    """The overall deadline of the dialogue passed."""
    return MailError(Step.TIMEOUT, True,
                     N_("The dialogue with %(host)s did not finish within the overall limit of %(seconds)s seconds."),
                     N_("The server or the network is too slow; try again later."),
                     {"host": host, "seconds": _seconds(seconds)})


def connection_lost(host: str, exc: Exception | None = None, proxy: str | None = None) -> MailError:
    """The connection closed or broke in the middle of the dialogue."""
    reason = str(exc) if exc is not None and str(exc) else N_("closed by the other side")
    params = {"host": host, "reason": reason}
    if proxy is not None:
        params["proxy"] = proxy
        return MailError(Step.CONNECTION_LOST, True,
                         N_("The connection to %(host)s through the network connector %(proxy)s was closed "
                            "unexpectedly (%(reason)s)."),
                         N_("The connector may have failed to reach the server: check the server's host and port, "
                            "then try again."), params)
    return MailError(Step.CONNECTION_LOST, True, N_("The connection to %(host)s was closed unexpectedly (%(reason)s)."),
                     N_("Try again; if it repeats, check the server's limits and logs."), params)


def oversized_reply(host: str, limit: int, command: str | None = None, step: Step = Step.GREETING,
                    line: bool = False) -> MailError:
    """A reply past our limit (line: one of its lines past the line limit) as a greeting (command None) or to a
    command. The connector's oversized answer is in proxy_errors.py."""
    params = {"host": host, "command": command or "", "limit": f"{limit // 1024} KiB"}
    if line:
        message = (N_("%(host)s sent an oversized reply (a line longer than %(limit)s) as its greeting, so the "
                      "connection was closed.") if command is None else
                   N_("%(host)s sent an oversized reply (a line longer than %(limit)s) to %(command)s, so the "
                      "connection was closed."))
    elif command is None:
        message = N_("%(host)s sent an oversized reply (more than %(limit)s) as its greeting, so the connection "
                     "was closed.")
    else:
        message = N_("%(host)s sent an oversized reply (more than %(limit)s) to %(command)s, so the connection was "
                     "closed.")
    return MailError(step, False, message,
                     N_("A mail server's replies are a few lines long: check that the host and port are those of a "
                        "mail server. Nothing more was read from it."), params)


def greeting_refused(host: str, code: int, reply: str | None) -> MailError:
    """The server answered the connection or EHLO/HELO with an error."""
    return MailError(Step.GREETING, is_transient_code(code), N_("%(host)s refused the session."),
                     N_("The server may be busy or may block this machine's address; check its reply, and the "
                        "HELO name under Advanced."), {"host": host}, code, reply)


def starttls_not_offered(host: str, port: int) -> MailError:
    """STARTTLS was chosen and the server does not offer it: fail closed. The hint names port 465 only when that is
    the port used, as it is the one port where SSL is the usual cause."""
    return MailError(Step.STARTTLS, False,
                     N_("%(host)s does not offer STARTTLS, so the connection cannot be encrypted."),
                     N_("Nothing was sent in clear text. Port 465 usually needs SSL (implicit TLS): choose SSL as the "
                        "secure connection type.") if port == 465 else
                     N_("Nothing was sent in clear text. Check that port %(port)s is the server's submission port "
                        "(usually 587) and that STARTTLS is enabled on the server; if the server encrypts from the "
                        "first byte, choose SSL."), {"host": host, "port": port})


def starttls_refused(host: str, code: int, reply: str | None) -> MailError:
    """The server answered STARTTLS with an error; 454 means TLS is temporarily unavailable."""
    if code == 454:
        return MailError(Step.STARTTLS, True, N_("%(host)s answered that TLS is temporarily unavailable."),
                         N_("Nothing was sent in clear text. Try again later."), {"host": host}, code, reply)
    return MailError(Step.STARTTLS, is_transient_code(code), N_("%(host)s refused to start TLS."),
                     N_("Nothing was sent in clear text. Check the server's TLS configuration."),
                     {"host": host}, code, reply)


def auth_not_offered(host: str, port: int, mode: str) -> MailError:
    """A credential is configured and the server offers no AUTH at all."""
    return MailError(Step.AUTH, False, N_("%(host)s does not offer authentication (AUTH)."),
                     N_("This account connects to port %(port)s without encryption, and many servers offer AUTH only "
                        "over TLS: choose a secure connection (TLS on port 587, SSL on 465), or remove the "
                        "credential if the server needs none.") if mode == "plain" else
                     N_("Check that port %(port)s is the server's submission port (usually 587 with TLS, or 465 with "
                        "SSL), or remove the credential if the server needs none."),
                     {"host": host, "port": port})


def auth_no_mechanism(host: str, mechanisms: str) -> MailError:
    """The server offers AUTH, but none of CRAM-MD5, PLAIN and LOGIN."""
    return MailError(Step.AUTH, False,
                     N_("%(host)s offers no authentication method this application supports (%(mechanisms)s)."),
                     N_("Ask the server's administrator to enable PLAIN, LOGIN or CRAM-MD5."),
                     {"host": host, "mechanisms": mechanisms})


def auth_unencodable(host: str) -> MailError:
    """The username or password holds characters smtplib's mechanisms cannot send (they are ASCII-only)."""
    return MailError(Step.AUTH, False,
                     N_("The username or secret for %(host)s holds characters that cannot be sent with the "
                        "authentication methods of SMTP."),
                     N_("Use a credential made of ASCII characters."), {"host": host})


def auth_refused(host: str, code: int, reply: str | None) -> MailError:
    """AUTH answered with an error: 535 wrong credentials, 454 temporary, others (530, 534, 538) policy."""
    if code == 535:
        return MailError(Step.AUTH, False, N_("%(host)s rejected the username or secret."),
                         N_("Check the credential (username and secret) chosen for this account."),
                         {"host": host}, code, reply)
    if is_transient_code(code):
        return MailError(Step.AUTH, True, N_("%(host)s could not check the credentials right now."), TRY_LATER,
                         {"host": host}, code, reply)
    return MailError(Step.AUTH, False, N_("%(host)s refused the authentication."),
                     N_("Read the server's reply: it may require TLS or another authentication method."),
                     {"host": host}, code, reply)


def reply_error(step: Step, code: int, reply: str | None, *, logged_in: bool = True, **params) -> MailError:
    """A negative reply to MAIL (SENDER), RCPT (RECIPIENT) or DATA; transient for 4yz; logged_in: the session's."""
    transient = is_transient_code(code)
    if not logged_in and step in (Step.SENDER, Step.RECIPIENT) and asks_for_login(code, reply):
        message = (N_("The server refused the sender %(sender)s: the relay probably requires authentication, and "
                      "this account does not log in.") if step is Step.SENDER else
                   N_("The server refused the recipient %(recipient)s: the relay probably requires authentication, "
                      "and this account does not log in."))
        return MailError(step, transient, message,
                         N_("Turn on authentication for this account and choose the relay's credential (add it "
                            "under Credentials first if it is not there)."), params, code, reply)
    if step is Step.SENDER:
        return MailError(step, transient, N_("The server refused the sender %(sender)s."),
                         TRY_LATER if transient else N_("Check that this account may send as this address (the "
                                                        "sender e-mail or Return-Path)."), params, code, reply)
    if step is Step.RECIPIENT:
        return MailError(step, transient, N_("The server refused the recipient %(recipient)s."),
                         TRY_LATER if transient else N_("Check the recipient's address; the server may also refuse "
                                                        "to relay to this domain for this account."),
                         params, code, reply)
    return MailError(Step.DATA, transient, N_("The server refused the message."),
                     TRY_LATER if transient else N_("The server rejected the content (policy, size or content "
                                                    "filter); read its reply."), params, code, reply)


# How relays refuse a client that did not log in, besides RFC 4954's 530: Postfix, Exim, sendmail and Exchange words.
_LOGIN_WANTED = re.compile(r"client host rejected: access denied|relay(?:ing)? (?:access )?denied|relay not permitted"
                           r"|unable to relay|authentication (?:is )?required|not (?:logged in|authenticated)", re.I)


def asks_for_login(code: int | None, reply: str | None) -> bool:
    """Whether a refusal of MAIL or RCPT reads as "log in first"."""
    return code == 530 or bool(reply and _LOGIN_WANTED.search(reply))


def smtputf8_needed(where: str, address: str, host: str) -> MailError:
    """An address with a local part beyond ASCII (where: "sender", "recipient" or "header", as
    compose.smtputf8_address() says) for a server that does not offer SMTPUTF8: refused before MAIL."""
    return MailError({"sender": Step.SENDER, "recipient": Step.RECIPIENT}.get(where, Step.DATA), False,
                     N_("The address %(address)s has characters beyond ASCII before the @: only a server that offers "
                        "SMTPUTF8 can carry it, and %(host)s does not offer it, so nothing was sent."),
                     N_("Enable SMTPUTF8 on the relay (Postfix and Exim offer it), send through an account whose "
                        "server offers it, or use an address whose part before the @ is plain ASCII."),
                     {"address": address, "host": host})


LINE_BREAK_MESSAGES = {
    "helo_name": N_("The HELO name contains a line break or control character."),
    "address": N_("An e-mail address contains a line break or control character."),
}


def line_break(what: str) -> MailError:
    """A value ("helo_name" or "address") that would inject a command line; refused before anything is sent."""
    return MailError(Step.POLICY, False, LINE_BREAK_MESSAGES[what], N_("Correct the value; nothing was sent."), {})


def classify_reply_exception(exc: smtplib.SMTPResponseException, step: Step, host: str) -> MailError:
    """An smtplib reply exception raised during the opening (greeting, STARTTLS, AUTH) of the session."""
    reply = reply_text(exc.smtp_error)
    if step is Step.STARTTLS:
        return starttls_refused(host, exc.smtp_code, reply)
    if step is Step.AUTH:
        return auth_refused(host, exc.smtp_code, reply)
    return greeting_refused(host, exc.smtp_code, reply)


def timed_out(exc: BaseException) -> bool:
    """A read or connect timeout, also when smtplib re-raised it as SMTPServerDisconnected."""
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        exc = exc.__cause__ or exc.__context__
    return isinstance(exc, TimeoutError) and not isinstance(exc, ProxyTimeoutError)


def classify(exc: BaseException, step: Step, *, host: str, port: int, proxy: str | None = None,
             seconds: float = 0, command: str | None = None, mode: str | None = None) -> MailError:
    """Any failure raised while `step` was in progress (CONNECT, TLS, GREETING, STARTTLS, AUTH, ...) as a MailError."""
    if isinstance(exc, MailError):
        return exc
    if isinstance(exc, OversizedReply):
        return oversized_reply(host, exc.limit, command, step, exc.line)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return tls_error(exc, host, port, mode)
    if step is Step.CONNECT and isinstance(exc, OSError):
        return connect_error(exc, host, port)
    if timed_out(exc):
        return timeout_error(host, seconds, command, step, port, mode)
    if isinstance(exc, smtplib.SMTPResponseException):
        return classify_reply_exception(exc, step, host)
    if step is Step.TLS and isinstance(exc, (OSError, smtplib.SMTPServerDisconnected)):
        return tls_error(exc, host, port, mode)
    if isinstance(exc, (OSError, smtplib.SMTPServerDisconnected)):
        return connection_lost(host, exc, proxy)
    return MailError(step, False, N_("The dialogue with %(host)s failed (%(reason)s)."),
                     N_("Read the transcript for the server's last reply."),
                     {"host": host, "reason": str(exc) or type(exc).__name__})


def _seconds(value: float) -> str:
    return f"{value:g}"
