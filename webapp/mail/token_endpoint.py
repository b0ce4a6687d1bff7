"""One request to an OAuth 2.0 token endpoint (RFC 6749 §3.2): authlib builds and signs it, requests carries it over
a connection that connectors.open_connection opens (the outbound policy and the account's network connector apply as
to the mail server), TLS always verified, every socket bounded by the timeout and the whole by a deadline. Asked for
an access token when sending (access_tokens.obtain_token) and for a credential's first refresh token when it is
connected with its provider (exchange_code)."""
import dataclasses
import json
import ssl

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import AssertionSession, OAuth2Session
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from webapp.mail import oauth_errors
from webapp.mail.connectors import Hop, open_connection
from webapp.mail.deadline import Watchdog
from webapp.mail.errors import MailError, OversizedReply, Step, bad_ca_certificate
from webapp.mail.oauth import (
    JWT_BEARER,
    REFRESH_TOKEN,
    CodeExchange,
    OAuthSettingError,
    ServiceAccountKey,
    check_endpoint,
)

# A token answer is a few KB (a JWT access token, perhaps an ID token); reading stops past this.
MAX_ANSWER = 64 * 1024


class Route:
    """How to reach a token endpoint: the account's network connector, the outbound policy, its extra CA, the
    timeout of each socket operation and a watchdog holding the whole request to its deadline."""

    def __init__(self, *, timeout: float, hop: Hop | None = None, blocked_networks=(), ca_pem: str | None = None):
        self.timeout = timeout
        self.hop = hop
        self.blocked_networks = blocked_networks
        self.ca_pem = ca_pem
        self.watchdog = Watchdog()

    def connect(self, host: str, port: int):
        """A TCP connection to host:port as the mail server gets one (MailError when refused or unreachable)."""
        sock = open_connection(host, port, self.watchdog.io_timeout(self.timeout), self.hop,
                               blocked_networks=self.blocked_networks)
        self.watchdog.watch(sock)
        return sock

    def tls_context(self) -> ssl.SSLContext:
        """Always verifying: the system store, TLS 1.2+, the host name; plus the account's CA when it has one."""
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.ca_pem:
            try:
                context.load_verify_locations(cadata=self.ca_pem)
            except (ssl.SSLError, ValueError) as exc:
                raise bad_ca_certificate(exc) from None
        return context


class _Adapter(HTTPAdapter):
    """requests' transport with the route's sockets and TLS context, no retries, and answers read up to
    MAX_ANSWER (the last one kept in `answer` for explaining a refusal, whatever authlib makes of it)."""

    def __init__(self, route: Route):
        self.route = route
        self.context = route.tls_context()
        self.answer: tuple[int, bytes] | None = None
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        route = self.route

        def new_conn(connection):
            return route.connect(connection.host, connection.port)

        # Per route, so that no connection made for one account's route serves another's.
        plain = type("RoutedConnection", (HTTPConnection,), {"_new_conn": new_conn})
        tls = type("RoutedTlsConnection", (HTTPSConnection,), {"_new_conn": new_conn})
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("RoutedPool", (HTTPConnectionPool,), {"ConnectionCls": plain}),
            "https": type("RoutedTlsPool", (HTTPSConnectionPool,), {"ConnectionCls": tls}),
        }

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, True, None)
        pool_kwargs.update(ssl_context=self.context, cert_reqs="CERT_REQUIRED")
        return host_params, pool_kwargs

    def cert_verify(self, conn, url, verify, cert):
        # requests would add its own CA bundle (certifi) to the context: the context's trust is the whole of it.
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = conn.ca_cert_dir = None

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        response = super().send(request, stream=True, timeout=timeout, verify=True, cert=None, proxies=None)
        try:
            body = response.raw.read(MAX_ANSWER + 1, decode_content=True)
        finally:
            response.close()
        if len(body) > MAX_ANSWER:
            raise OversizedReply(MAX_ANSWER)
        # requests' way to hold a body already read (iter_content would read it again).
        response._content, response._content_consumed = body, True
        self.answer = (response.status_code, body)
        return response


def check_token_url(url: str, allow_loopback: bool) -> tuple[str, int]:
    """The token URL's (host, port) when it may be asked (oauth.check_endpoint, the rule the credential form applies
    on saving); MailError POLICY otherwise, and nothing is sent."""
    try:
        return check_endpoint(url, allow_loopback)
    except OAuthSettingError as error:
        raise oauth_errors.token_url_refused(url, error.message, error.params) from None


def request_token(grant, route: Route, deadline: float, host: str, port: int) -> dict:
    """Ask the grant's token endpoint (at host:port, from check_token_url) for an access token: the answer's JSON
    object (access_token, expires_in, ...). Raises MailError: step TOKEN with the endpoint's refusal explained,
    POLICY or PROXY from the route."""
    session = _session(grant, route.timeout)
    adapter = _Adapter(route)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    route.watchdog.arm(deadline)
    try:
        if isinstance(grant, CodeExchange):
            return dict(session.fetch_token(grant.token_url, grant_type=grant.grant_type, code=grant.code,
                                            redirect_uri=grant.redirect_uri, code_verifier=grant.code_verifier))
        if grant.kind == JWT_BEARER:
            return dict(session.refresh_token())
        if grant.kind == REFRESH_TOKEN:
            return dict(session.refresh_token(grant.token_url, refresh_token=grant.refresh_token))
        return dict(session.fetch_token(grant.token_url, grant_type="client_credentials"))
    except MailError as error:
        raise _route_error(error, host, port, route) from None
    except OversizedReply as exc:
        raise oauth_errors.token_oversized(host, exc.limit) from None
    except (requests.HTTPError, AuthlibBaseError, ValueError) as exc:
        # authlib's reading of an answer that holds no token (an error, a 5xx, not JSON): explained from the answer
        # itself, whatever authlib made of it (it refuses some error descriptions with a ValueError of its own).
        if adapter.answer is None:
            raise _transport_error(exc, host, port, route) from None
        raise refusal(grant, host, *adapter.answer) from None
    except requests.RequestException as exc:
        raise _transport_error(exc, host, port, route) from None
    finally:
        route.watchdog.disarm()
        route.watchdog.forget()
        session.close()


