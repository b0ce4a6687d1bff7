"""Messages as the mail server receives them: headers, Message-ID on the sender's domain, text body."""
import copy
import email.contentmanager
import email.policy
import functools
import io
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.charset import Charset
from email.errors import MessageError
from email.generator import BytesGenerator
from email.headerregistry import Address, HeaderRegistry, UniqueAddressHeader
from email.message import EmailMessage
from email.parser import HeaderParser
from email.utils import format_datetime
from html import escape as html_escape

from webapp.mail.addresses import CONTROL_CHARS
from webapp.mail.idn import ascii_domain


def has_control_characters(text: str) -> bool:
    """CR, LF or another control character: in a header or an SMTP command it would start a new line."""
    return CONTROL_CHARS.search(text) is not None


def ascii_addr_spec(addr: str) -> str:
    """local@domain with the domain punycoded, as the envelope and the headers carry it."""
    local, at, domain = addr.rpartition("@")
    return f"{local}{at}{ascii_domain(domain)}" if at else addr


def needs_smtputf8(envelope_from: str, recipients: list[str]) -> bool:
    """Whether the envelope has a non-ASCII local part (domains go punycoded): then only SMTPUTF8 can carry it."""
    return not all(ascii_addr_spec(address).isascii() for address in (envelope_from, *recipients))


ADDRESS_HEADERS = ("From", "To", "Cc", "Reply-To", "Disposition-Notification-To")


def smtputf8_address(message: "EmailMessage | bytes", envelope_from: str,
                     recipients: list[str]) -> tuple[str, str] | None:
    """The first address of a message that only SMTPUTF8 can carry, a local part beyond ASCII, and where it is:
    ("sender" | "recipient" | "header", address); None when the message needs no SMTPUTF8. Message bytes
    (message_bytes(), notification_bytes()) are read only when they are not ASCII: bodies go quoted-printable or
    base64, so UTF-8 there means headers written for SMTPUTF8."""
    if not ascii_addr_spec(envelope_from).isascii():
        return "sender", envelope_from
    for recipient in recipients:
        if not ascii_addr_spec(recipient).isascii():
            return "recipient", recipient
    if isinstance(message, bytes):
        if message.isascii():
            return None
        # Decoded first: the stdlib's bytes parser reads headers as ASCII, a UTF-8 local part as surrogates.
        message = HeaderParser(policy=email.policy.SMTPUTF8).parsestr(message.decode("utf-8", "replace"))
    for name in ADDRESS_HEADERS:
        for header in message.get_all(name, ()):
            for address in getattr(header, "addresses", ()):
                if not address.username.isascii():
                    return "header", address.addr_spec
    return None


class _Registry(HeaderRegistry):
    """The stdlib's header registry, but each header class is made once: HeaderRegistry builds a new class with
    type() for every header it parses, which was the largest single cost of composing a notification."""

    def __init__(self, *args, **kwargs):
        self._classes = {}
        super().__init__(*args, **kwargs)

    def map_to_type(self, name, cls):
        self._classes.clear()
        super().map_to_type(name, cls)

    def __getitem__(self, name):
        key = name.lower()
        made = self._classes.get(key)
        if made is None:
            made = self._classes[key] = super().__getitem__(name)
        return made


_ADDRESS_REGISTRY = _Registry()
# The simple forms check_address() stores, "local@domain" and "Display Name <local@domain>" (dot-atoms, and a name of
# atoms between single spaces), are read by this pattern: the stdlib's parser reads them the same way, many times
# more slowly. Anything else (quotes, comments, encoded words, odd spacing) goes through that parser.
_ATOM = r"[^\s\"(),.:;<>@\[\]\\]+"
_LOCAL_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_ADDRESS = re.compile(rf"(?:(?P<name>{_ATOM}(?: {_ATOM})*) <)?(?P<local>{_LOCAL_ATOM}(?:\.{_LOCAL_ATOM})*)"
                             rf"@(?P<domain>{_ATOM}(?:\.{_ATOM})*)(?(name)>)")


