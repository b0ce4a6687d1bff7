"""smtplib's client on our own socket: the transcript without secrets, every read and write bounded by the read
timeout and the session's deadline, and RFC 2920 pipelining."""
import base64
import binascii
import functools
import json
import re
import smtplib
import socket
import ssl

from webapp.mail.access_tokens import DUMMY_RESPONSES
from webapp.mail.connectors import open_connection
from webapp.mail.errors import OversizedReply, Step
from webapp.mail.idn import ascii_domain

_DOT_AT_LINE_START = re.compile(rb"(?m)^\.")
MASK = "********"
# smtplib's own mechanisms, in the order to prefer them. Over TLS the password is encrypted whichever is used, and
# PLAIN works with every password store, while CRAM-MD5 needs the clear password on the server (many keep only a
# hash, and refuse a right password offered that way). In clear, CRAM-MD5 is the one that does not send the password.
AUTH_OVER_TLS = ("PLAIN", "LOGIN", "CRAM-MD5")
AUTH_IN_CLEAR = ("CRAM-MD5", "PLAIN", "LOGIN")
# RFC 4954 §4: AUTH with its initial response must fit SMTP's command line (512 octets, RFC 5321 §4.5.3.1.4), else
# the response follows the server's empty 334 challenge, on a line of up to 12,288 octets. A bearer token (a JWT of
# a few KB) never fits, so it goes as curl sends it and Microsoft documents it: AUTH XOAUTH2, 334, the response.
COMMAND_LINE_LIMIT = 512
MAX_CHALLENGE_SHOWN = 512  # characters of a server's decoded error challenge noted in the transcript
# A reply is a few lines (RFC 5321 4.5.3.1.5: 512 octets each); smtplib bounds each line but not how many come, so a
# server could send one multi-line reply without end. Past these limits the connection is closed.
MAX_REPLY = 64 * 1024        # bytes of one reply, all its lines together
MAX_REPLY_LINE = 8192        # bytes of one line, as smtplib allows
SHOWN_OF_OVERSIZED = 10      # lines of an oversized reply kept in the transcript
MAX_TRANSCRIPT = 64 * 1024   # characters of the server's lines kept in one result's transcript
TRANSCRIPT_CUT = f"*: … cut off here: a transcript keeps at most {MAX_TRANSCRIPT // 1024} KiB of the server's lines"


class BearerRefused(smtplib.SMTPAuthenticationError):
    """AUTH with a bearer token refused; status: the "status" of the server's JSON error challenge, if it sent one."""

    def __init__(self, code: int, reply: bytes, status: str | None = None):
        super().__init__(code, reply)
        self.status = status


class Transcript:
    """The dialogue of one result, line by line. The server's lines count up to MAX_TRANSCRIPT characters; past that
    one marker line stands for the rest of them, while our own (bounded) lines are still noted."""

    def __init__(self):
        self.lines: list[str] = []
        self._server_chars = 0

    def note(self, line: str) -> None:
        if line.startswith("S:"):
            if self._server_chars > MAX_TRANSCRIPT:
                return
            self._server_chars += len(line)
            if self._server_chars > MAX_TRANSCRIPT:
                line = TRANSCRIPT_CUT
        self.lines.append(line)

    def take(self) -> list[str]:
        """The lines so far; the transcript starts afresh (the next result's)."""
        lines, self.lines, self._server_chars = self.lines, [], 0
        return lines


