"""Access tokens for SMTP: the per-process cache of tokens an OAuthGrant (oauth.py) obtains, the request that fills
it (the token endpoint itself is asked in token_endpoint.py; failures are explained in oauth_errors.py), and the SASL
responses that carry a token (XOAUTH2, OAUTHBEARER)."""
import dataclasses
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from webapp.mail import oauth_errors
from webapp.mail.connectors import Hop
from webapp.mail.errors import MailError
from webapp.mail.oauth import OAuthGrant
from webapp.mail.token_endpoint import Route, check_token_url, request_token, scrubbed

# OAUTHBEARER is the standard (RFC 7628), with its error exchange defined; XOAUTH2 is Google's older form, the one
# Microsoft 365 offers. Gmail offers both, so each provider gets the one it documents best.
BEARER_MECHANISMS = ("OAUTHBEARER", "XOAUTH2")
# What the client answers a server's error challenge with, so that the server sends its final reply: an empty
# response for XOAUTH2 (Google's documentation), ^A for OAUTHBEARER (RFC 7628 §3.2.3).
DUMMY_RESPONSES = {"XOAUTH2": b"", "OAUTHBEARER": b"\x01"}
# A cached token is used until this many seconds before it expires, or a tenth of its lifetime when that is less:
# a token must outlive the SMTP dialogue that carries it.
EXPIRY_MARGIN = 60.0
EXPIRY_SHARE = 0.1
_FINGERPRINT_KEY = secrets.token_bytes(32)  # per process: a fingerprint never stands for a secret outside it


