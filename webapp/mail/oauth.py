"""OAuth 2.0 credentials as plain data: the credential types, the endpoint rule, the service-account key, and
OAuthGrant, the one description of how to obtain an access token that a credential produces and the transport uses.
Asking for the token, caching it and presenting it over SMTP is access_tokens.py's work."""
import ipaddress
import json
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from webapp.mail.addresses import CONTROL_CHARS, AddressError, check_address
from webapp.mail.connectors import numeric_address
from webapp.mail.errors import N_

# The credential types (Credential.kind): a login and password, or one of three OAuth 2.0 grants.
PASSWORD = "password"
CLIENT_CREDENTIALS = "oauth_client"  # RFC 6749 §4.4: Microsoft 365 app-only SMTP
REFRESH_TOKEN = "oauth_refresh"      # RFC 6749 §6, after the authorization code flow: Gmail, delegated Microsoft
JWT_BEARER = "oauth_jwt"             # RFC 7523 §2.1: a Google Workspace service account with domain-wide delegation
KINDS = (PASSWORD, CLIENT_CREDENTIALS, REFRESH_TOKEN, JWT_BEARER)
OAUTH_KINDS = KINDS[1:]
# Each OAuth type's grant_type, as the token request and the providers' documentation name it (the same in every
# language, so messages name a grant by it).
GRANT_TYPES = {CLIENT_CREDENTIALS: "client_credentials", REFRESH_TOKEN: "refresh_token",
               JWT_BEARER: "urn:ietf:params:oauth:grant-type:jwt-bearer"}
# RFC 6749 §4.1.3: how a REFRESH_TOKEN credential gets its refresh token ("Connect with the provider").
AUTHORIZATION_CODE = "authorization_code"

MAX_URL_LENGTH = 2048
# Google's keys are about 2.3 KB; a few times that still bounds what is parsed and stored.
MAX_KEY_LENGTH = 16 * 1024
SERVICE_ACCOUNT_FIELDS = ("type", "client_email", "private_key", "token_uri")


class OAuthSettingError(ValueError):
    """A setting refused: message is an English msgid (N_), params fill its placeholders; str() is the English."""

    def __init__(self, message: str, **params):
        super().__init__(message % params if params else message)
        self.message, self.params = message, params


def is_loopback(host: str) -> bool:
    """Whether host is this machine: localhost, 127.0.0.0/8 or ::1, in any spelling a resolver reads."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = numeric_address(host)
    except ValueError:
        return False
    return address is not None and ipaddress.ip_address(address).is_loopback


def check_endpoint(url: str, allow_loopback: bool) -> tuple[str, int]:
    """The (host, port) of a token or authorization endpoint URL, or OAuthSettingError: https, no user:password@ and
    no #fragment (RFC 6749 §3.1, §3.2); plain http only to this machine, and only when allow_loopback (the setting
    OAUTH_ALLOW_LOOPBACK, for the tests' OAuth servers). The credential form checks it on saving and the token
    request again before it connects; where the host may be reached is the outbound policy's business."""
    if len(url) > MAX_URL_LENGTH:
        raise OAuthSettingError(N_("Use at most %(max)d characters."), max=MAX_URL_LENGTH)
    if CONTROL_CHARS.search(url) or " " in url:
        raise OAuthSettingError(N_("A URL has no spaces, line breaks or control characters."))
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("https", "http") or not parts.hostname:
        raise OAuthSettingError(N_("Enter the whole URL, starting with https://."))
    if parts.username is not None or parts.password is not None:
        raise OAuthSettingError(N_("A URL here may not hold a user name or password (user:password@)."))
    if parts.fragment or url.endswith("#"):
        raise OAuthSettingError(N_("An OAuth 2.0 endpoint URL has no #fragment."))
    if parts.scheme.lower() == "http":
        if not is_loopback(parts.hostname):
            raise OAuthSettingError(N_("Use an https:// URL: the client secret and tokens travel over it."))
        if not allow_loopback:
            raise OAuthSettingError(N_("Use an https:// URL. Plain http to this machine is allowed only when the "
                                       "SMTPDESK_OAUTH_ALLOW_LOOPBACK setting is on."))
        return parts.hostname, port or 80
    return parts.hostname, port or 443


@dataclass(frozen=True)
class ServiceAccountKey:
    """The parts of a Google service-account JSON key that sign an RFC 7523 assertion."""

    client_email: str  # the assertion's issuer
    private_key_id: str  # the assertion's "kid" header
    token_uri: str  # the assertion's audience and where it is sent
    private_key: str = field(repr=False)  # PEM, RSA (RS256)