class Client(smtplib.SMTP):
    """smtplib's client on our socket (direct or through the hop; TLS-wrapped for implicit TLS), recording the
    transcript and bounding every read and write by the read timeout and the session's deadline."""

    def __init__(self, session, tls_context: ssl.SSLContext | None):
        super().__init__(local_hostname=session.settings.helo_name or _default_helo_name(),
                         timeout=session.settings.timeout)
        self.settings = session.settings
        self.session = session
        self._watchdog = session.watchdog
        self.tls_context = tls_context
        self.step = Step.CONNECT
        self.command: str | None = None      # the command awaiting its reply (None: the greeting)
        self.last_reply: tuple[int | None, bytes | None] = (None, None)
        self._in_auth = False
        self._in_data = False
        # The message whose MAIL, RCPT and DATA went out with the last final dot, replies unread (see
        # SmtpSession.send's then), as (bytes, envelope sender, recipients); and those commands, for its transcript.
        self.announced: tuple | None = None
        self._announced_commands: list[str] = []

    def _get_socket(self, host, port, timeout):
        self._host = host  # smtplib sets it only when its constructor connects; STARTTLS needs it
        hop = self.settings.hop
        sock = open_connection(host, port, self._watchdog.io_timeout(self.settings.timeout), hop,
                               blocked_networks=self.settings.blocked_networks)
        self._watchdog.watch(sock)
        self._note(f"*: connected to {host}:{port}" + (f" through the connector {hop.label}" if hop else ""))
        if self.settings.mode == "ssl":
            sock = self.handshake(sock)
        self.step = Step.GREETING
        return sock

    def handshake(self, sock: socket.socket) -> ssl.SSLSocket:
        """Wrap sock in TLS and shake hands, bounded like any read."""
        self.step = Step.TLS
        # The A-label open_connection resolved: ssl would otherwise make its own, IDNA 2003, name of the text.
        tls = self.tls_context.wrap_socket(sock, server_hostname=ascii_domain(self.settings.host),
                                           do_handshake_on_connect=False)
        try:
            tls.settimeout(self._watchdog.io_timeout(self.settings.timeout))
            tls.do_handshake()
        except BaseException:
            self._watchdog.forget()
            tls.close()
            raise
        verified = self.tls_context.verify_mode == ssl.CERT_REQUIRED
        self.session.tls = "verified" if verified else "unverified"
        self._note(f"*: TLS established ({tls.version()}, certificate {'verified' if verified else 'NOT verified'})")
        return tls

    def send(self, s):
        self._note_sent(s)
        if self.sock is not None:
            self.sock.settimeout(self._watchdog.io_timeout(self.settings.timeout))
        super().send(s)

    def getreply(self):
        """smtplib's getreply() with a limit on the whole reply, not only on each line: a server that never ends a
        multi-line reply ("220-…" forever) is cut off at MAX_REPLY bytes instead of filling the memory."""
        if self.sock is not None:
            self.sock.settimeout(self._watchdog.io_timeout(self.settings.timeout))
        if self.file is None:
            self.file = self.sock.makefile("rb")
        raw_lines, size = [], 0
        while True:
            try:
                line = self.file.readline(MAX_REPLY_LINE + 1)
            except OSError as exc:
                self.close()
                raise smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}")
            if not line:
                self.close()
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            size += len(line)
            long_line = len(line) > MAX_REPLY_LINE
            if size > MAX_REPLY or long_line:
                for shown in raw_lines[:SHOWN_OF_OVERSIZED]:
                    self._note("S: " + shown.decode("utf-8", "replace").rstrip())
                limit = MAX_REPLY_LINE if long_line else MAX_REPLY
                self._note(f"*: … {'a reply line' if long_line else 'the reply'} went on past {limit // 1024} KiB: "
                           "cut off, connection closed")
                self.close()
                raise OversizedReply(limit, line=long_line)
            raw_lines.append(line)
            try:
                code = int(line[:3])
            except ValueError:
                code = -1
                break
            if line[3:4] != b"-":
                break
        reply = b"\n".join(line[4:].strip(b" \t\r\n") for line in raw_lines)
        self.last_reply = (code, reply)
        lines = reply.decode("utf-8", "replace").split("\n") if reply else [""]
        for number, text in enumerate(lines, 1):
            self._note(f"S: {code}{'-' if number < len(lines) else ' '}{text}".rstrip())
        return code, reply

    def login(self, user, password, *, initial_response_ok=True):
        """smtplib's login() with one mechanism, the best offered (see auth_mechanism): smtplib would try the next
        one after a refusal, so one wrong password would count as several failed logins on the server (fail2ban,
        Dovecot's growing delay)."""
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("auth"):
            raise smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
        mechanism = auth_mechanism(self.esmtp_features["auth"], encrypted=isinstance(self.sock, ssl.SSLSocket))
        if mechanism is None:
            raise smtplib.SMTPException("No suitable authentication method found.")
        self.user, self.password = user, password
        authobject = getattr(self, "auth_" + mechanism.lower().replace("-", "_"))
        return self.auth(mechanism, authobject, initial_response_ok=initial_response_ok)

    def auth(self, mechanism, authobject, *, initial_response_ok=True):
        self._in_auth = True
        try:
            return super().auth(mechanism, authobject, initial_response_ok=initial_response_ok)
        finally:
            self._in_auth = False

    def bearer_auth(self, mechanism: str, response: bytes) -> None:
        """AUTH with a bearer token's SASL response (access_tokens.bearer_response). To the server's error challenge
        (334 with base64 JSON, Gmail's and RFC 7628's) the dummy response goes, so that the server gives its final
        reply. Raises BearerRefused for anything but 235."""
        encoded = base64.b64encode(response).decode("ascii")
        status = None
        self._in_auth = True
        try:
            if len(f"AUTH {mechanism} {encoded}\r\n") <= COMMAND_LINE_LIMIT:
                code, reply = self.docmd("AUTH", f"{mechanism} {encoded}")
            else:
                code, reply = self.docmd("AUTH", mechanism)
                if code == 334:
                    code, reply = self.docmd(encoded)
            if code == 334:
                status = self._error_challenge(reply)
                code, reply = self.docmd(base64.b64encode(DUMMY_RESPONSES[mechanism]).decode("ascii"))
                if code == 334:  # a second challenge has no place here: cancel (RFC 4954 §4)
                    code, reply = self.docmd("*")
        finally:
            self._in_auth = False
        if code != 235:
            raise BearerRefused(code, reply, status)

    def _error_challenge(self, challenge: bytes) -> str | None:
        """The server's error challenge decoded into the transcript (it holds no secret: status, schemes, scope);
        its status, or None when it is not the JSON object RFC 7628 §3.2.2 describes."""
        try:
            text = base64.b64decode(challenge, validate=True).decode("utf-8")
            error = json.loads(text)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        self._note(f"*: the server's error challenge: {text[:MAX_CHALLENGE_SHOWN]}")
        return str(error["status"]) if isinstance(error, dict) and "status" in error else None

    def data(self, msg):
        self._in_data = True
        try:
            return super().data(msg)
        finally:
            self._in_data = False

    def pipelined_sendmail(self, from_addr: str, to_addrs: list[str], msg: bytes, mail_options=(),
                           announce: tuple | None = None) -> dict:
        """sendmail() with RFC 2920 PIPELINING: MAIL, every RCPT and DATA in one write, their replies read in order,
        then the message and its reply: two round trips instead of three plus one per recipient. The same
        results and exceptions as smtplib's sendmail() (refused recipients in the returned dict). from_addr and
        to_addrs are bare addresses (local@domain, as compose.envelope_address() makes them): written in angle
        brackets as they are, without smtplib.quoteaddr()'s parsing.

        announce: (key, sender, recipients, bytes) of the next message, whose MAIL, RCPT and DATA then go with
        this message's final dot; the next call, for that message, reads their replies instead of sending them
        (SmtpSession checks that it is for that message). One round trip per message.
        """
        if any(option.lower() == "smtputf8" for option in mail_options):
            self.command_encoding = "utf-8"
        if self.announced is not None:
            self.announced = None
            for command in self._announced_commands:  # in this message's transcript, where they belong
                self._note_sent(command)
        else:
            self._send_group(self._envelope(from_addr, to_addrs, msg, mail_options))
        mail_reply = self._reply_to("MAIL")
        if mail_reply[0] == 421:
            self.close()
            raise smtplib.SMTPSenderRefused(*mail_reply, from_addr)
        refused = {}
        for rcpt in to_addrs:
            code, text = self._reply_to("RCPT")
            if code not in (250, 251):
                refused[rcpt] = (code, text)
            if code == 421:
                self.close()
                raise smtplib.SMTPRecipientsRefused(refused)
        code, text = self._reply_to("DATA")
        if code == 421:
            self.close()
            raise smtplib.SMTPDataError(code, text)
        if code == 354 and (mail_reply[0] != 250 or len(refused) == len(to_addrs)):
            # RFC 2920 3.1: a server that accepted DATA anyway gets an empty message, ended at once.
            self._send_group(["."])
            self._reply_to("DATA")
        if mail_reply[0] != 250:
            self._rset()
            raise smtplib.SMTPSenderRefused(*mail_reply, from_addr)
        if len(refused) == len(to_addrs):
            self._rset()
            raise smtplib.SMTPRecipientsRefused(refused)
        if code != 354:
            self._rset()
            raise smtplib.SMTPDataError(code, text)
        self._in_data = True
        try:
            body = _DOT_AT_LINE_START.sub(b"..", msg)  # RFC 5321 4.5.2 transparency
            body += (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n"
            if announce is None:
                self.send(body)
            else:
                key, next_from, next_to, next_msg = announce
                commands = self._envelope(next_from, next_to, next_msg, ())
                self._note_sent(body)
                self._in_data = False
                self._send_bytes(body + "".join(f"{command}\r\n" for command in commands).encode("ascii"))
                self.announced, self._announced_commands = key, commands
        finally:
            self._in_data = False
        code, text = self.getreply()
        if code != 250:
            if code == 421:
                self.close()
            elif self.announced is None:  # (else the next transaction has begun: the server reset this one)
                self._rset()
            raise smtplib.SMTPDataError(code, text)
        return refused

    def _envelope(self, from_addr: str, to_addrs: list[str], msg: bytes, mail_options) -> list[str]:
        """MAIL (with SIZE when offered), one RCPT per recipient, DATA."""
        options = list(mail_options)
        if self.has_extn("size"):
            options.append(f"size={len(msg)}")
        option_text = "".join(f" {option}" for option in options)
        return [f"mail FROM:<{from_addr}>{option_text}", *(f"rcpt TO:<{rcpt}>" for rcpt in to_addrs),
                "data"]

    def _send_group(self, commands: list[str]) -> None:
        """Several commands in one write (each in the transcript)."""
        for command in commands:
            self._note_sent(command)
        self._send_bytes("".join(f"{command}\r\n" for command in commands))

    def _send_bytes(self, data: str | bytes) -> None:
        """One write, bounded like any other; the caller notes it in the transcript."""
        if self.sock is not None:
            self.sock.settimeout(self._watchdog.io_timeout(self.settings.timeout))
        smtplib.SMTP.send(self, data)

    def _reply_to(self, command: str) -> tuple[int, bytes]:
        self.command = command  # what a timeout or a disconnection here is explained by
        return self.getreply()

    def close(self):
        self._watchdog.forget()
        self.announced = None
        super().close()

    def _note_sent(self, s: str | bytes) -> None:
        if isinstance(s, bytes) and self._in_data:
            # smtplib sends the DATA command as text and the (dot-stuffed) message as bytes.
            self.command = "DATA"
            self._note(f"C: <message, {len(s)} bytes>")
            return
        text = (s.decode("utf-8", "replace") if isinstance(s, bytes) else s).rstrip("\r\n")
        if self._in_auth:
            # Every client line of the AUTH exchange carries the credential (even LOGIN's username is base64).
            verb, _, rest = text.partition(" ")
            mechanism, _, initial_response = rest.partition(" ")
            if verb.upper() == "AUTH":
                text = f"AUTH {mechanism} {MASK}" if initial_response else f"AUTH {mechanism}"
            else:
                text = MASK
            self.command = "AUTH"
        else:
            self.command = text.partition(" ")[0].upper()
        self._note(f"C: {text}")

    def _note(self, line: str) -> None:
        self.session.transcript.note(line)


def auth_mechanism(offered: str, *, encrypted: bool) -> str | None:
    """The one mechanism to log in with, of those a server's AUTH line offers, or None when none is usable."""
    names = offered.upper().split()
    return next((name for name in (AUTH_OVER_TLS if encrypted else AUTH_IN_CLEAR) if name in names), None)


class StartTlsContext:
    """Handed to smtplib.starttls() as its SSL context, so the handshake runs under the session's watchdog."""

    def __init__(self, client: Client):
        self.client = client

    def wrap_socket(self, sock, server_hostname=None):
        return self.client.handshake(sock)


@functools.cache
def _default_helo_name() -> str:
    """smtplib's own EHLO name (this machine's FQDN, else its address literal), worked out once per process: it
    takes reverse DNS lookups that no timeout bounds, which smtplib would otherwise repeat on every connection."""
    return smtplib.SMTP().local_hostname
