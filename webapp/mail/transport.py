"""SMTP delivery: plain, STARTTLS that fails closed, or implicit TLS; AUTH; timeouts and an overall deadline;
a transcript of the dialogue without secrets. Direct or through a network connector (see connectors.py)."""
import base64
import dataclasses
import functools
import re
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage

from webapp.mail import errors
from webapp.mail.compose import ascii_addr_spec, has_control_characters, message_bytes, needs_smtputf8
from webapp.mail.connectors import Hop, open_connection
from webapp.mail.errors import MailError, Step

MODES = ("plain", "tls", "ssl")
_DOT_AT_LINE_START = re.compile(rb"(?m)^\.")
MASK = "********"
# Errors after which the server is still in step with us (smtplib already sent RSET): the session stays usable.
REPLY_STEPS = (Step.SENDER, Step.RECIPIENT, Step.DATA)


@dataclass(frozen=True)
class SmtpSettings:
    """Everything needed to reach one SMTP server, as plain data."""

    host: str
    port: int
    mode: str                      # "plain" | "tls" (STARTTLS) | "ssl" (implicit TLS)
    username: str | None = None    # AUTH when username is not None
    password: str | None = field(default=None, repr=False)
    verify_tls: bool = True        # False = "ignore certificate error"
    ca_pem: str | None = None      # extra trusted CA (PEM text), on top of the system store
    helo_name: str | None = None
    hop: Hop | None = None
    timeout: float = 10.0          # connect and each read
    deadline: float = 30.0         # the whole dialogue
    blocked_networks: tuple = ()   # OUTBOUND_BLOCKED_NETWORKS: never connected to (see connectors.open_connection)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}")


@dataclass
class SendResult:
    """What happened: success with the final reply, or the failure explained, and the scrubbed transcript."""

    ok: bool
    elapsed: float                 # seconds
    code: int | None               # final reply code (250 on success)
    reply: str | None              # final reply text
    tls: str                       # "none" | "verified" | "unverified"
    transcript: list[str]          # "S: 220 ...", "C: EHLO ...", AUTH payloads replaced by "C: AUTH PLAIN ********"
    error: MailError | None
    refused: dict = field(default_factory=dict)  # recipients refused while others were accepted: {rcpt: (code, text)}

    @classmethod
    def refusal(cls, error: MailError) -> "SendResult":
        """A result for a send our own rules refused before any connection: nothing was opened, nothing was said."""
        return cls(ok=False, elapsed=0.0, code=None, reply=None, tls="none", transcript=[], error=error)


def send_message(settings: SmtpSettings, message: EmailMessage, *, envelope_from: str,
                 recipients: list[str]) -> SendResult:
    """Open a session, send one message, close; never raises for SMTP/network failures (error in the result)."""
    session = SmtpSession(settings)
    # One deadline for the whole dialogue, QUIT included.
    session._watchdog.arm(settings.deadline)
    try:
        result = session._deliver(message, envelope_from, recipients)
        session._quit()
    finally:
        session._watchdog.disarm()
        session._abort()
    result.transcript = session._scrub_lines(session.transcript)
    return result


