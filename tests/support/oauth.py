"""Test data for OAuth 2.0 credentials: a real Google-style service-account JSON key and the credential forms; and
grants pointing at the test OAuth server (tests/fixtures/oauth.py), and sending with them."""
import functools
import itertools
import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.fixtures.oauth import APP_MAILBOX, GMAIL_SCOPE, JWT_BEARER, M365_SCOPE, USER_MAILBOX
from tests.support.mail import send
from webapp.mail import OAuthGrant, oauth
from webapp.mail.access_tokens import obtain_token
from webapp.models import Credential

_counter = itertools.count(1)
KINDS = list(oauth.OAUTH_KINDS)
# What the test OAuth server records as each credential type's grant_type.
GRANT_TYPES = {oauth.CLIENT_CREDENTIALS: "client_credentials", oauth.REFRESH_TOKEN: "refresh_token",
               oauth.JWT_BEARER: JWT_BEARER}


@functools.cache
def rsa_private_key_pem() -> str:
    """An RSA private key in PEM, as Google writes it (PKCS#8, unencrypted); made once, RSA keys are slow to make."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def ec_private_key_pem() -> str:
    """A private key of another kind than RSA: Google's service-account assertions are RS256."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def service_account_key(**overrides) -> dict:
    """A service account's JSON key as the Google Cloud console downloads it; None drops a field."""
    data = {
        "type": "service_account",
        "project_id": "smtpdesk-test",
        "private_key_id": "3f1b2c4d5e6f708192a3b4c5d6e7f8091a2b3c4d",
        "private_key": rsa_private_key_pem(),
        "client_email": "mailer@smtpdesk-test.iam.gserviceaccount.com",
        "client_id": "104857600000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    data.update(overrides)
    return {name: value for name, value in data.items() if value is not None}


def service_account_json(**overrides) -> str:
    return json.dumps(service_account_key(**overrides), indent=2)


def oauth_form(kind: str, **overrides) -> dict:
    """The POST body of a valid credential form of an OAuth 2.0 type; override any field."""
    data = {"name": f"oauth-credential-{next(_counter)}", "kind": kind, "mailbox": "notify@example.com",
            "scope": "https://outlook.office365.com/.default", "description": "", "allowed_hosts": ""}
    if kind in ("oauth_client", "oauth_refresh"):
        data.update(token_url="https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
                    client_id="8f0c6a0e-1111-2222-3333-444455556666", client_secret="Client-Secret-0451")
    if kind == "oauth_refresh":
        data.update(authorization_url="https://accounts.google.com/o/oauth2/v2/auth", scope="https://mail.google.com/",
                    refresh_token="1//Refresh-Token-8812")
    if kind == "oauth_jwt":
        data.update(scope="https://mail.google.com/", service_account_key=service_account_json())
    data.update(overrides)
    return data


# --- grants at the test OAuth server ---------------------------------------------------------------------------

def app_grant(server, **overrides) -> OAuthGrant:
    """Client credentials, as Microsoft 365's app-only sending: APP_CLIENT for APP_MAILBOX."""
    fields = dict(kind=oauth.CLIENT_CREDENTIALS, token_url=server.token_url, mailbox=APP_MAILBOX, scope=M365_SCOPE,
                  client_id=server.app_client.client_id, client_secret=server.app_client.client_secret,
                  cache_key="credential:app")
    return OAuthGrant(**{**fields, **overrides})


def user_grant(server, refresh_token: str | None = None, **overrides) -> OAuthGrant:
    """A user's consent kept as a refresh token (USER_MAILBOX, Gmail's scope), WEB_CLIENT's."""
    fields = dict(kind=oauth.REFRESH_TOKEN, token_url=server.token_url, mailbox=USER_MAILBOX, scope=GMAIL_SCOPE,
                  client_id=server.web_client.client_id, client_secret=server.web_client.client_secret,
                  refresh_token=refresh_token or server.refresh_token(), cache_key="credential:user")
    return OAuthGrant(**{**fields, **overrides})


def key_of(info: dict) -> oauth.ServiceAccountKey:
    """A service account's JSON key (the fixture's `info`) as smtpdesk reads it."""
    return oauth.parse_service_account_key(json.dumps(info))[0]


def service_grant(service_account, mailbox: str = USER_MAILBOX, scope: str = GMAIL_SCOPE) -> OAuthGrant:
    """A Google service account acting as `mailbox` (domain-wide delegation), from its JSON key."""
    return OAuthGrant.for_service_account(key_of(service_account.info), mailbox=mailbox, scope=scope,
                                          cache_key="credential:service")


def grant_of(kind: str, server, service_account) -> OAuthGrant:
    """The grant of each credential type as the tests above make it."""
    return {oauth.CLIENT_CREDENTIALS: lambda: app_grant(server), oauth.REFRESH_TOKEN: lambda: user_grant(server),
            oauth.JWT_BEARER: lambda: service_grant(service_account)}[kind]()


def smtp_server_for(smtp_server, server, kind: str, **options):
    """An SMTP server taking the tokens of that credential type: Microsoft 365's scope and refusals for client
    credentials, Gmail's for the others."""
    if kind == oauth.CLIENT_CREDENTIALS:
        return smtp_server(oauth=server, oauth_scope=M365_SCOPE, oauth_failure="m365", **options)
    return smtp_server(oauth=server, **options)


def send_with(server, grant: OAuthGrant, **settings):
    """One message through the test server, logging in with the grant's token (loopback http token URLs allowed)."""
    return send(server, **{"oauth": grant, "oauth_allow_loopback": True, **settings})


def token_for(grant: OAuthGrant, **options):
    """The grant's access token as the transport gets it (from the process's cache when there)."""
    return obtain_token(grant, **{"timeout": 2.0, "deadline": 4.0, "allow_loopback": True, **options})


# --- credentials at the test OAuth server ----------------------------------------------------------------------

def vault_form(kind: str, server, service_account=None, **overrides) -> dict:
    """The credential form of an OAuth 2.0 type with the test server's client and mailbox, as grant_of() makes
    them (saving it needs OAUTH_ALLOW_LOOPBACK: the server's URLs are http://127.0.0.1)."""
    grant = grant_of(kind, server, service_account)
    data = oauth_form(kind, mailbox=grant.mailbox, scope=grant.scope)
    if kind != oauth.JWT_BEARER:
        data.update(token_url=grant.token_url, client_id=grant.client_id, client_secret=grant.client_secret)
    if kind == oauth.REFRESH_TOKEN:
        data.update(authorization_url=server.authorize_url, refresh_token=grant.refresh_token)
    if kind == oauth.JWT_BEARER:
        data.update(service_account_key=service_account.json)
    data.update(overrides)
    return data


def make_oauth_credential(kind: str, server, service_account=None, **secrets) -> Credential:
    """A saved credential of an OAuth 2.0 type with the test server's client and mailbox, its secrets encrypted by
    the vault as the credential form stores them; secrets: client_secret or refresh_token to store instead."""
    grant = grant_of(kind, server, service_account)
    credential = Credential(name=f"oauth-{kind}-{next(_counter)}", kind=kind, username=grant.mailbox,
                            token_url=grant.token_url, client_id=grant.client_id or "", scope=grant.scope)
    credential.set_secret(secrets.get("client_secret", grant.client_secret), "client_secret_encrypted")
    credential.set_secret(secrets.get("refresh_token", grant.refresh_token), "refresh_token_encrypted")
    if kind == oauth.JWT_BEARER:
        key, stored = oauth.parse_service_account_key(service_account.json)
        credential.set_secret(stored, "service_account_key_encrypted")
        credential.service_account_email, credential.service_account_key_id = key.client_email, key.private_key_id
    credential.save()
    return credential