@functools.lru_cache(maxsize=4096)
def header_address(value: str) -> Address:
    """'Name <local@domain>' or 'local@domain' (exactly one) as a header Address with a punycoded domain.
    Memoised: Address is immutable and the worker asks for the account's own addresses over and over."""
    if has_control_characters(value) or len(value.splitlines()) > 1:
        raise ValueError("control characters in an address")
    simple = _SIMPLE_ADDRESS.fullmatch(value) if "=?" not in value else None
    if simple is not None:
        address = Address(display_name=simple["name"] or "", username=simple["local"], domain=simple["domain"])
    else:
        address = _parsed_address(value)
    return Address(display_name=address.display_name, username=address.username,
                   domain=ascii_domain(address.domain))


def _parsed_address(value: str) -> Address:
    """The one address in value, read by the stdlib's header parser; ValueError if there is not exactly one."""
    try:
        addresses = _ADDRESS_REGISTRY("To", value).addresses
    # The stdlib parser raises IndexError on "to@" and AttributeError on ". <a@b>" (found by tests/test_properties.py).
    except (IndexError, AttributeError, ValueError, MessageError):
        raise ValueError("not an e-mail address") from None
    if len(addresses) != 1 or not addresses[0].username or not addresses[0].domain:
        raise ValueError("expected exactly one e-mail address")
    return addresses[0]


def compose_test_message(*, sender: str, to: str, subject: str, body: str, reply_to: str | None = None,
                         confirmation_email: str | None = None, footer: str | None = None) -> EmailMessage:
    """The test dialog's message, written as a notification is (compose_notification): From, To, Subject, Date,
    a new Message-ID on the sender's domain, Auto-Submitted, text body, and the account's Reply-To, read
    confirmation and footer when given, so a test shows them as a notification would carry them. Raises ValueError
    as that does."""
    return compose_notification(sender=sender, to=[to], subject=subject, text=body, message_id=new_message_id(sender),
                                reply_to=reply_to, confirmation_email=confirmation_email, footer=footer)


# --- Notifications ---------------------------------------------------------------------------------------------


def _notification_policy():
    # RFC 8098's Disposition-Notification-To holds addresses: parsed as such when read back, not as unstructured text.
    registry = _Registry()
    registry.map_to_type("disposition-notification-to", UniqueAddressHeader)
    # The notification's own headers are set encoded and folded (_headers()): written as they are, never refolded
    # (a word longer than a line, a long Message-ID say, cannot be folded anyway). The policy's line length is
    # then the bodies': RFC 2045 6.7 caps a quoted-printable line at 76 characters.
    return email.policy.SMTP.clone(header_factory=registry, refold_source="none", max_line_length=76)


NOTIFICATION_POLICY = _notification_policy()


@dataclass(frozen=True)
class Attachment:
    """A file sent with a notification (the schedule report's CSV)."""

    filename: str
    mimetype: str  # "text/csv"
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Addressing:
    """Where replies, bounces and read confirmations go for one notification, after the account's rules."""

    reply_to: str | None            # the Reply-To header (None: no header)
    return_path: str | None         # the envelope sender, MAIL FROM (None: the sender's address)
    confirmation_email: str | None  # Disposition-Notification-To (None: no read confirmation asked)
    overrides_ignored: bool         # overrides were given and the account forces its settings


