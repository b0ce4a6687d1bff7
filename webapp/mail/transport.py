"""SMTP delivery: plain, STARTTLS that fails closed, or implicit TLS; AUTH; timeouts and an overall deadline;
a transcript of the dialogue without secrets. Direct or through a network connector (see connectors.py); the
smtplib client is in client.py, the deadline's watchdog in deadline.py."""
import base64
import dataclasses
import smtplib
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import urlsplit

from webapp.mail import access_tokens, errors, oauth_errors
from webapp.mail.access_tokens import AccessToken
from webapp.mail.client import MASK, BearerRefused, Client, StartTlsContext, Transcript
from webapp.mail.compose import ascii_addr_spec, has_control_characters, message_bytes, smtputf8_address
from webapp.mail.connectors import Hop
from webapp.mail.deadline import Watchdog
from webapp.mail.errors import MailError, Step
from webapp.mail.idn import ascii_domain
from webapp.mail.oauth import OAuthGrant
from webapp.mail.token_endpoint import check_token_url

MODES = ("plain", "tls", "ssl")
# Errors after which the server is still in step with us (smtplib already sent RSET): the session stays usable.
REPLY_STEPS = (Step.SENDER, Step.RECIPIENT, Step.DATA)
# QUIT is a courtesy: the whole of it is bounded by this, however slowly the server drips its reply.
QUIT_SECONDS = 2.0


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
    oauth: OAuthGrant | None = None  # AUTH with an access token instead of a password; username is its mailbox
    oauth_allow_loopback: bool = False  # OAUTH_ALLOW_LOOPBACK: an http:// token URL on a loopback address (tests)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}")
        if self.oauth is not None:
            if self.password is not None or self.username not in (None, self.oauth.mailbox):
                raise ValueError("an OAuth grant logs in as its mailbox, without a password")
            object.__setattr__(self, "username", self.oauth.mailbox)


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
    opening: bool = False          # failed while opening the connection: any message over it would fail the same way
    token: dict | None = None      # the OAuth access token this opening used: {"expires_in": seconds or None,
    #                                "cached": bool}, never the token itself

    @classmethod
    def refusal(cls, error: MailError) -> "SendResult":
        """A result for a send our own rules refused before any connection: nothing was opened, nothing was said."""
        return cls(ok=False, elapsed=0.0, code=None, reply=None, tls="none", transcript=[], error=error)

    def facts(self) -> dict:
        """The outcome as data (JSON-ready) that a screen puts in words in its reader's language: the final reply,
        or the failed step with the English msgids of its message and hint and their params. Never a secret: the
        reply is scrubbed and params hold none."""
        if self.ok or self.error is None:
            return {"ok": self.ok, "code": self.code, "reply": self.reply}
        error = self.error
        return {"ok": False, "step": error.step.value, "code": error.code, "reply": error.reply,
                "message": error.message, "hint": error.hint,
                "params": {name: value if isinstance(value, (int, float)) else str(value)
                           for name, value in error.params.items()}}


def send_message(settings: SmtpSettings, message: EmailMessage, *, envelope_from: str,
                 recipients: list[str]) -> SendResult:
    """Open a session, send one message, close; never raises for SMTP/network failures (error in the result).
    envelope_from and recipients are bare addresses, as for SmtpSession.send()."""
    session = SmtpSession(settings)
    # One deadline for the whole dialogue, QUIT included.
    session.watchdog.arm(settings.deadline)
    try:
        result = session._deliver(message, envelope_from, recipients)
        session._quit()
    finally:
        session.watchdog.disarm()
        session._abort()
    result.transcript = session._scrub_lines(session.transcript.take())
    return result


