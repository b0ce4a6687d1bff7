"""E-mail addresses as people type them: exactly one, a display name allowed, checked with email-validator.
Internal domains (corp.local, localhost, .internal) and local parts beyond ASCII (sent with SMTPUTF8) are addresses.

Refusals are AddressError: an English message marked with N_() and its %(name)s params, which a form translates
(webapp.forms) and the outbox reports as they are.
"""
import re
from email.headerregistry import Address

import email_validator
from email_validator import EmailNotValidError, ValidatedEmail, validate_email

from webapp.mail.errors import N_

# What may not be in any header field: C0 controls (CR, LF, NUL...) and DEL, and the Unicode line breaks NEL,
# LINE SEPARATOR and PARAGRAPH SEPARATOR, where str.splitlines() (so the email package) and mail clients break a
# line too.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
# "Name <addr>" or "\"Quoted, Name\" <addr>"; an unquoted name may not hold RFC 5322 specials. The unquoted name keeps
# its surrounding spaces (stripped afterwards): white space matched on both sides of it made failing matches cubic.
NAME_ADDR = re.compile(r'(?:\s*"((?:[^"\\]|\\.)*)"\s*|([^"<>,;:@()\[\]\\]*))<([^<>]*)>\s*')
MAX_TYPED = 320     # what is typed, display name included
MAX_ADDR_SPEC = 254  # RFC 5321's path limit, less the angle brackets

INVALID = N_("Enter a valid e-mail address, such as ops@example.com or Ops <ops@example.com>.")
LINE_BREAKS = N_("Line breaks and control characters are not allowed here.")
TOO_LONG = N_("This address is too long.")

# email-validator assumes addresses of the public Internet; a notification desk also writes to mailboxes its own relay
# serves: Active Directory's corp.local, localhost, .internal, .lan, .test and single-label hosts. Its documented way
# to allow a special-use name is to take it off this list (test_environment=True allows .test). Names reserved to
# never receive mail stay refused: .invalid (RFC 6761), .onion (RFC 7686) and .arpa.
for _name in ("local", "localhost"):
    if _name in email_validator.SPECIAL_USE_DOMAIN_NAMES:
        email_validator.SPECIAL_USE_DOMAIN_NAMES.remove(_name)


class AddressError(ValueError):
    """An address refused: message is an English msgid (N_), params fill its placeholders; str() is the English."""

    def __init__(self, message: str, **params):
        super().__init__(message % params if params else message)
        self.message, self.params = message, params


def check_address(value: str, allow_display_name: bool = True) -> str:
    """Return a normalised address ('Name <local@domain>' kept, UTF-8 allowed) or raise AddressError."""
    if CONTROL_CHARS.search(value):
        raise AddressError(LINE_BREAKS)
    if len(value) > MAX_TYPED:
        raise AddressError(TOO_LONG)
    display_name, addr = "", value.strip()
    match = NAME_ADDR.fullmatch(value)
    if match:
        if not allow_display_name:
            raise AddressError(INVALID)
        quoted, bare, addr = match.groups()
        display_name = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
    result = _validated(addr.strip())
    if display_name.strip():
        # As username and domain: Address(addr_spec=...) refuses a local part beyond ASCII, which SMTPUTF8 carries.
        return str(Address(display_name=display_name.strip(), username=result.local_part, domain=result.domain))
    return result.normalized


def _validated(addr: str) -> ValidatedEmail:
    """email-validator's reading of a bare address: internal domains and UTF-8 local parts (sent with SMTPUTF8)
    allowed, no DNS; at most MAX_ADDR_SPEC octets as it goes on the wire (UTF-8 local part, A-label domain)."""
    try:
        result = validate_email(addr, check_deliverability=False, allow_smtputf8=True, globally_deliverable=False,
                                test_environment=True)
    except EmailNotValidError:
        raise AddressError(INVALID) from None
    if result.ascii_domain.rpartition(".")[2].isdigit():
        raise AddressError(INVALID)  # ops@10.0.0.1 is an IP address written without its [brackets]
    if len(f"{result.local_part}@{result.ascii_domain}".encode("utf-8")) > MAX_ADDR_SPEC:
        raise AddressError(TOO_LONG)
    return result