def resolve_addressing(*, reply_to: str | None, return_path: str | None, confirmation_email: str | None,
                       read_confirmation: bool, force_settings: bool, override_reply_to: str | None = None,
                       override_return_path: str | None = None,
                       override_confirmation: str | None = None) -> Addressing:
    """The account's Reply-To / Return-Path / Confirmation e-mails, replaced by the message's overrides unless the
    account forces its settings ("Force settings use"); then the overrides are ignored, and that is recorded.

    A confirmation override only changes where the read confirmation goes: whether one is asked for at all is the
    account's "Send read confirmation".
    """
    overrides = (override_reply_to, override_return_path, override_confirmation)
    given = any(value for value in overrides)
    if given and not force_settings:
        reply_to = override_reply_to or reply_to
        return_path = override_return_path or return_path
        confirmation_email = override_confirmation or confirmation_email
    return Addressing(
        reply_to=reply_to or None,
        return_path=return_path or None,
        confirmation_email=(confirmation_email or None) if read_confirmation else None,
        overrides_ignored=given and force_settings,
    )


def new_message_id(sender: str) -> str:
    """A fresh Message-ID on the sender's (punycoded) domain, e.g. <Jx0v6SGrF1u_5bEH7Yq2kXcA@example.com>."""
    # 144 random bits from `secrets` (make_msgid's come from `random`, which any seeding makes repeat, as hypothesis
    # does): the UNIQUE column never turns a send into an error. 24 characters, against make_msgid's 50 or so, keep
    # the header within RFC 5322's 78 characters a line for domains of up to 39: a Message-ID cannot be folded.
    return f"<{secrets.token_urlsafe(18)}@{header_address(sender).domain}>"


def envelope_address(value: str) -> str:
    """The bare addr-spec of 'Name <local@domain>' for the SMTP envelope (MAIL FROM / RCPT TO), domain punycoded."""
    return header_address(value).addr_spec


def footer_html(footer: str) -> str:
    """The plain-text footer as an HTML paragraph (escaped, line breaks kept)."""
    return '<hr>\n<p class="footer">' + html_escape(footer).replace("\n", "<br>\n") + "</p>\n"


def with_footer(text: str | None, html: str | None, footer: str | None) -> tuple[str | None, str | None]:
    """The text and HTML bodies with the system footer appended (before </body> in an HTML document)."""
    footer = (footer or "").strip("\r\n")
    if not footer.strip():
        return text, html
    if text is not None:
        text = (text.rstrip("\r\n") + "\n\n" if text.strip() else "") + footer + "\n"
    if html is not None:
        end = html.lower().rfind("</body>")
        html = html[:end] + footer_html(footer) + html[end:] if end >= 0 else html + "\n" + footer_html(footer)
    return text, html


def compose_notification(*, sender: str, to: list[str], subject: str, text: str, message_id: str,
                         html: str | None = None, cc: list[str] = (), reply_to: str | None = None,
                         confirmation_email: str | None = None, footer: str | None = None,
                         date: datetime | None = None, attachments: list[Attachment] = ()) -> EmailMessage:
    """A notification as the server receives it (SMTP policy: CRLF, headers refuse CR/LF, UTF-8 encoded words).

    From = the account's sender; To and Cc (bcc is envelope only, never a header); Reply-To when given;
    Disposition-Notification-To (RFC 8098) when a read confirmation is asked; Date (the notification's creation time,
    so every retry is the same message) and the Message-ID stored at enqueue. Text, or text + HTML as
    multipart/alternative; the footer appended to both; attachments make it multipart/mixed.
    Raises ValueError for an invalid address or a line break in the subject.
    """
    headers = _headers(sender, to, cc, reply_to, confirmation_email, subject, date, message_id)
    text, html = with_footer(text or "", html, footer)
    message = EmailMessage(policy=NOTIFICATION_POLICY)
    for name, value in headers:
        message.set_raw(name, value)  # already encoded and folded: written as they are
    message.set_content(text, cte=_body_cte(text))
    if html is not None:
        message.add_alternative(html, subtype="html", cte=_body_cte(html))
    for attachment in attachments:
        maintype, _, subtype = attachment.mimetype.partition("/")
        message.add_attachment(attachment.data, maintype=maintype, subtype=subtype or "octet-stream",
                               filename=attachment.filename)
    for part in message.walk():
        if part is not message:
            del part["MIME-Version"]  # RFC 2045 4: the message's header says it; the stdlib adds it to parts too
        if part.is_multipart():
            # Chosen now rather than while flattening, so every flattening of this message has the same
            # Content-Type. 128 random bits: never part of a body.
            part.set_boundary(f"=_smtpdesk_{secrets.token_hex(16)}")
    return message