class SmtpSession:
    """One connection for many messages (the worker). send() opens the connection when needed (again after a
    failure that broke it); each send() is bounded by the deadline, the opening included."""

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self.transcript = Transcript()
        self.tls = "none"
        self.watchdog = Watchdog()
        self._client: Client | None = None
        self._secrets = _secret_forms(settings)
        self._token: dict | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def send(self, message: EmailMessage | bytes, *, envelope_from: str, recipients: list[str],
             then: tuple[bytes, str, list[str]] | None = None) -> SendResult:
        """Send one message (an EmailMessage, or its bytes from compose.message_bytes() / notification_bytes())
        over the session; never raises for SMTP/network failures (error in the result). envelope_from and
        recipients are bare addresses, local@domain (compose.envelope_address()).

        then: the next message (bytes, envelope sender, recipients) when the caller will send it next. With
        PIPELINING its MAIL, RCPT and DATA go in the same write as this message's final dot (RFC 2920 3.1), and
        their replies are read by the next send(): one round trip per message instead of two. If the next send()
        is for another message after all (a stop, a lost lease), the connection is dropped rather than used: the
        server is waiting for that message's content, and a transaction cut before its final dot is discarded.
        """
        self.watchdog.arm(self.settings.deadline)
        try:
            result = self._deliver(message, envelope_from, recipients, then)
        finally:
            self.watchdog.disarm()
        # Each result carries its own part of the dialogue (the opening goes with the first message after it).
        result.transcript = self._scrub_lines(self.transcript.take())
        return result

    def close(self, quit_seconds: float = QUIT_SECONDS) -> None:
        """Say QUIT and close the connection. The QUIT is bounded as a whole by quit_seconds (a server dripping its
        reply a byte at a time cannot hold the caller); 0 closes without a word."""
        if quit_seconds > 0:
            self.watchdog.arm(min(quit_seconds, self.settings.deadline))
            try:
                self._quit()
            finally:
                self.watchdog.disarm()
        self._abort()

    def _deliver(self, message: EmailMessage | bytes, envelope_from: str, recipients: list[str],
                 then: tuple[bytes, str, list[str]] | None = None) -> SendResult:
        """Open if needed and run one mail transaction; the caller arms the watchdog."""
        if not recipients:
            raise ValueError("a message needs at least one recipient")
        started = time.monotonic()
        refused, error, opening = {}, None, False
        try:
            _refuse_line_breaks(self.settings.helo_name, envelope_from, recipients)
            if self._client is not None and self._client.announced not in (None, (message, envelope_from, recipients)):
                self._abort()  # it waits for another message's content: never send it this one's
            if self._client is None:
                opening = True
                self._open()
                opening = False
            refused = {recipient: (code, self._scrub(errors.reply_text(text))) for recipient, (code, text)
                       in self._transaction(message, envelope_from, recipients, then).items()}
            code, reply = self._client.last_reply
        except (MailError, OSError, smtplib.SMTPException) as exc:
            error = self._explain(exc)
            code, reply = error.code, error.reply
            if not (error.step in REPLY_STEPS and self._client is not None and self._client.sock is not None):
                self._abort()
        token, self._token = self._token, None
        return SendResult(ok=error is None, elapsed=time.monotonic() - started, code=code,
                          reply=self._scrub(errors.reply_text(reply)), tls=self.tls, transcript=[],
                          error=self._scrub_error(error), refused=refused, opening=opening,
                          token=token)

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
        if settings.oauth is not None:
            # Refused by the token URL rule before any socket, not after the mail server's greeting and EHLO.
            check_token_url(settings.oauth.token_url, settings.oauth_allow_loopback)
        context = _tls_context(settings) if settings.mode != "plain" else None
        self._client = client = Client(self, context)
        code, reply = client.connect(settings.host, settings.port)
        if code != 220:
            raise errors.greeting_refused(settings.host, code, errors.reply_text(reply))
        client.ehlo_or_helo_if_needed()
        if settings.mode == "tls":
            client.step = Step.STARTTLS
            # Fail closed: without STARTTLS (or with an error reply to it) nothing else is said in clear text.
            if not client.has_extn("starttls"):
                raise errors.starttls_not_offered(settings.host, settings.port)
            client.starttls(context=StartTlsContext(client))
            client.step = Step.GREETING
            client.ehlo_or_helo_if_needed()  # RFC 3207: forget the pre-TLS EHLO answer and ask again
        if settings.username is not None:
            client.step = Step.AUTH
            self._authenticate(client)

    def _authenticate(self, client: Client) -> None:
        host = self.settings.host
        if not client.has_extn("auth"):
            raise errors.auth_not_offered(host, self.settings.port, self.settings.mode)
        if self.settings.oauth is not None:
            self._authenticate_bearer(client)
            return
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

    def _authenticate_bearer(self, client: Client) -> None:
        """AUTH with an OAuth access token, asked for first (step TOKEN). A cached token the server refuses is
        dropped and AUTH tried once more with a new one: a token can be revoked before it expires."""
        settings, grant = self.settings, self.settings.oauth
        offered = client.esmtp_features.get("auth", "").strip()
        mechanism = access_tokens.bearer_mechanism(offered)
        if mechanism is None:
            raise oauth_errors.bearer_not_offered(settings.host, offered)
        token = self._access_token(client)
        try:
            self._present(client, mechanism, token)
            return
        except BearerRefused as exc:
            refusal = exc
        access_tokens.TOKENS.discard(grant, token)  # refused: the next opening asks for a new one in any case
        reply = errors.reply_text(refusal.smtp_error)
        if token.cached and refusal.smtp_code == 535 and client.sock is not None \
                and not oauth_errors.smtp_auth_disabled(reply):
            self.transcript.note("*: the server refused the cached access token: asking for a new one")
            token = self._access_token(client)
            try:
                self._present(client, mechanism, token)
                return
            except BearerRefused as exc:
                refusal, reply = exc, errors.reply_text(exc.smtp_error)
            access_tokens.TOKENS.discard(grant, token)
        raise oauth_errors.bearer_refused(settings.host, refusal.smtp_code, reply, grant.mailbox, refusal.status)

    def _access_token(self, client: Client) -> AccessToken:
        """The grant's access token (access_tokens.obtain_token), within what is left of the deadline; from now on it is
        scrubbed from whatever the session shows."""
        settings = self.settings
        client.step = Step.TOKEN
        token = access_tokens.obtain_token(settings.oauth, timeout=settings.timeout,
                                   deadline=max(min(self.watchdog.remaining(), settings.deadline), 0.001),
                                   hop=settings.hop, blocked_networks=settings.blocked_networks,
                                   ca_pem=settings.ca_pem, allow_loopback=settings.oauth_allow_loopback)
        forms = {token.value, *(base64.b64encode(self._bearer_response(mechanism, token)).decode("ascii")
                                for mechanism in access_tokens.BEARER_MECHANISMS)}
        self._secrets = sorted(set(self._secrets) | forms, key=len, reverse=True)
        self._token = {"expires_in": token.expires_in, "cached": token.cached}
        left = "" if token.expires_in is None else f" (expires in {max(int(token.expires_in // 60), 0)} min)"
        source = "from the cache" if token.cached else f"obtained from {urlsplit(settings.oauth.token_url).hostname}"
        self.transcript.note(f"*: access token {source}{left}")
        client.step = Step.AUTH
        return token

    def _present(self, client: Client, mechanism: str, token: AccessToken) -> None:
        client.bearer_auth(mechanism, self._bearer_response(mechanism, token))

    def _bearer_response(self, mechanism: str, token: AccessToken) -> bytes:
        settings = self.settings
        return access_tokens.bearer_response(mechanism, settings.oauth.mailbox, token.value,
                                             ascii_domain(settings.host), settings.port)

    def _transaction(self, message: EmailMessage | bytes, envelope_from: str, recipients: list[str],
                     then: tuple[bytes, str, list[str]] | None = None) -> dict:
        client = self._client
        client.step = Step.SENDER
        sender, to_addrs = _wire_addresses(envelope_from, recipients)
        # A local part beyond ASCII, in the envelope or a header (RFC 6532), goes only with SMTPUTF8 (RFC 6531):
        # refused before MAIL where the server does not offer it, naming the address.
        utf8_address = smtputf8_address(message, envelope_from, recipients)
        international = utf8_address is not None
        if international and not client.has_extn("smtputf8"):
            raise errors.smtputf8_needed(*utf8_address, host=self.settings.host)
        data = message if isinstance(message, bytes) else message_bytes(message, international)
        options = ["SMTPUTF8", "BODY=8BITMIME"] if international else []
        logged_in = self.settings.username is not None  # (_open() authenticated, or failed before this)
        try:
            if client.has_extn("pipelining"):
                return client.pipelined_sendmail(sender, to_addrs, data, options,
                                                 announce=self._announcement(then, international))
            return client.sendmail(sender, to_addrs, data, options)
        except smtplib.SMTPSenderRefused as exc:
            raise errors.reply_error(Step.SENDER, exc.smtp_code, errors.reply_text(exc.smtp_error),
                                     logged_in=logged_in, sender=envelope_from) from None
        except smtplib.SMTPRecipientsRefused as exc:
            recipient, (code, reply) = next(iter(exc.recipients.items()))
            error = errors.reply_error(Step.RECIPIENT, code, errors.reply_text(reply), logged_in=logged_in,
                                       recipient=recipient)
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
            sender, to_addrs = _wire_addresses(envelope_from, recipients)
        except (MailError, ValueError):
            return None  # its own send() explains it
        if not recipients or smtputf8_address(data, envelope_from, recipients) is not None:
            return None
        return (data, envelope_from, recipients), sender, to_addrs, data

    def _explain(self, exc: BaseException) -> MailError:
        settings = self.settings
        client = self._client
        if isinstance(exc, MailError) and exc.step is Step.TOKEN:
            return exc  # the token endpoint's own timeout says more than the dialogue's deadline it shares
        # First: once the watchdog has cut the connection, whatever broke (even a half-read reply) broke because of it.
        if self.watchdog.expired or (errors.timed_out(exc) and self.watchdog.remaining() <= 0.05):
            return errors.deadline_error(settings.host, settings.deadline)
        if isinstance(exc, MailError):
            return exc
        return errors.classify(exc, client.step if client else Step.CONNECT, host=settings.host, port=settings.port,
                               proxy=settings.hop.label if settings.hop else None, seconds=settings.timeout,
                               command=client.command if client else None, mode=settings.mode)

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


def _wire_addresses(envelope_from: str, recipients: list[str]) -> tuple[str, list[str]]:
    """The envelope as it goes on the wire (IDN domains in A-labels)."""
    return ascii_addr_spec(envelope_from), [ascii_addr_spec(r) for r in recipients]


def _refuse_line_breaks(helo_name: str | None, envelope_from: str, recipients: list[str]) -> None:
    """Validated by the forms already; checked again because a line break here would inject an SMTP command."""
    if helo_name is not None and has_control_characters(helo_name):
        raise errors.line_break("helo_name")
    if any(has_control_characters(address) for address in (envelope_from, *recipients)):
        raise errors.line_break("address")


def _secret_forms(settings: SmtpSettings) -> list[str]:
    """The passwords as they could appear: plain, base64 alone, inside AUTH PLAIN's base64 and inside the HTTP
    connector's Basic token; longest first."""
    forms = set(settings.oauth.secrets() if settings.oauth is not None else ())
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
