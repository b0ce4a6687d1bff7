"""The token endpoint's failures, each explained at the TOKEN step before any AUTH, against the real OAuth test server,
a canned HTTP(S) server for answers no provider gives on purpose, and the outbound policy and connectors that apply
to the token URL as to the mail server."""
import dataclasses
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fixtures.oauth import GMAIL_SCOPE, M365_SCOPE, USER_MAILBOX, make_service_account_key
from tests.support.mail import everything_shown
from tests.support.net import free_port
from tests.support.oauth import app_grant, key_of, send_with, service_grant, token_for, user_grant
from webapp.mail import MailError, OAuthGrant, Step

JSON = {"Content-Type": "application/json"}


def refusal_of(grant, **options) -> MailError:
    """The MailError obtain_token raises for the grant."""
    with pytest.raises(MailError) as refused:
        token_for(grant, **options)
    return refused.value


def said(error: MailError) -> tuple[str, str]:
    return error.message % error.params, error.hint % error.params


def assert_token_step(result, server, transient=False) -> MailError:
    """Failed at the TOKEN step, and the mail server heard nothing of a login."""
    error = result.error
    assert error.step is Step.TOKEN and error.transient is transient and result.code is None
    assert result.opening and "AUTH" not in server.commands and server.received == []
    return error


# --- the endpoint's refusals (RFC 6749 §5.2) -------------------------------------------------------------------

def test_a_wrong_client_secret_is_invalid_client(oauth, smtp_server):
    server = smtp_server(oauth=oauth)
    result = send_with(server, app_grant(oauth, client_secret="not-the-secret-0000"))
    message, hint = said(assert_token_step(result, server))
    assert message == ("The token endpoint 127.0.0.1 did not accept the client ID or secret "
                       "(HTTP 401, invalid_client: client authentication failed).")
    assert "Certificates & secrets" in hint and "not-the-secret-0000" not in everything_shown(result)


def test_a_revoked_refresh_token_is_invalid_grant_and_asks_to_connect_again(oauth, smtp_server):
    server = smtp_server(oauth=oauth)
    refresh_token = oauth.refresh_token()
    oauth.revoke(refresh_token)
    result = send_with(server, user_grant(oauth, refresh_token))
    message, hint = said(assert_token_step(result, server))
    assert message.startswith("The token endpoint 127.0.0.1 refused the refresh token: it was revoked or has expired")
    assert hint.startswith("Connect the credential with the provider again")
    assert refresh_token not in everything_shown(result)


def test_a_service_account_not_allowed_that_user_is_invalid_grant(oauth, smtp_server, service_account):
    oauth.add_service_account(service_account, subjects=["someone-else@example.com"])
    server = smtp_server(oauth=oauth)
    message, hint = said(assert_token_step(send_with(server, service_grant(service_account)), server))
    assert "refused the service account's signed request to act as ana@example.com" in message
    assert "Invalid email or User ID" in message and "Service accounts → Keys" in hint