def notification_bytes(*, smtputf8: bool = False, **fields) -> bytes:
    """compose_notification(**fields) as it goes after DATA (message_bytes()). A plain-text notification is written
    directly, without building an EmailMessage: the same header values (_headers()), the same MIME headers and body
    encoding, the same bytes (tests/test_properties.py checks the two paths agree); HTML, attachments and SMTPUTF8
    go through the email package."""
    if fields.get("html") is None and not fields.get("attachments") and not smtputf8:
        return _plain_text_bytes(**fields)
    return message_bytes(compose_notification(**fields), smtputf8)


def message_bytes(message: EmailMessage, smtputf8: bool = False) -> bytes:
    """The message as it goes after DATA: CRLF line ends, never a Bcc header, UTF-8 headers only under SMTPUTF8
    (what smtplib's send_message() sends)."""
    if "Bcc" in message or "Resent-Bcc" in message:
        message = copy.copy(message)
        del message["Bcc"]
        del message["Resent-Bcc"]
    policy = message.policy.clone(utf8=True) if smtputf8 else None
    with io.BytesIO() as out:
        BytesGenerator(out, policy=policy).flatten(message, linesep="\r\n")
        return out.getvalue()


def _plain_text_bytes(*, sender: str, to: list[str], subject: str, text: str, message_id: str,
                      cc: list[str] = (), reply_to: str | None = None, confirmation_email: str | None = None,
                      footer: str | None = None, date: datetime | None = None, html=None, attachments=()) -> bytes:
    """compose_notification()'s text/plain message, flattened, without building the EmailMessage: the same header
    lines in the same order (written by the same policy), the body encoded by the same email.contentmanager
    function, the same CRLF line ends."""
    headers = _headers(sender, to, cc, reply_to, confirmation_email, subject, date, message_id)
    text, _ = with_footer(text or "", None, footer)
    cte, payload = email.contentmanager._encode_text(text, "utf-8", _body_cte(text), NOTIFICATION_POLICY)
    headers += [("Content-Type", 'text/plain; charset="utf-8"'), ("Content-Transfer-Encoding", cte),
                ("MIME-Version", "1.0")]
    lines = [NOTIFICATION_POLICY.fold(name, value) for name, value in headers]
    # The generator writes the payload's lines with CRLF whatever they ended with.
    body = "\r\n".join(_LINE_ENDS.split(payload))
    return ("".join(lines) + "\r\n" + body).encode("ascii", "surrogateescape")


_LINE_ENDS = re.compile(r"\r\n|\r|\n")
LINE = 78  # RFC 5322 2.1.1: a line SHOULD have at most 78 characters
ENCODED_WORD = 75  # RFC 2047 2: an encoded word has at most 75 characters
UTF8 = Charset("utf-8")