def exchange_code(exchange: CodeExchange, *, timeout: float, deadline: float, hop: Hop | None = None,
                  blocked_networks=(), ca_pem: str | None = None, allow_loopback: bool = False) -> dict:
    """The token endpoint's answer to an authorization code (access_token, refresh_token, ...), asked as an access
    token is when sending: the token URL rule, the outbound policy and hop, TLS verified, the timeout and deadline.
    Raises MailError (TOKEN, POLICY or PROXY) holding none of the exchange's secrets."""
    host, port = check_token_url(exchange.token_url, allow_loopback)
    route = Route(timeout=timeout, hop=hop, blocked_networks=blocked_networks, ca_pem=ca_pem)
    try:
        return request_token(exchange, route, deadline, host, port)
    except MailError as error:
        raise scrubbed(error, exchange.secrets()) from None


def scrubbed(error: MailError, values: list[str]) -> MailError:
    """The error with each of the values masked wherever a provider's words could have echoed it."""
    def scrub(text):
        if isinstance(text, str):
            for value in values:
                text = text.replace(value, "********")
        return text

    return dataclasses.replace(error, params={name: scrub(v) for name, v in error.params.items()},
                               reply=scrub(error.reply))


def _session(grant, timeout: float) -> requests.Session:
    """authlib's session for the grant: no proxy or .netrc from the environment, no redirect followed (it would
    carry the client's secret elsewhere), the timeout on every request."""
    options = {"default_timeout": timeout, "trust_env": False, "max_redirects": 0}
    if grant.kind == JWT_BEARER:
        account = grant.service_account
        header = {"alg": "RS256", **({"kid": account.private_key_id} if account.private_key_id else {})}
        # Google's service-account assertion (RFC 7523 §2.1): the scope is a claim, the mailbox the subject.
        return AssertionSession(grant.token_url, issuer=account.client_email, subject=grant.mailbox,
                                audience=grant.token_url, claims={"scope": grant.scope}, key=_private_key(account),
                                header=header, **options)
    # client_secret_post: what Microsoft and Google document, and it form-encodes the secret (authlib's Basic
    # header does not, and RFC 6749 §2.3.1 wants it); a public client (no secret) sends its ID alone.
    method = "client_secret_post" if grant.client_secret else "none"
    return OAuth2Session(grant.client_id, grant.client_secret, token_endpoint_auth_method=method,
                         scope=grant.scope or None, **options)


def _private_key(service_account: ServiceAccountKey) -> RSAKey:
    """The service account's private key; MailError TOKEN when it cannot sign (before any connection)."""
    try:
        return RSAKey.import_key(service_account.private_key)
    except (JoseError, ValueError, TypeError):
        raise oauth_errors.service_account_key_unusable(service_account.client_email) from None


def refusal(grant, host: str, status: int, body: bytes) -> MailError:
    """A token answer that is not a token: the RFC 6749 §5.2 error it names, or what kind of answer it was."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return oauth_errors.token_error(answer["error"], str(answer.get("error_description") or ""), grant,
                                        host=host, status=status)
    return oauth_errors.token_answer_unusable(host, status, "JSON" if answer is not None else None)


def _route_error(error: MailError, host: str, port: int, route: Route) -> MailError:
    """The route's MailError for the token endpoint: a policy or connector refusal as it is, the rest in the
    words of the token step."""
    if error.step in (Step.POLICY, Step.PROXY):
        return error
    if error.step is Step.TIMEOUT:
        return oauth_errors.token_timeout(host, route.timeout)
    return oauth_errors.token_unreachable(host, port, str(error.params.get("reason") or error.message % error.params))


def _transport_error(exc: requests.RequestException, host: str, port: int, route: Route) -> MailError:
    """A failure of the HTTP exchange: timeout (or the deadline), certificate, TLS, redirect, or a broken answer."""
    if route.watchdog.expired or isinstance(exc, requests.Timeout):
        return oauth_errors.token_timeout(host, route.timeout)
    if isinstance(exc, requests.TooManyRedirects):
        return oauth_errors.token_answer_unusable(host, exc.response.status_code if exc.response is not None else 0,
                                                  "redirect")
    cause = _innermost(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return oauth_errors.token_certificate(host, cause)
    if isinstance(exc, requests.exceptions.SSLError):
        return oauth_errors.token_tls(host, port, getattr(cause, "reason", None) or str(cause))
    if isinstance(cause, OversizedReply):
        return oauth_errors.token_oversized(host, cause.limit)
    return oauth_errors.token_unreachable(host, port, str(cause) or type(cause).__name__)


def _innermost(exc: BaseException) -> BaseException:
    """The exception requests and urllib3 wrapped (in args, __cause__ or MaxRetryError.reason), innermost first."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = exc.__cause__ or next((arg for arg in exc.args if isinstance(arg, BaseException)), None)
        if inner is None:
            break
        exc = inner
    return exc

