"""The OAuth 2.0 test server and the SMTP servers' XOAUTH2/OAUTHBEARER behave as the providers do, so the app's tests
can trust them: every grant, its refusals, and bearer tokens accepted or refused over SMTP."""
import base64
import hashlib
import json
import secrets
import smtplib
import ssl
import time
import urllib.parse

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.fixtures.oauth import (
    APP_MAILBOX,
    GMAIL_SCOPE,
    JWT_BEARER,
    M365_SCOPE,
    USER_MAILBOX,
    OAuthClient,
    http_request,
    make_service_account_key,
)
from tests.fixtures.smtp_oauth import M365_SMTP_AUTH_DISABLED

CALLBACK = "http://127.0.0.1:8765/oauth/callback"  # never contacted: the test reads the redirect instead


def send_with_token(server, mechanism: str, mailbox: str, token: str, challenges: list | None = None,
                    tls_context: ssl.SSLContext | None = None) -> None:
    """AUTH with the bearer token as smtplib does it, then one message; the error challenges go to `challenges`."""
    initial = {"XOAUTH2": f"user={mailbox}\x01auth=Bearer {token}\x01\x01",
               "OAUTHBEARER": f"n,a={mailbox},\x01host={server.host}\x01port={server.port}\x01"
                              f"auth=Bearer {token}\x01\x01"}[mechanism]

    def respond(challenge=None):
        if challenge is None:
            return initial
        (challenges if challenges is not None else []).append(challenge)
        return {"XOAUTH2": "", "OAUTHBEARER": "\x01"}[mechanism]  # the dummy response after an error

    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        if tls_context is not None:
            client.starttls(context=tls_context)
        client.ehlo()
        client.auth(mechanism, respond)
        client.sendmail(mailbox, ["ops@example.com"], b"Subject: OAuth\r\n\r\nsent with a bearer token\r\n")


def pkce() -> tuple[str, str]:
    """A code_verifier and its S256 code_challenge (RFC 7636 4.1, 4.2)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorization_url(oauth, challenge: str | None, **params) -> str:
    """Where the app would send the browser to connect WEB_CLIENT to the user's mailbox."""
    query = {"response_type": "code", "client_id": oauth.web_client.client_id, "redirect_uri": CALLBACK,
             "scope": f"{GMAIL_SCOPE} openid", "state": "st-42", "access_type": "offline", **params}
    if challenge is not None:
        query.update(code_challenge=challenge, code_challenge_method="S256")
    return f"{oauth.authorize_url}?{urllib.parse.urlencode(query)}"


def query_of(url: str) -> dict:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def claims_of(oauth, token: str) -> dict:
    return jwt.decode(token, KeySet.import_key_set(oauth.jwks()), algorithms=["RS256"]).claims


def test_client_credentials_token_is_accepted_by_xoauth2(oauth, smtp_server):
    server = smtp_server(oauth=oauth, oauth_scope=M365_SCOPE, oauth_failure="m365")
    status, answer = oauth.token(oauth.app_client, grant_type="client_credentials", scope=M365_SCOPE)
    assert status == 200
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 3600 and "refresh_token" not in answer
    claims = claims_of(oauth, answer["access_token"])
    assert claims["iss"] == oauth.issuer and claims["email"] == APP_MAILBOX and claims["scope"] == M365_SCOPE
    send_with_token(server, "XOAUTH2", APP_MAILBOX, answer["access_token"])
    assert server.handler.logins == [("XOAUTH2", APP_MAILBOX)]
    assert server.received[0].mail_from == APP_MAILBOX


def test_user_token_is_accepted_by_oauthbearer_after_starttls(oauth, smtp_server, certificates):
    server = smtp_server("starttls", oauth=oauth)
    send_with_token(server, "OAUTHBEARER", USER_MAILBOX, oauth.access_token(USER_MAILBOX),
                    tls_context=ssl.create_default_context(cafile=certificates.ca_path))
    assert server.handler.logins == [("OAUTHBEARER", USER_MAILBOX)] and len(server.received) == 1


def test_oauth_is_offered_only_when_asked(oauth, smtp_server):
    for server, offered in ((smtp_server(users={"u": "p"}), False), (smtp_server(oauth=oauth), True)):
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            client.ehlo()
            mechanisms = client.esmtp_features["auth"].split()
        assert ("XOAUTH2" in mechanisms and "OAUTHBEARER" in mechanisms) is offered