def _headers(sender: str, to: list[str], cc: list[str], reply_to: str | None, confirmation_email: str | None,
             subject: str, date: datetime | None, message_id: str) -> list[tuple[str, str]]:
    """The notification's own headers as (name, value), each value encoded and folded as it goes on the wire.

    Non-ASCII text becomes UTF-8 encoded words (email.charset) and lines are folded here at spaces, rather than
    parsed and refolded by the email package's policy, whose folder is many times slower as soon as a header holds
    a non-ASCII word: a worker meets a new subject and new recipient names in almost every message.
    Raises ValueError for an invalid address or a line break in the subject."""
    if not to:
        raise ValueError("a notification needs at least one To address")
    if has_control_characters(subject) or len(subject.splitlines()) > 1:
        raise ValueError("line breaks and control characters in the subject")
    headers = [_address_field("From", [sender]), _address_field("To", to)]
    if cc:
        headers.append(_address_field("Cc", cc))
    if reply_to:
        headers.append(_address_field("Reply-To", [reply_to]))
    if confirmation_email:
        headers.append(_address_field("Disposition-Notification-To", [confirmation_email]))
    headers += [("Subject", _text("Subject", subject)), ("Date", _date_header(date)),
                ("Message-ID", message_id),
                # RFC 3834: an automatic message; vacation responders and the like should not answer it.
                ("Auto-Submitted", "auto-generated")]
    return [(name, _folded(name, value)) for name, value in headers]


def _address_field(name: str, addresses: list[str]) -> tuple[str, str]:
    """(name, addresses) for an address header: a display name as it is when, quoted if it must be, it folds into
    lines like _text(); else as encoded words."""
    texts, room = [], LINE - len(name) - 2
    for value in addresses:
        address = header_address(value)
        display_name = address.display_name
        if not display_name or _fits(display_name, room):
            written = str(address)  # "name <addr-spec>", the name quoted and escaped when it holds specials
            if not display_name or _fits(written[:-len(address.addr_spec) - 3], room):
                texts.append(written)
                continue
        texts.append(f"{_encoded_words(display_name, room)} <{address.addr_spec}>")
    return name, ", ".join(texts)


def _text(name: str, text: str) -> str:
    """Text for the header `name` as it goes on the wire: as it is when it folds into lines (_fits), else UTF-8
    encoded words (RFC 2047)."""
    room = LINE - len(name) - 2
    return text if _fits(text, room) else _encoded_words(text, room)


def _fits(text: str, room: int) -> bool:
    """Whether text may go as it is in a header whose first line has room characters left: ASCII, no literal "=?"
    (a reader would take it for the start of an encoded word), no word too long for a line (folding happens only at
    spaces; RFC 5322 2.1.1 caps a line at 998 characters)."""
    return text.isascii() and "=?" not in text and all(len(word) <= room for word in text.split(" "))


def _encoded_words(text: str, limit: int) -> str:
    """text as UTF-8 encoded words of at most `limit` characters (halved until they are), separated by spaces: a
    reader joins adjacent encoded words and drops the spaces between them."""
    word = UTF8.header_encode(text)
    if len(word) <= min(limit, ENCODED_WORD) or len(text) < 2:
        return word
    middle = len(text) // 2
    return f"{_encoded_words(text[:middle], limit)} {_encoded_words(text[middle:], limit)}"


def _folded(name: str, value: str) -> str:
    """value with a CRLF before some of its spaces, so that "name: value" keeps to LINE characters a line; unfolding
    (RFC 5322 2.2.3) gives value back. A word longer than a line stays whole."""
    width, out = len(name) + 2, []
    for word in value.split(" "):
        if out and word and width + 1 + len(word) > LINE:
            out.append("\r\n " + word)
            width = 1 + len(word)
        else:
            out.append(" " + word if out else word)
            width += len(out[-1])
    return "".join(out)


def _date_header(date: datetime | None) -> str:
    if date is None:
        date = datetime.now(timezone.utc)
    elif date.tzinfo is None:  # the database keeps naive UTC
        date = date.replace(tzinfo=timezone.utc)
    return format_datetime(date)


def header_block(data: bytes) -> str:
    """The header lines of a message's wire bytes (message_bytes / notification_bytes), exactly as they went out:
    what the deliveries detail view shows."""
    return data.partition(b"\r\n\r\n")[0].decode("utf-8", "replace") + "\r\n"


def _body_cte(body: str) -> str | None:
    # Non-ASCII text goes quoted-printable: 8bit would need BODY=8BITMIME, which smtplib does not request.
    return None if body.isascii() else "quoted-printable"