def test_an_assertion_signed_with_an_unknown_key_is_invalid_grant(oauth, service_account):
    stranger = make_service_account_key(oauth, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    info = {**stranger.info, "client_email": service_account.client_email}  # a key the server never trusted
    error = refusal_of(OAuthGrant.for_service_account(key_of(info), mailbox=USER_MAILBOX, scope=GMAIL_SCOPE))
    assert error.step is Step.TOKEN and "Invalid JWT Signature." in error.params["reason"]


def test_a_scope_not_delegated_to_the_service_account_is_unauthorized_client(oauth, service_account):
    oauth.add_service_account(service_account, scopes=["https://www.googleapis.com/auth/gmail.send"])
    message, hint = said(refusal_of(service_grant(service_account)))
    assert "does not let the service account act for users with the scope https://mail.google.com/" in message
    assert "Manage domain-wide delegation" in hint and "scope https://mail.google.com/." in hint


def test_a_client_not_allowed_the_grant_is_unauthorized_client(oauth):
    web = oauth.web_client  # registered for the authorization code grant only
    message, hint = said(refusal_of(app_grant(oauth, client_id=web.client_id, client_secret=web.client_secret)))
    assert message.startswith("The token endpoint 127.0.0.1 does not let this client use the client_credentials "
                              "grant (HTTP 400, unauthorized_client")
    assert "app registration" in hint


def test_a_scope_the_client_may_not_have_is_invalid_scope(oauth):
    message, hint = said(refusal_of(app_grant(oauth, scope=GMAIL_SCOPE)))
    assert message.startswith("The token endpoint 127.0.0.1 refused the scope https://mail.google.com/ (HTTP 400, "
                              "invalid_scope")
    assert M365_SCOPE in hint


def test_a_503_is_transient(oauth, smtp_server):
    oauth.configure(token_failure={"status": 503, "error": "temporarily_unavailable"})
    server = smtp_server(oauth=oauth)
    message, hint = said(assert_token_step(send_with(server, app_grant(oauth)), server, transient=True))
    assert message == ("The token endpoint 127.0.0.1 cannot issue an access token right now "
                       "(HTTP 503, temporarily_unavailable: scripted failure).")


def test_an_unusable_service_account_key_is_refused_before_any_request(oauth, service_account):
    # A key smtpdesk would not store (parse_service_account_key refuses it): the transport checks it again.
    broken = "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n"
    key = dataclasses.replace(key_of(service_account.info), private_key=broken)
    error = refusal_of(OAuthGrant.for_service_account(key, mailbox=USER_MAILBOX, scope=GMAIL_SCOPE))
    assert error.step is Step.TOKEN and "cannot be used to sign" in error.message and oauth.token_requests() == []


# --- answers that are no token --------------------------------------------------------------------------------

@pytest.mark.parametrize("status, body, headers, message, transient", [
    (200, b"<html>Sign in</html>", {"Content-Type": "text/html"},
     "answered without an access token (HTTP 200, not JSON)", False),
    (200, b'{"token_type": "Bearer"}', JSON, "answered without an access token (HTTP 200, no access token in it)",
     False),
    (200, b'{"access_token": "a b", "token_type": "Bearer"}', JSON, "answered without an access token", False),
    (200, b'{"access_token": "abc", "token_type": "MAC"}', JSON, "answered without an access token", False),
    (302, b"", {"Location": "https://login.example.com/"}, "answered without an access token (HTTP 302, a redirect)",
     False),
    (502, b"<html>Bad gateway</html>", {"Content-Type": "text/html"},
     "cannot issue an access token right now (HTTP 502)", True),
    (200, b"{" + b" " * (100 * 1024) + b"}", JSON, "sent an oversized answer (more than 64 KiB)", False),
])
def test_answers_without_a_token(canned_http, oauth, status, body, headers, message, transient):
    endpoint = canned_http(status, body, headers)
    error = refusal_of(app_grant(oauth, token_url=endpoint.url))
    assert error.step is Step.TOKEN and error.transient is transient and message in error.message % error.params
    assert len(endpoint.requests) == 1  # a redirect is not followed: it would carry the secret elsewhere


def test_a_secret_the_endpoint_echoes_is_masked(canned_http, oauth):
    grant = app_grant(oauth)
    answer = {"error": "invalid_client", "error_description": f"secret {grant.client_secret} is wrong"}
    error = refusal_of(app_grant(oauth, token_url=canned_http(401, json.dumps(answer).encode(), JSON).url))
    assert error.params["reason"] == "HTTP 401, invalid_client: secret ******** is wrong"


def test_the_client_secret_goes_form_encoded_in_the_body(canned_http, oauth):
    endpoint = canned_http(200, b'{"access_token": "abc", "token_type": "Bearer", "expires_in": 60}', JSON)
    token_for(app_grant(oauth, token_url=endpoint.url, client_secret="p+s%w&rd"))
    method, path, headers, body = endpoint.requests[0]
    assert "Authorization" not in headers and b"client_secret=p%2Bs%25w%26rd" in body


# --- reaching the endpoint ------------------------------------------------------------------------------------

def test_an_endpoint_nobody_listens_at_is_unreachable(oauth, smtp_server):
    server = smtp_server(oauth=oauth)
    port = free_port()
    result = send_with(server, app_grant(oauth, token_url=f"http://127.0.0.1:{port}/token"))
    message, _ = said(assert_token_step(result, server, transient=True))
    assert message == f"The token endpoint 127.0.0.1 port {port} could not be reached (Connection refused)."


def test_a_silent_endpoint_times_out_within_the_deadline(oauth, smtp_server, silent_server):
    server = smtp_server(oauth=oauth)
    host, port = silent_server
    started = time.monotonic()
    result = send_with(server, app_grant(oauth, token_url=f"http://{host}:{port}/token"), timeout=1.0, deadline=3.0)
    assert time.monotonic() - started < 2.5
    message, _ = said(assert_token_step(result, server, transient=True))
    assert message == "The token endpoint 127.0.0.1 did not answer within 1 seconds."


def test_the_deadline_bounds_the_token_request_too(oauth, smtp_server, silent_server):
    server = smtp_server(oauth=oauth)
    host, port = silent_server
    started = time.monotonic()
    result = send_with(server, app_grant(oauth, token_url=f"http://{host}:{port}/token"), timeout=5.0, deadline=1.0)
    assert time.monotonic() - started < 2.0 and result.error.step is Step.TOKEN and result.error.transient


def test_the_token_url_goes_through_the_accounts_connector(oauth, socks5_proxy, proxy_down):
    assert token_for(app_grant(oauth), hop=socks5_proxy.hop()).value
    error = refusal_of(app_grant(oauth, cache_key="another"), hop=proxy_down.hop())
    assert error.step is Step.PROXY and oauth.token_requests()[1:] == []  # never directly instead


# --- the token URL and the outbound policy --------------------------------------------------------------------

@pytest.mark.parametrize("url, allow_loopback, words", [
    ("http://127.0.0.1:{port}/token", False, "does not use https"),
    ("http://oauth.example.com/token", True, "does not use https"),
    ("ftp://127.0.0.1:{port}/token", True, "does not use https"),
    ("https://user:pass@login.example.com/token", True, "is not a valid address"),
    ("https:///token", True, "is not a valid address"),
    ("https://login.example.com/to ken", True, "is not a valid address"),
])
def test_token_urls_must_be_https_except_allowed_loopback(oauth, url, allow_loopback, words):
    port = oauth.token_url.rsplit(":", 1)[1].split("/")[0]
    error = refusal_of(app_grant(oauth, token_url=url.format(port=port)), allow_loopback=allow_loopback)
    assert error.step is Step.POLICY and not error.transient and words in error.message % error.params
    assert oauth.token_requests() == []


def test_a_token_url_in_a_blocked_network_is_refused_before_connecting(oauth, smtp_server):
    server = smtp_server(oauth=oauth, host="127.0.0.2")  # the mail server outside the blocked network
    result = send_with(server, app_grant(oauth), blocked_networks=("127.0.0.1/32",))
    error = result.error
    assert error.step is Step.POLICY and "blocked network 127.0.0.1/32" in error.message % error.params
    assert oauth.token_requests() == [] and "AUTH" not in server.commands


# --- TLS to the endpoint: always verified ---------------------------------------------------------------------

def test_an_https_endpoint_with_the_accounts_ca_gives_a_token(oauth, smtp_server, canned_http, certificates):
    answer = {"access_token": oauth.access_token(), "token_type": "Bearer", "expires_in": 3600}
    endpoint = canned_http(200, json.dumps(answer).encode(), JSON, cert="ca_signed")
    server = smtp_server(oauth=oauth)
    result = send_with(server, user_grant(oauth, token_url=endpoint.url), ca_pem=certificates.ca_pem,
                       oauth_allow_loopback=False)
    assert result.ok, result.error
    assert server.handler.logins == [("OAUTHBEARER", USER_MAILBOX)]


@pytest.mark.parametrize("cert, ca, reason", [
    ("self_signed", True, "the certificate is self-signed"),
    ("wrong_host", True, "the certificate was issued for another host name"),
    ("expired", True, "the certificate has expired"),
    ("ca_signed", False, "the certificate was issued by an unknown certificate authority"),
])
def test_a_certificate_the_endpoint_should_not_have_is_refused(oauth, smtp_server, canned_http, certificates,
                                                               cert, ca, reason):
    endpoint = canned_http(200, b"{}", JSON, cert=cert)
    server = smtp_server(oauth=oauth)
    # Ignoring the mail server's certificate errors never extends to the token endpoint.
    result = send_with(server, app_grant(oauth, token_url=endpoint.url), verify_tls=False,
                       ca_pem=certificates.ca_pem if ca else None)
    message, _ = said(assert_token_step(result, server))
    assert message == f"The certificate of the token endpoint 127.0.0.1 was not accepted: {reason}."
    assert endpoint.requests == []


def test_tls_to_a_plain_http_endpoint_fails_as_a_handshake(oauth):
    port = oauth.token_url.rsplit(":", 1)[1].split("/")[0]
    error = refusal_of(app_grant(oauth, token_url=f"https://127.0.0.1:{port}/token"))
    assert error.step is Step.TOKEN and "The TLS handshake with the token endpoint 127.0.0.1" in error.message % \
        error.params