def parse_service_account_key(text: str) -> tuple[ServiceAccountKey, str]:
    """The key in a service account's JSON key file, and the JSON to store; OAuthSettingError when it is not one.
    The token_uri's scheme is left to check_endpoint()."""
    if len(text) > MAX_KEY_LENGTH:
        raise OAuthSettingError(N_("This is too long for a service account key (at most %(max)d characters)."),
                                max=MAX_KEY_LENGTH)
    try:
        data = json.loads(text)
        # A lone surrogate ("\ud800") parses, but could be neither stored nor sent.
        stored = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        stored.encode("utf-8")
    except (ValueError, RecursionError):
        raise OAuthSettingError(N_("This is not a JSON key file: it does not read as JSON.")) from None
    if not isinstance(data, dict):
        raise OAuthSettingError(N_("This is not a JSON key file: it does not read as JSON."))
    missing = [name for name in SERVICE_ACCOUNT_FIELDS if not isinstance(data.get(name), str) or not data[name]]
    if missing:
        raise OAuthSettingError(N_("This is not a service account's JSON key: it lacks %(fields)s."),
                                fields=", ".join(missing))
    if data["type"] != "service_account":
        raise OAuthSettingError(N_("This JSON key is of type “%(type)s”, not “service_account”: download a key of "
                                   "the service account itself."), type=data["type"][:40])
    try:
        client_email = check_address(data["client_email"], allow_display_name=False)
    except AddressError:
        raise OAuthSettingError(N_("The key's client_email is not an e-mail address.")) from None
    key_id = data.get("private_key_id", "")
    if not isinstance(key_id, str) or len(key_id) > 200 or CONTROL_CHARS.search(key_id):
        raise OAuthSettingError(N_("The key's private_key_id is not a key ID."))
    try:
        private_key = load_pem_private_key(data["private_key"].encode("utf-8"), password=None)
    except Exception:  # ValueError, TypeError, UnsupportedAlgorithm...: whatever it is, it is no key we can use
        private_key = None
    if not isinstance(private_key, RSAPrivateKey):
        raise OAuthSettingError(N_("The key's private_key is not an unencrypted RSA private key in PEM form."))
    key = ServiceAccountKey(client_email=client_email, private_key_id=key_id, token_uri=data["token_uri"],
                            private_key=data["private_key"])
    return key, stored


# What each type cannot ask for a token without.
_NEEDED = {CLIENT_CREDENTIALS: ("client_id", "client_secret"), REFRESH_TOKEN: ("client_id", "refresh_token"),
           JWT_BEARER: ("service_account",)}


@dataclass(frozen=True)
class OAuthGrant:
    """How to obtain an access token to send as `mailbox`, with its secrets revealed: Credential.oauth_grant() builds
    it for the transport, which needs neither Flask nor the database. kind is the credential's type (OAUTH_KINDS).

    Frozen and hashable; the secrets stay out of repr(), and so out of logs. cache_key names the credential
    ("credential:42"): tokens are cached per key and per fingerprint of every field, so a changed secret never gets
    an old token, and a rotated refresh token is stored back on the credential it names."""

    kind: str
    token_url: str  # for JWT_BEARER, the key's token_uri
    mailbox: str  # whom to log in as: XOAUTH2's user=, OAUTHBEARER's a=, and the JWT's sub
    scope: str = ""  # space-separated, as RFC 6749 §3.3 sends it
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)  # None: a public client (REFRESH_TOKEN)
    refresh_token: str | None = field(default=None, repr=False)
    service_account: ServiceAccountKey | None = field(default=None, repr=False)
    cache_key: str = ""

    def __post_init__(self):
        if self.kind not in OAUTH_KINDS:
            raise ValueError(f"unknown OAuth 2.0 credential type {self.kind!r}")
        missing = [name for name in _NEEDED[self.kind] if not getattr(self, name)]
        if missing:
            raise ValueError(f"a {self.kind} grant needs {', '.join(missing)}")
        # The mailbox and scope go into SASL responses split by ^A and into the token request.
        if not self.mailbox or CONTROL_CHARS.search(self.mailbox) or CONTROL_CHARS.search(self.scope):
            raise ValueError("the mailbox and scope must be non-empty text without control characters")

    @classmethod
    def for_service_account(cls, key: ServiceAccountKey, *, mailbox: str, scope: str,
                            cache_key: str = "") -> "OAuthGrant":
        """A JWT_BEARER grant from a Google service account's key, asked at the key's own token_uri."""
        return cls(JWT_BEARER, key.token_uri, mailbox, scope, service_account=key, cache_key=cache_key)

    @property
    def grant_type(self) -> str:
        return GRANT_TYPES[self.kind]

    def secrets(self) -> list[str]:
        """The values never to show: client secret, refresh token, private key."""
        key = self.service_account.private_key if self.service_account else None
        return [value for value in (self.client_secret, self.refresh_token, key) if value]


@dataclass(frozen=True)
class CodeExchange:
    """An authorization code to exchange at the token endpoint for a REFRESH_TOKEN credential's refresh token (RFC 6749
    §4.1.3, with RFC 7636's code_verifier), secrets revealed: asked like an OAuthGrant, and explained like one."""

    token_url: str
    mailbox: str
    scope: str
    client_id: str
    redirect_uri: str  # the one the authorization request named: RFC 6749 §4.1.3 wants it again, identical
    client_secret: str | None = field(default=None, repr=False)
    code: str = field(default="", repr=False)
    code_verifier: str = field(default="", repr=False)
    kind = REFRESH_TOKEN  # the credential type it connects
    grant_type = AUTHORIZATION_CODE

    def secrets(self) -> list[str]:
        """The values never to show: client secret, code and verifier."""
        return [value for value in (self.client_secret, self.code, self.code_verifier) if value]