class SmtpSession:
    """One connection for many messages (the worker). send() opens the connection when needed (again after a
    failure that broke it); each send() is bounded by the deadline, the opening included."""

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self.transcript: list[str] = []
        self.tls = "none"
        self._watchdog = _Watchdog()
        self._client: _Client | None = None
        self._secrets = _secret_forms(settings)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def send(self, message: EmailMessage | bytes, *, envelope_from: str, recipients: list[str],
             then: tuple[bytes, str, list[str]] | None = None) -> SendResult:
        """Send one message (an EmailMessage, or its bytes from compose.message_bytes() / notification_bytes())
        over the session; never raises for SMTP/network failures (error in the result).

        then: the next message (bytes, envelope sender, recipients) when the caller will send it next. With
        PIPELINING its MAIL, RCPT and DATA go in the same write as this message's final dot (RFC 2920 3.1), and
        their replies are read by the next send(): one round trip per message instead of two. If the next send()
        is for another message after all (a stop, a lost lease), the connection is dropped rather than used: the
        server is waiting for that message's content, and a transaction cut before its final dot is discarded.
        """
        self._watchdog.arm(self.settings.deadline)
        try:
            result = self._deliver(message, envelope_from, recipients, then)
        finally:
            self._watchdog.disarm()
        # Each result carries its own part of the dialogue (the opening goes with the first message after it).
        result.transcript = self._scrub_lines(self.transcript)
        self.transcript.clear()
        return result

    def close(self) -> None:
        """Say QUIT (bounded by the read timeout) and close the connection."""
        self._quit()
        self._abort()

    def _deliver(self, message: EmailMessage | bytes, envelope_from: str, recipients: list[str],
                 then: tuple[bytes, str, list[str]] | None = None) -> SendResult:
        """Open if needed and run one mail transaction; the caller arms the watchdog."""
        if not recipients:
            raise ValueError("a message needs at least one recipient")
        started = time.monotonic()
        refused, error = {}, None
        try:
            _refuse_line_breaks(self.settings.helo_name, envelope_from, recipients)
            if self._client is not None and self._client.announced not in (None, (message, envelope_from, recipients)):
                self._abort()  # it waits for another message's content: never send it this one's
            if self._client is None:
                self._open()
            refused = {recipient: (code, self._scrub(errors.reply_text(text))) for recipient, (code, text)
                       in self._transaction(message, envelope_from, recipients, then).items()}
            code, reply = self._client.last_reply
        except (MailError, OSError, smtplib.SMTPException) as exc:
            error = self._explain(exc)
            code, reply = error.code, error.reply
            if not (error.step in REPLY_STEPS and self._client is not None and self._client.sock is not None):
                self._abort()
        return SendResult(ok=error is None, elapsed=time.monotonic() - started, code=code,
                          reply=self._scrub(errors.reply_text(reply)), tls=self.tls, transcript=[],
                          error=self._scrub_error(error), refused=refused)

    def _quit(self) -> None:
        """A polite QUIT when the connection is still up; failures do not matter any more. Not when the next
        message was announced: the server reads what follows as its content, so the connection is just closed."""
        if self._client is not None and self._client.sock is not None and self._client.announced is None:
            try:
                self._client.quit()
            except (OSError, smtplib.SMTPException):
                pass

    def _abort(self) -> None:
        """Close the connection without a word."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _open(self) -> None:
        settings = self.settings
        self.tls = "none"
        context = _tls_context(settings) if settings.mode != "plain" else None
        self._client = client = _Client(self, context)
        code, reply = client.connect(settings.host, settings.port)
        if code != 220:
            raise errors.greeting_refused(settings.host, code, errors.reply_text(reply))
        client.ehlo_or_helo_if_needed()
        if settings.mode == "tls":
            client.step = Step.STARTTLS
            # Fail closed: without STARTTLS (or with an error reply to it) nothing else is said in clear text.
            if not client.has_extn("starttls"):
                raise errors.starttls_not_offered(settings.host)
            client.starttls(context=_StartTlsContext(client))
            client.step = Step.GREETING
            client.ehlo_or_helo_if_needed()  # RFC 3207: forget the pre-TLS EHLO answer and ask again
        if settings.username is not None:
            client.step = Step.AUTH
            self._authenticate(client)

    def _authenticate(self, client: "_Client") -> None:
        host = self.settings.host
        if not client.has_extn("auth"):
            raise errors.auth_not_offered(host)
        try:
            client.login(self.settings.username, self.settings.password or "")
        except UnicodeEncodeError:
            # smtplib's mechanisms are ASCII-only; the exception would carry the secret, so it is dropped here.
            raise errors.auth_unencodable(host) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise errors.auth_refused(host, exc.smtp_code, errors.reply_text(exc.smtp_error)) from None
        except smtplib.SMTPException as exc:
            if type(exc) is not smtplib.SMTPException:  # disconnects and other replies: classified later
                raise
            raise errors.auth_no_mechanism(host, client.esmtp_features.get("auth", "").strip()) from None
        finally:
            client.user = client.password = None  # smtplib.login() keeps them on the client

    def _transaction(self, message: EmailMessage | bytes, envelope_from: str, recipients: list[str],
                     then: tuple[bytes, str, list[str]] | None = None) -> dict:
        client = self._client
        client.step = Step.SENDER
        sender, to_addrs, international = _wire_addresses(envelope_from, recipients)
        if international and not client.has_extn("smtputf8"):
            raise errors.smtputf8_needed(envelope_from)
        data = message if isinstance(message, bytes) else message_bytes(message, international)
        options = ["SMTPUTF8", "BODY=8BITMIME"] if international else []
        try:
            if client.has_extn("pipelining"):
                return client.pipelined_sendmail(sender, to_addrs, data, options,
                                                 announce=self._announcement(then, international))
            return client.sendmail(sender, to_addrs, data, options)
        except smtplib.SMTPSenderRefused as exc:
            raise errors.reply_error(Step.SENDER, exc.smtp_code, errors.reply_text(exc.smtp_error),
                                     sender=envelope_from) from None
        except smtplib.SMTPRecipientsRefused as exc:
            recipient, (code, reply) = next(iter(exc.recipients.items()))
            error = errors.reply_error(Step.RECIPIENT, code, errors.reply_text(reply), recipient=recipient)
            # A later attempt may still reach the recipients that were refused only for now.
            transient = any(errors.is_transient_code(c) for c, _ in exc.recipients.values())
            raise dataclasses.replace(error, transient=transient) from None
        except smtplib.SMTPDataError as exc:
            raise errors.reply_error(Step.DATA, exc.smtp_code, errors.reply_text(exc.smtp_error)) from None

    def _announcement(self, then: tuple[bytes, str, list[str]] | None, international: bool) -> tuple | None:
        """The next message's (key, sender, recipients, bytes) to announce, when it can be: plain ASCII envelopes
        only (an SMTPUTF8 one changes how commands are encoded), and addresses our own checks accept."""
        if then is None or international:
            return None
        data, envelope_from, recipients = then
        try:
            _refuse_line_breaks(None, envelope_from, recipients)
            sender, to_addrs, next_international = _wire_addresses(envelope_from, recipients)
        except (MailError, ValueError):
            return None  # its own send() explains it
        if not recipients or next_international:
            return None
        return (data, envelope_from, recipients), sender, to_addrs, data

    def _explain(self, exc: BaseException) -> MailError:
        settings = self.settings
        client = self._client
        # First: once the watchdog has cut the connection, whatever broke (even a half-read reply) broke because of it.
        if self._watchdog.expired or (errors.timed_out(exc) and self._watchdog.remaining() <= 0.05):
            return errors.deadline_error(settings.host, settings.deadline)
        if isinstance(exc, MailError):
            return exc
        return errors.classify(exc, client.step if client else Step.CONNECT, host=settings.host, port=settings.port,
                               proxy=settings.hop.label if settings.hop else None, seconds=settings.timeout,
                               command=client.command if client else None)

    def _scrub(self, text: str | None) -> str | None:
        """text without the password in any form it could take on the wire (defence in depth)."""
        if text is None:
            return None
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def _scrub_lines(self, lines: list[str]) -> list[str]:
        """The transcript lines, scrubbed."""
        return [self._scrub(line) for line in lines]

    def _scrub_error(self, error: MailError | None) -> MailError | None:
        if error is None:
            return None
        params = {k: self._scrub(v) if isinstance(v, str) else v for k, v in error.params.items()}
        # A fresh error: no traceback or chained exception holding frames (and their locals) alive.
        return dataclasses.replace(error, params=params, reply=self._scrub(error.reply))


class _Client(smtplib.SMTP):
    """smtplib's client on our socket (direct or through the hop; TLS-wrapped for implicit TLS), recording the
    transcript and bounding every read and write by the read timeout and the session's deadline."""

    def __init__(self, session: SmtpSession, tls_context: ssl.SSLContext | None):
        super().__init__(local_hostname=session.settings.helo_name or _default_helo_name(),
                         timeout=session.settings.timeout)
        self.settings = session.settings
        self.session = session
        self._watchdog = session._watchdog
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
        tls = self.tls_context.wrap_socket(sock, server_hostname=self.settings.host, do_handshake_on_connect=False)
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
        if self.sock is not None:
            self.sock.settimeout(self._watchdog.io_timeout(self.settings.timeout))
        code, reply = super().getreply()
        self.last_reply = (code, reply)
        lines = reply.decode("utf-8", "replace").split("\n") if reply else [""]
        for number, text in enumerate(lines, 1):
            self._note(f"S: {code}{'-' if number < len(lines) else ' '}{text}".rstrip())
        return code, reply

    def auth(self, mechanism, authobject, *, initial_response_ok=True):
        self._in_auth = True
        try:
            return super().auth(mechanism, authobject, initial_response_ok=initial_response_ok)
        finally:
            self._in_auth = False

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
        results and exceptions as smtplib's sendmail() (refused recipients in the returned dict).

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
        return [f"mail FROM:{_quoted(from_addr)}{option_text}", *(f"rcpt TO:{_quoted(rcpt)}" for rcpt in to_addrs),
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
        self.session.transcript.append(line)


class _StartTlsContext:
    """Handed to smtplib.starttls() as its SSL context, so the handshake runs under the session's watchdog."""

    def __init__(self, client: _Client):
        self.client = client

    def wrap_socket(self, sock, server_hostname=None):
        return self.client.handshake(sock)


class _Watchdog:
    """The overall deadline: reads never wait longer than what is left, and when the time is up the connection is
    shut down so that no read, write or TLS handshake can outlive it (a trickling server could otherwise)."""

    def __init__(self):
        self.expired = False
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._end: float | None = None
        self._generation = 0

    def arm(self, seconds: float) -> None:
        with self._lock:
            self._generation += 1  # an alarm of an earlier arming finds a newer generation and does nothing
            self.expired = False
            self._end = time.monotonic() + seconds
            generation, end = self._generation, self._end
        _ALARMS.set(self, end, generation)

    def disarm(self) -> None:
        with self._lock:
            self._generation += 1
            self._end = None
        _ALARMS.cancel(self)

    def remaining(self) -> float:
        return float("inf") if self._end is None else self._end - time.monotonic()

    def io_timeout(self, timeout: float) -> float:
        """The timeout for the next socket operation: the read timeout, or less when the deadline is nearer."""
        left = self.remaining()
        if left <= 0:
            self.expired = True
            raise TimeoutError("the overall deadline has passed")
        return min(timeout, left)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._fd = sock.fileno()

    def forget(self) -> None:
        """Called before the socket is closed, so that a late timer never touches a reused descriptor."""
        with self._lock:
            self._fd = None

    def _fire(self, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return
            self.expired = True
            if self._fd is None:
                return
            # A temporary object on the descriptor: whichever object (plain or TLS) owns it, the blocked call wakes.
            try:
                probe = socket.socket(fileno=self._fd)
            except OSError:
                return
            try:
                probe.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                probe.detach()


class _AlarmClock:
    """One thread for every watchdog of the process: it sleeps until the earliest deadline set and fires the
    watchdogs whose time is up. (A timer thread per message cost the worker more than a whole SMTP dialogue.)"""

    def __init__(self):
        self._condition = threading.Condition()
        self._alarms: dict[_Watchdog, tuple[float, int]] = {}  # watchdog -> (monotonic end, its generation)
        self._wake_at = float("inf")
        self._thread: threading.Thread | None = None

    def set(self, watchdog: _Watchdog, end: float, generation: int) -> None:
        with self._condition:
            self._alarms[watchdog] = (end, generation)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="smtp-deadlines", daemon=True)
                self._thread.start()
            elif end < self._wake_at:
                self._condition.notify()

    def cancel(self, watchdog: _Watchdog) -> None:
        # No need to wake the thread: at its planned time it finds nothing due and sleeps until the next end.
        with self._condition:
            self._alarms.pop(watchdog, None)

    def _run(self) -> None:
        while True:
            with self._condition:
                now = time.monotonic()
                due = [(watchdog, generation) for watchdog, (end, generation) in self._alarms.items() if end <= now]
                for watchdog, _ in due:
                    del self._alarms[watchdog]
                self._wake_at = min((end for end, _ in self._alarms.values()), default=float("inf"))
                if not due:
                    self._condition.wait(None if self._wake_at == float("inf") else self._wake_at - now)
            for watchdog, generation in due:  # outside the clock's lock: firing takes the watchdog's own
                watchdog._fire(generation)


_ALARMS = _AlarmClock()


@functools.lru_cache(maxsize=4096)
def _quoted(address: str) -> str:
    """smtplib.quoteaddr(), which parses the address every time: a worker sends to the same few over and over."""
    return smtplib.quoteaddr(address)


@functools.cache
def _default_helo_name() -> str:
    """smtplib's own EHLO name (this machine's FQDN, else its address literal), worked out once per process: it
    takes reverse DNS lookups that no timeout bounds, which smtplib would otherwise repeat on every connection."""
    return smtplib.SMTP().local_hostname


def _tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    """Verifying by default (system store, TLS 1.2+, host name), plus the account's CA; or encrypting only."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not settings.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif settings.ca_pem:
        try:
            context.load_verify_locations(cadata=settings.ca_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise errors.bad_ca_certificate(exc) from None
    return context


def _wire_addresses(envelope_from: str, recipients: list[str]) -> tuple[str, list[str], bool]:
    """The envelope as it goes on the wire (IDN domains in A-labels), and whether it needs SMTPUTF8."""
    sender, to_addrs = ascii_addr_spec(envelope_from), [ascii_addr_spec(r) for r in recipients]
    return sender, to_addrs, needs_smtputf8(sender, to_addrs)


def _refuse_line_breaks(helo_name: str | None, envelope_from: str, recipients: list[str]) -> None:
    """Validated by the forms already; checked again because a line break here would inject an SMTP command."""
    if helo_name is not None and has_control_characters(helo_name):
        raise errors.line_break("helo_name")
    if any(has_control_characters(address) for address in (envelope_from, *recipients)):
        raise errors.line_break("address")


def _secret_forms(settings: SmtpSettings) -> list[str]:
    """The passwords as they could appear: plain, base64 alone, inside AUTH PLAIN's base64 and inside the HTTP
    connector's Basic token; longest first."""
    forms = set()
    user = settings.username or ""
    for password in (settings.password, settings.hop.password if settings.hop else None):
        if password:
            forms.add(password)
            for raw in (password, f"\0{user}\0{password}", f"{user}\0{user}\0{password}"):
                forms.add(base64.b64encode(raw.encode("utf-8")).decode("ascii"))
    if settings.hop is not None and settings.hop.password:
        token = f"{settings.hop.username or ''}:{settings.hop.password}"
        forms.add(base64.b64encode(token.encode("utf-8")).decode("ascii"))
    return sorted(forms, key=len, reverse=True)