def fingerprint(grant: OAuthGrant) -> str:
    """A keyed hash of every field of the grant: equal for equal grants in this process, and no clue to a secret."""
    text = json.dumps(dataclasses.asdict(grant), sort_keys=True, default=str)
    return hmac.new(_FINGERPRINT_KEY, text.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AccessToken:
    """An access token as handed out: its value, seconds left (None: the endpoint did not say), whether it came
    from the cache (a server may have revoked it since), and a new refresh token the endpoint sent with it."""

    value: str = field(repr=False)
    expires_in: float | None
    cached: bool = False
    refresh_token: str | None = field(default=None, repr=False)


@dataclass
class _Entry:
    token: AccessToken | None
    expires_at: float | None             # on the cache's clock
    lifetime: float | None
    refresh_token: str | None = field(default=None, repr=False)  # the newest the endpoint sent (rotation)


@dataclass
class _Fetching:
    """The lock that lets one thread at a time ask the token endpoint for a grant, and how many threads hold or wait
    for it: the prune drops it only when none does, so that no thread waits on a lock the next one no longer finds."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


class TokenCache:
    """Access tokens per grant, in this process's memory only, until shortly before they expire; thread-safe, and
    one request to the token endpoint at a time per grant (the worker's lanes share a credential's token).

    on_refresh_token(grant, refresh_token): called when an endpoint sends a new refresh token (Microsoft rotates
    them) with the grant as its credential gave it (grant.cache_key names the credential, grant.refresh_token is the
    one it holds), so that the credential can store the new one; this cache uses the newest for its later requests
    anyway. Called on the thread that obtained the token; it must not raise."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.on_refresh_token: Callable[[OAuthGrant, str], None] | None = None
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._fetching: dict[tuple[str, str], _Fetching] = {}

    def obtain(self, grant: OAuthGrant, fetch: Callable[[OAuthGrant], tuple[AccessToken, float | None]], *,
               wait: float) -> AccessToken:
        """The cached token while it is fresh, else fetch(grant) -> (token, lifetime in seconds), kept when its
        lifetime is known and positive. wait: the longest wait for another thread's request for the same grant
        (past it, this thread asks too)."""
        key = (grant.cache_key, fingerprint(grant))
        with self._lock:
            fetching = self._fetching.setdefault(key, _Fetching())
            fetching.users += 1
        waited = fetching.lock.acquire(timeout=max(wait, 0.001))
        try:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry.token is not None and self._fresh(entry):
                    return dataclasses.replace(entry.token, cached=True,
                                               expires_in=entry.expires_at - self.clock())
                rotated = entry.refresh_token if entry is not None else None
            token, lifetime = fetch(dataclasses.replace(grant, refresh_token=rotated) if rotated else grant)
            self._keep(key, grant, token, lifetime, rotated)
            return token
        finally:
            if waited:
                fetching.lock.release()
            with self._lock:
                fetching.users -= 1

    def discard(self, grant: OAuthGrant, token: AccessToken) -> None:
        """Forget the token when it is still the cached one (a server refused it: revoked early)."""
        with self._lock:
            entry = self._entries.get((grant.cache_key, fingerprint(grant)))
            if entry is not None and entry.token is not None and hmac.compare_digest(entry.token.value, token.value):
                entry.token = None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _fresh(self, entry: _Entry) -> bool:
        margin = min(EXPIRY_MARGIN, EXPIRY_SHARE * entry.lifetime)
        return self.clock() < entry.expires_at - margin

    def _keep(self, key, grant: OAuthGrant, token: AccessToken, lifetime: float | None, rotated: str | None) -> None:
        newest = token.refresh_token or rotated
        keep = lifetime is not None and lifetime > 0
        with self._lock:
            self._prune()
            if keep or newest:
                now = self.clock()
                self._entries[key] = _Entry(dataclasses.replace(token, refresh_token=None) if keep else None,
                                            now + lifetime if keep else None, lifetime if keep else None, newest)
        # Some endpoints send the refresh token they were given back with every answer: only a new one is news.
        if token.refresh_token and token.refresh_token != (rotated or grant.refresh_token) \
                and self.on_refresh_token is not None:
            self.on_refresh_token(grant, token.refresh_token)

    def _prune(self) -> None:
        """Drop expired tokens, and what is left of an entry with neither token nor newer refresh token."""
        now = self.clock()
        for key, entry in list(self._entries.items()):
            if entry.token is not None and now >= entry.expires_at:
                entry.token = None
            if entry.token is None and entry.refresh_token is None:
                del self._entries[key]
        for key, fetching in list(self._fetching.items()):
            if key not in self._entries and not fetching.users:
                del self._fetching[key]


TOKENS = TokenCache()  # the process's cache: the test dialog's requests and the worker's lanes share it


def obtain_token(grant: OAuthGrant, *, timeout: float, deadline: float, hop: Hop | None = None,
                 blocked_networks=(), ca_pem: str | None = None, allow_loopback: bool = False,
                 cache: TokenCache = TOKENS) -> AccessToken:
    """An access token for the grant: the cache's while fresh, else a new one from the token endpoint, reached like
    the mail server (hop, blocked_networks), TLS always verified (system store plus ca_pem), each socket operation
    within timeout and the whole within deadline seconds. allow_loopback: the setting OAUTH_ALLOW_LOOPBACK (http to
    a loopback address). Raises MailError (TOKEN, POLICY or PROXY), never holding a secret."""
    host, port = check_token_url(grant.token_url, allow_loopback)

    def fetch(asked: OAuthGrant) -> tuple[AccessToken, float | None]:
        route = Route(timeout=timeout, hop=hop, blocked_networks=blocked_networks, ca_pem=ca_pem)
        return token_from_answer(request_token(asked, route, deadline, host, port), host)

    try:
        return cache.obtain(grant, fetch, wait=deadline)
    except MailError as error:
        raise scrubbed(error, grant.secrets()) from None


def token_from_answer(answer: dict, host: str) -> tuple[AccessToken, float | None]:
    """The token of a successful answer (RFC 6749 §5.1) and its lifetime; MailError TOKEN for one without a bearer
    token that fits a SASL response (visible ASCII, RFC 6750 §2.1)."""
    value = answer.get("access_token")
    token_type = str(answer.get("token_type") or "bearer")
    if not isinstance(value, str) or not value or not all(33 <= ord(char) < 127 for char in value) \
            or token_type.lower() != "bearer":
        raise oauth_errors.token_answer_unusable(host, 200, "JSON")
    try:
        lifetime = float(answer["expires_in"])  # some endpoints send it as a string
    except (KeyError, TypeError, ValueError):
        lifetime = None
    rotated = answer.get("refresh_token")
    return AccessToken(value, lifetime, refresh_token=rotated if isinstance(rotated, str) and rotated else None), \
        lifetime


def bearer_mechanism(offered: str) -> str | None:
    """The SASL mechanism to present a token with, of those a server's AUTH line offers (BEARER_MECHANISMS)."""
    names = offered.upper().split()
    return next((name for name in BEARER_MECHANISMS if name in names), None)


def bearer_response(mechanism: str, mailbox: str, token: str, host: str, port: int) -> bytes:
    """The client's SASL response: Google's XOAUTH2, or RFC 7628's OAUTHBEARER (a GS2 header naming the mailbox,
    with "," and "=" escaped as RFC 5801 §4 says, then host, port and the token)."""
    if mechanism == "XOAUTH2":
        return f"user={mailbox}\x01auth=Bearer {token}\x01\x01".encode("utf-8")
    authzid = mailbox.replace("=", "=3D").replace(",", "=2C")
    return f"n,a={authzid},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01".encode("utf-8")
