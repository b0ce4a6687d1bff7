"""“Connect with the provider”: the authorization code flow with PKCE that gives an OAuth 2.0 refresh-token credential
its refresh token. webapp.mail builds the authorization request and asks the token endpoint; this module keeps the
attempt between the two requests and says where the token endpoint is reached from.

An attempt lives in the signed session cookie, under its state, for ATTEMPT_SECONDS: the credential and a digest
of the settings the person at the provider approves, the user who started it, the code_verifier and the redirect
URI. The callback takes it out before anything else, so a state is good for one callback, in the browser and session
that started it, by the same user, while the credential's settings stay as they were."""
import hashlib
import json
import re
import time
from urllib.parse import urlsplit

from flask import current_app, session, url_for
from flask_login import current_user

from webapp.mail import oauth_errors
from webapp.mail.authorization import authorization_request
from webapp.mail.connectors import parse_networks
from webapp.mail.oauth import REFRESH_TOKEN, CodeExchange, OAuthSettingError, check_endpoint
from webapp.mail.token_endpoint import exchange_code
from webapp.models import Credential

# An origin as a CSP source expression may name it: no spaces, quotes, commas or semicolons.
ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
SESSION_KEY = "oauth_connect"
ATTEMPT_SECONDS = 600
MAX_ATTEMPTS = 3  # per session: a few tabs at once, and the cookie stays small
MAX_REFRESH_TOKEN = 8192  # as the credential form takes a pasted one


def redirect_uri() -> str:
    """The one callback address of every credential, as the provider must have it registered. Behind a reverse proxy
    with SMTPDESK_BEHIND_HTTPS, its scheme and host are those the proxy forwards (X-Forwarded-Proto, -Host)."""
    return url_for("credentials.oauth_callback", _external=True)


def sign_in_origins(credentials) -> list[str]:
    """The origins of the sign-in pages that “Connect with the provider” may send the browser to from a page
    showing these credentials (web.allow_form_action)."""
    origins = set()
    for credential in credentials:
        if credential.kind != REFRESH_TOKEN:
            continue
        try:
            check_endpoint(credential.authorization_url, bool(current_app.config["OAUTH_ALLOW_LOOPBACK"]))
        except OAuthSettingError:
            continue  # the button says why when pressed, and sends nobody there
        parts = urlsplit(credential.authorization_url)
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        if ORIGIN.fullmatch(origin):
            origins.add(origin)
    return sorted(origins)


def start(credential: Credential) -> str:
    """The provider's authorization URL for this credential; the attempt is kept in the session. Raises
    oauth.OAuthSettingError when the credential's authorization URL breaks the endpoint rule."""
    callback = redirect_uri()
    request = authorization_request(credential.authorization_url, client_id=credential.client_id,
                                    scope=credential.scope, redirect_uri=callback, mailbox=credential.username,
                                    allow_loopback=bool(current_app.config["OAUTH_ALLOW_LOOPBACK"]))
    attempts = _current(session.get(SESSION_KEY))
    while len(attempts) >= MAX_ATTEMPTS:  # the oldest goes
        del attempts[min(attempts, key=lambda state: attempts[state]["expires"])]
    attempts[request.state] = {"credential": credential.id, "settings": settings_of(credential),
                               "user": current_user.id, "redirect_uri": callback, "verifier": request.code_verifier,
                               "expires": int(time.time()) + ATTEMPT_SECONDS}
    session[SESSION_KEY] = attempts
    return request.url


def settings_of(credential: Credential) -> str:
    """A digest of what the person at the provider approves (which client, where, for which scope and mailbox): an
    attempt started under other settings must not store a token for these."""
    settings = [credential.kind, credential.authorization_url, credential.token_url, credential.client_id,
                credential.scope, credential.username]
    return hashlib.sha256(json.dumps(settings).encode("utf-8")).hexdigest()


def take(state) -> dict | None:
    """The attempt this state names, removed from the session whatever follows; None when the session has none
    (never started here, already used, expired) or another user started it."""
    attempts = _current(session.get(SESSION_KEY))
    attempt = attempts.pop(state, None) if isinstance(state, str) else None
    if attempts:
        session[SESSION_KEY] = attempts
    else:
        session.pop(SESSION_KEY, None)
    if attempt is None or attempt["user"] != current_user.id:
        return None
    return attempt


def _current(attempts) -> dict:
    """The session's attempts that have not expired."""
    now = time.time()
    if not isinstance(attempts, dict):
        return {}
    return {state: attempt for state, attempt in attempts.items()
            if isinstance(attempt, dict) and attempt.get("expires", 0) > now}


def refresh_token(credential: Credential, attempt: dict, code: str) -> str:
    """The refresh token the token endpoint gives for the code, asked with the attempt's verifier and redirect URI.
    Raises MailError: the token endpoint's refusal explained, or no refresh token in its answer."""
    config = current_app.config
    exchange = CodeExchange(token_url=credential.token_url, mailbox=credential.username, scope=credential.scope,
                            client_id=credential.client_id, redirect_uri=attempt["redirect_uri"],
                            client_secret=credential.reveal_secret("client_secret_encrypted"), code=code,
                            code_verifier=attempt["verifier"])
    hop, ca_pem = _route_of(credential)
    answer = exchange_code(exchange, timeout=config["SMTP_TIMEOUT"], deadline=config["SMTP_DEADLINE"], hop=hop,
                           blocked_networks=parse_networks(config["OUTBOUND_BLOCKED_NETWORKS"]), ca_pem=ca_pem,
                           allow_loopback=bool(config["OAUTH_ALLOW_LOOPBACK"]))
    token = answer.get("refresh_token")
    if not isinstance(token, str) or not token or len(token) > MAX_REFRESH_TOKEN \
            or not all(33 <= ord(char) < 127 for char in token):
        raise oauth_errors.no_refresh_token(urlsplit(credential.token_url).hostname)
    return token


def _route_of(credential: Credential):
    """The network connector and extra CA the token endpoint is reached with: those of the first account, by name,
    that uses the credential, as its sending would; direct with the system's trust store when none does."""
    accounts = credential.accounts_using()
    if not accounts:
        return None, None
    connector = accounts[0].effective_connector()
    return (connector.hop() if connector else None), accounts[0].ca_cert or None


def authorization_refused(credential: Credential, error: str, description: str):
    """The MailError for an error the provider sent the browser back with."""
    host = urlsplit(credential.authorization_url).hostname or credential.authorization_url[:100]
    return oauth_errors.authorization_refused(error[:100], description, host=host, scope=credential.scope,
                                              mailbox=credential.username)