def tampered(token: str) -> str:
    """The token with another mailbox in its claims and the original signature."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["email"] = "intruder@example.com"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
@pytest.mark.parametrize("case, reason", [
    ("expired", "ExpiredTokenError"),
    ("garbage", "invalid token"),
    ("tampered", "BadSignatureError"),
    ("other mailbox", "not ana@example.com"),
    ("other scope", "lacks"),
])
def test_a_bad_token_gets_the_json_challenge_then_535_as_gmail_answers(oauth, smtp_server, mechanism, case, reason):
    server = smtp_server(oauth=oauth)
    token = {"expired": lambda: oauth.access_token(expires_in=-60),
             "garbage": lambda: "not-a-jwt",
             "tampered": lambda: tampered(oauth.access_token()),
             "other mailbox": lambda: oauth.access_token("bia@example.com"),
             "other scope": lambda: oauth.access_token(scope="openid email")}[case]()
    challenges = []
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        send_with_token(server, mechanism, USER_MAILBOX, token, challenges)
    assert [json.loads(challenge) for challenge in challenges] == [
        {"status": "401", "schemes": "bearer", "scope": GMAIL_SCOPE}]
    assert refused.value.smtp_code == 535 and b"5.7.8 Username and Password not accepted" in refused.value.smtp_error
    assert reason in server.handler.oauth_refusals[0] and server.received == []


def test_microsoft_365_refusals_come_at_once(oauth, smtp_server):
    bad_token = smtp_server(oauth=oauth, oauth_scope=M365_SCOPE, oauth_failure="m365")
    tenant_off = smtp_server(oauth=oauth, oauth_scope=M365_SCOPE, oauth_failure=M365_SMTP_AUTH_DISABLED)
    good = oauth.access_token(APP_MAILBOX, scope=M365_SCOPE)
    for server, token, expected in ((bad_token, good[:-4], b"5.7.3 Authentication unsuccessful"),
                                    (tenant_off, good, b"5.7.139 Authentication unsuccessful, SmtpClientAuth")):
        challenges = []
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            send_with_token(server, "XOAUTH2", APP_MAILBOX, token, challenges)
        assert refused.value.smtp_code == 535 and expected in refused.value.smtp_error and challenges == []


def test_token_lifetime_is_set_per_test(oauth, smtp_server):
    server = smtp_server(oauth=oauth, oauth_scope=M365_SCOPE)
    oauth.configure(expires_in=30)
    _, answer = oauth.token(oauth.app_client, grant_type="client_credentials", scope=M365_SCOPE)
    claims = claims_of(oauth, answer["access_token"])
    assert answer["expires_in"] == 30 and claims["exp"] - claims["iat"] == 30
    oauth.configure(expires_in=0)  # born expired: what a cached token is once its time is up
    _, answer = oauth.token(oauth.app_client, grant_type="client_credentials", scope=M365_SCOPE)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        send_with_token(server, "XOAUTH2", APP_MAILBOX, answer["access_token"])


def test_client_authentication_scope_and_grant_refusals(oauth):
    app, web = oauth.app_client, oauth.web_client
    wrong = OAuthClient(app.client_id, "wrong-secret")
    cases = [
        (oauth.token(wrong, grant_type="client_credentials", scope=M365_SCOPE), 401, "invalid_client"),
        (oauth.token(wrong, basic=False, grant_type="client_credentials", scope=M365_SCOPE), 401, "invalid_client"),
        (oauth.token(grant_type="client_credentials", scope=M365_SCOPE), 401, "invalid_client"),
        (oauth.token(app, grant_type="client_credentials", scope=GMAIL_SCOPE), 400, "invalid_scope"),
        (oauth.token(app, grant_type="client_credentials"), 400, "invalid_scope"),
        (oauth.token(web, grant_type="client_credentials", scope=GMAIL_SCOPE), 400, "unauthorized_client"),
        (oauth.token(app, grant_type="password", username="u", password="p"), 400, "unsupported_grant_type"),
    ]
    assert [(status, answer["error"]) for (status, answer), *_ in cases] == [case[1:] for case in cases]
    assert oauth.token(app, basic=False, grant_type="client_credentials", scope=M365_SCOPE)[0] == 200
    oauth.configure(token_failure={"status": 503, "error": "temporarily_unavailable"})
    status, answer = oauth.token(app, grant_type="client_credentials", scope=M365_SCOPE)
    assert (status, answer["error"]) == (503, "temporarily_unavailable")


def test_wrong_secret_challenges_basic_authentication(oauth):
    wrong = OAuthClient(oauth.app_client.client_id, "wrong-secret")
    status, headers, _ = http_request(oauth.token_url, b"grant_type=client_credentials", {
        "Authorization": "Basic " + base64.b64encode(f"{wrong.client_id}:{wrong.client_secret}".encode()).decode(),
        "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")


def test_refresh_token_grant_until_revoked(oauth, smtp_server):
    server = smtp_server(oauth=oauth)
    refresh_token = oauth.refresh_token(USER_MAILBOX)
    status, answer = oauth.token(oauth.web_client, grant_type="refresh_token", refresh_token=refresh_token)
    assert status == 200 and answer["scope"] == GMAIL_SCOPE and "refresh_token" not in answer  # as Google does
    send_with_token(server, "XOAUTH2", USER_MAILBOX, answer["access_token"])
    status, answer = oauth.token(oauth.app_client, grant_type="refresh_token", refresh_token=refresh_token)
    assert (status, answer["error"]) == (400, "unauthorized_client")
    status, answer = oauth.token(oauth.web_client, grant_type="refresh_token", refresh_token=refresh_token,
                                 scope=f"{GMAIL_SCOPE} openid")
    assert (status, answer["error"]) == (400, "invalid_scope")  # no wider than what the user consented to
    assert oauth.revoke(refresh_token) == 1
    status, answer = oauth.token(oauth.web_client, grant_type="refresh_token", refresh_token=refresh_token)
    assert (status, answer["error"]) == (400, "invalid_grant")
    status, answer = oauth.token(oauth.web_client, grant_type="refresh_token", refresh_token="never-issued")
    assert (status, answer["error"]) == (400, "invalid_grant")
    assert [(r["grant_type"], r["status"]) for r in oauth.token_requests()] == [
        ("refresh_token", 200), ("refresh_token", 400), ("refresh_token", 400), ("refresh_token", 400),
        ("refresh_token", 400)]


def test_refresh_tokens_rotate_as_microsoft_does_and_rfc_7009_revokes(oauth):
    oauth.configure(rotate_refresh_tokens=True)
    first = oauth.refresh_token()
    _, answer = oauth.token(oauth.web_client, grant_type="refresh_token", refresh_token=first)
    second = answer["refresh_token"]
    assert second != first
    assert http_request(oauth.revoke_url, urllib.parse.urlencode({"token": second}).encode(),
                {"Content-Type": "application/x-www-form-urlencoded"})[0] == 200
    assert oauth.token(oauth.web_client, grant_type="refresh_token", refresh_token=second)[1]["error"] == \
        "invalid_grant"


def test_authorization_code_with_pkce_round_trip(oauth, smtp_server):
    server = smtp_server(oauth=oauth)
    verifier, challenge = pkce()
    callback = oauth.consent(authorization_url(oauth, challenge))
    assert callback.startswith(CALLBACK) and query_of(callback)["state"] == "st-42"
    code = query_of(callback)["code"]
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}
    status, answer = oauth.token(oauth.web_client, **exchange, code_verifier=verifier)
    assert status == 200 and answer["scope"] == f"{GMAIL_SCOPE} openid" and "id_token" in answer
    send_with_token(server, "XOAUTH2", USER_MAILBOX, answer["access_token"])
    status, again = oauth.token(oauth.web_client, **exchange, code_verifier=verifier)
    assert (status, again["error"]) == (400, "invalid_grant")  # a code buys tokens once
    status, refreshed = oauth.token(oauth.web_client, grant_type="refresh_token",
                                    refresh_token=answer["refresh_token"])
    assert status == 200 and claims_of(oauth, refreshed["access_token"])["email"] == USER_MAILBOX


@pytest.mark.parametrize("exchange", [
    {"code_verifier": pkce()[0]},                                            # not the challenge's verifier
    {},                                                                      # no verifier at all
    {"code_verifier": "VERIFIER", "redirect_uri": "http://127.0.0.1:9/x"},  # another redirect_uri
    {"code_verifier": "VERIFIER", "code": "never-issued"},
])
def test_authorization_code_refusals(oauth, exchange):
    verifier, challenge = pkce()
    code = query_of(oauth.consent(authorization_url(oauth, challenge)))["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, **exchange}
    if form.get("code_verifier") == "VERIFIER":
        form["code_verifier"] = verifier
    status, answer = oauth.token(oauth.web_client, **form)
    assert (status, answer["error"]) == (400, "invalid_grant")


def test_authorization_endpoint_refusals_go_back_to_the_client(oauth):
    _, challenge = pkce()
    assert query_of(oauth.consent(authorization_url(oauth, None)))["error"] == "invalid_request"  # PKCE required
    assert query_of(oauth.consent(authorization_url(oauth, challenge, scope="admin")))["error"] == "invalid_scope"
    other_client = authorization_url(oauth, challenge, client_id=oauth.app_client.client_id)
    assert query_of(oauth.consent(other_client))["error"] == "unauthorized_client"
    oauth.configure(authorize_error="access_denied")  # the user clicked Cancel
    assert query_of(oauth.consent(authorization_url(oauth, challenge))) == {
        "error": "access_denied", "error_description": "scripted by the test", "state": "st-42"}
    oauth.configure(clients={oauth.web_client.client_id: {"redirect_uris": ["https://desk.example.com/cb"]}})
    with pytest.raises(AssertionError, match="400"):  # never sent to an unregistered redirect_uri
        oauth.consent(authorization_url(oauth, challenge))


def test_login_hint_chooses_the_user(oauth):
    verifier, challenge = pkce()
    code = query_of(oauth.consent(authorization_url(oauth, challenge, login_hint="bia@example.com")))["code"]
    _, answer = oauth.token(oauth.web_client, grant_type="authorization_code", code=code, redirect_uri=CALLBACK,
                            code_verifier=verifier)
    assert claims_of(oauth, answer["access_token"])["email"] == "bia@example.com"


def test_service_account_key_looks_like_googles(oauth, service_account):
    info = service_account.info
    assert info["type"] == "service_account" and info["token_uri"] == oauth.token_url
    assert info["client_email"].endswith(".iam.gserviceaccount.com") and len(info["private_key_id"]) == 40
    key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and json.loads(service_account.json) == info


def test_jwt_bearer_grant_with_the_service_account_key(oauth, smtp_server, service_account):
    server = smtp_server(oauth=oauth)
    status, answer = oauth.token(grant_type=JWT_BEARER, assertion=service_account.assertion(USER_MAILBOX))
    assert status == 200 and answer["token_type"] == "Bearer" and "refresh_token" not in answer
    send_with_token(server, "XOAUTH2", USER_MAILBOX, answer["access_token"])
    assert claims_of(oauth, answer["access_token"])["sub"] == USER_MAILBOX


def test_jwt_bearer_refusals(oauth, service_account, _service_account_private_key):
    now = int(time.time())
    impostor = make_service_account_key(oauth, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    impostor.info.update(client_email=service_account.client_email,
                         private_key_id=service_account.info["private_key_id"])
    cases = {
        "tampered": tampered(service_account.assertion()),
        "other key": impostor.assertion(),
        "other audience": service_account.assertion(aud="https://oauth2.googleapis.com/token"),
        "expired": service_account.assertion(issued_at=now - 7200),
        "too long": service_account.assertion(lifetime=7200),
        "no exp": service_account.assertion(exp=None),
        "unknown account": make_service_account_key(oauth, _service_account_private_key, "nobody").assertion(),
        "not delegated": service_account.assertion(scope="https://www.googleapis.com/auth/gmail.readonly"),
    }
    answers = {case: oauth.token(grant_type=JWT_BEARER, assertion=assertion) for case, assertion in cases.items()}
    errors = {case: (status, answer["error"]) for case, (status, answer) in answers.items()}
    assert errors == {**{case: (400, "invalid_grant") for case in cases}, "not delegated": (400, "unauthorized_client")}
    assert answers["tampered"][1]["error_description"] == "Invalid JWT Signature."
    oauth.add_service_account(service_account, subjects=["ana@example.com"])
    assert oauth.token(grant_type=JWT_BEARER, assertion=service_account.assertion("bia@example.com"))[1]["error"] \
        == "invalid_grant"
