"""The front half of the authorization code flow (RFC 6749 §4.1.1 with PKCE, RFC 7636): the provider's address
that asks the person signing in to let a refresh-token credential send as its mailbox. The back half, the code
exchanged at the token endpoint, is token_endpoint.exchange_code()."""
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from authlib.integrations.requests_client import OAuth2Session

from webapp.mail.errors import N_
from webapp.mail.oauth import OAuthSettingError, check_endpoint

# Microsoft's identity platform gives a refresh token for the scope offline_access alone, and there prompt=consent
# forces a user's own consent: where users may not consent (admin consent only) it stops at "Need admin approval"
# even after an administrator consented for the organization. Its hosts get neither extra parameter.
MICROSOFT_HOSTS = frozenset({"login.microsoftonline.com", "login.microsoft.com", "login.microsoftonline.us",
                             "login.partner.microsoftonline.cn", "login.live.com"})
# Google issues a refresh token only for offline access, and a second time only with a new consent; other providers
# ignore what they do not know.
OFFLINE_ACCESS = {"access_type": "offline", "prompt": "consent"}


# The request's own parameters: authlib appends them to the URL's query rather than replacing what is there, and a
# provider reading the first value would take a pasted redirect_uri, state or a weaker code_challenge_method.
REQUEST_PARAMETERS = ("response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
                      "code_challenge_method")


def check_authorization_url(url: str, allow_loopback: bool) -> tuple[str, int | None]:
    """check_endpoint(), and no parameter of the request itself already in the URL's query."""
    host, port = check_endpoint(url, allow_loopback)
    preset = sorted({name for name, _value in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
                    & set(REQUEST_PARAMETERS))
    if preset:
        raise OAuthSettingError(N_("Remove %(names)s from the authorization URL: smtpdesk adds these itself."),
                                names=", ".join(preset))
    return host, port


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the browser, and what the callback needs to check and finish: state and code_verifier."""

    url: str
    state: str = field(repr=False)
    code_verifier: str = field(repr=False)


def authorization_request(authorization_url: str, *, client_id: str, scope: str, redirect_uri: str, mailbox: str,
                          allow_loopback: bool = False) -> AuthorizationRequest:
    """A new authorization request: response_type=code, the client, redirect URI and scope, a fresh state, the S256
    challenge of a fresh verifier, the mailbox as login_hint, and offline access where the provider wants it asked.
    Raises oauth.OAuthSettingError when the authorization URL breaks check_authorization_url()."""
    host, _port = check_authorization_url(authorization_url, allow_loopback)
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # 86 characters of RFC 7636's alphabet (43 to 128 allowed)
    extra = {} if host.lower().rstrip(".") in MICROSOFT_HOSTS else OFFLINE_ACCESS
    with OAuth2Session(client_id, scope=scope, redirect_uri=redirect_uri, code_challenge_method="S256") as client:
        url, _state = client.create_authorization_url(authorization_url, state=state, code_verifier=verifier,
                                                      login_hint=mailbox, **extra)
    return AuthorizationRequest(url, state, verifier)
