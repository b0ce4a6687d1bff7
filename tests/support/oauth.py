"""OAuth grants pointing at the test OAuth server (tests/fixtures/oauth.py), and sending with them."""
from tests.fixtures.oauth import APP_MAILBOX, GMAIL_SCOPE, JWT_BEARER, M365_SCOPE, USER_MAILBOX
from tests.support.mail import send
from webapp.mail import OAuthGrant
from webapp.mail.oauth import obtain_token

GRANT_TYPES = {"client_credentials": "client_credentials", "refresh_token": "refresh_token",
               "jwt_bearer": JWT_BEARER}


def app_grant(oauth, **overrides) -> OAuthGrant:
    """Client credentials, as Microsoft 365's app-only sending: APP_CLIENT for APP_MAILBOX."""
    fields = dict(kind="client_credentials", token_url=oauth.token_url, mailbox=APP_MAILBOX, scope=M365_SCOPE,
                  client_id=oauth.app_client.client_id, client_secret=oauth.app_client.client_secret,
                  cache_key="credential:app")
    return OAuthGrant(**{**fields, **overrides})


def user_grant(oauth, refresh_token: str | None = None, **overrides) -> OAuthGrant:
    """A user's consent kept as a refresh token (USER_MAILBOX, Gmail's scope), WEB_CLIENT's."""
    fields = dict(kind="refresh_token", token_url=oauth.token_url, mailbox=USER_MAILBOX, scope=GMAIL_SCOPE,
                  client_id=oauth.web_client.client_id, client_secret=oauth.web_client.client_secret,
                  refresh_token=refresh_token or oauth.refresh_token(), cache_key="credential:user")
    return OAuthGrant(**{**fields, **overrides})


def service_grant(service_account, mailbox: str = USER_MAILBOX, scope: str = GMAIL_SCOPE) -> OAuthGrant:
    """A Google service account acting as `mailbox` (domain-wide delegation), from its JSON key."""
    return OAuthGrant.for_service_account(service_account.info, mailbox=mailbox, scope=scope,
                                          cache_key="credential:service")


def grant_of(kind: str, oauth, service_account) -> OAuthGrant:
    """The grant of each kind as the tests above make it."""
    return {"client_credentials": lambda: app_grant(oauth), "refresh_token": lambda: user_grant(oauth),
            "jwt_bearer": lambda: service_grant(service_account)}[kind]()


def send_with(server, grant: OAuthGrant, **settings):
    """One message through the test server, logging in with the grant's token (loopback http token URLs allowed)."""
    return send(server, **{"oauth": grant, "oauth_allow_loopback": True, **settings})


def token_for(grant: OAuthGrant, **options):
    """The grant's access token as the transport gets it (from the process's cache when there)."""
    return obtain_token(grant, **{"timeout": 2.0, "deadline": 4.0, "allow_loopback": True, **options})
