"""Sending with OAuth 2.0 access tokens, end to end against the real OAuth test server and aiosmtpd taking XOAUTH2
and OAUTHBEARER: each grant, the process's token cache, the servers' refusals explained, and no token or secret
shown anywhere (SECURITY.md items 1, 5 and 8 for tokens)."""
import base64
import dataclasses
import json
import logging
import threading

import pytest

from tests.fixtures.oauth import APP_MAILBOX, M365_SCOPE, USER_MAILBOX
from tests.fixtures.smtp_oauth import M365_SMTP_AUTH_DISABLED
from tests.support.mail import everything_shown
from tests.support.oauth import (
    GRANT_TYPES,
    KINDS,
    app_grant,
    grant_of,
    send_with,
    smtp_server_for,
    token_for,
    user_grant,
)
from webapp.mail import Step, access_tokens
from webapp.mail.access_tokens import TOKENS, bearer_response
from webapp.mail.oauth import CLIENT_CREDENTIALS, OAuthGrant


@pytest.fixture
def clock(monkeypatch):
    """The token cache's clock, moved by hand: expiry without sleeping."""
    now = [1000.0]
    monkeypatch.setattr(TOKENS, "clock", lambda: now[0])
    return now


def grant_types(oauth) -> list[str]:
    return [request["grant_type"] for request in oauth.token_requests()]


# --- each grant, each mechanism --------------------------------------------------------------------------------

@pytest.mark.parametrize("mechanism", ["OAUTHBEARER", "XOAUTH2"])
@pytest.mark.parametrize("kind", KINDS)
def test_each_grant_sends_with_each_mechanism(oauth, smtp_server, service_account, kind, mechanism):
    other = {"OAUTHBEARER": "XOAUTH2", "XOAUTH2": "OAUTHBEARER"}[mechanism]
    server = smtp_server_for(smtp_server, oauth, kind, auth_exclude=(other,))
    grant = grant_of(kind, oauth, service_account)

    result = send_with(server, grant)

    assert result.ok, result.error
    assert server.handler.logins == [(mechanism, grant.mailbox)]
    assert len(server.received) == 1 and server.received[0].rcpt_tos == ["to@example.net"]
    assert grant_types(oauth) == [GRANT_TYPES[kind]]
    assert result.token["cached"] is False and 3590 < result.token["expires_in"] <= 3600
    assert "*: access token obtained from 127.0.0.1 (expires in 59 min)" in result.transcript \
        or "*: access token obtained from 127.0.0.1 (expires in 60 min)" in result.transcript


def test_oauthbearer_is_preferred_where_both_are_offered(oauth, smtp_server):
    # Gmail offers both; RFC 7628's mechanism is the standard one. Microsoft 365 offers XOAUTH2 alone (above).
    server = smtp_server(oauth=oauth)
    assert send_with(server, user_grant(oauth)).ok
    assert server.handler.logins == [("OAUTHBEARER", USER_MAILBOX)]


def test_a_token_goes_after_an_empty_challenge_when_the_auth_line_would_be_too_long(oauth, smtp_server):
    # RFC 4954 §4: AUTH with a JWT as initial response would pass SMTP's 512-octet command line.
    server = smtp_server(oauth=oauth)
    result = send_with(server, user_grant(oauth))
    start = result.transcript.index("C: AUTH OAUTHBEARER")
    assert result.transcript[start:start + 4] == ["C: AUTH OAUTHBEARER", "S: 334", "C: ********",
                                                  "S: 235 2.7.0 Authentication successful"]


def test_after_starttls_with_the_accounts_ca(oauth, smtp_server, certificates):
    server = smtp_server_for(smtp_server, oauth, CLIENT_CREDENTIALS, mode="starttls")
    result = send_with(server, app_grant(oauth), ca_pem=certificates.ca_pem)
    assert result.ok and result.tls == "verified" and server.handler.logins == [("OAUTHBEARER", APP_MAILBOX)]


def test_a_server_without_oauth_is_refused_before_any_token_is_asked_for(oauth, smtp_server):
    server = smtp_server(users={"someone": "secret"})
    result = send_with(server, user_grant(oauth))
    assert result.error.step is Step.AUTH and not result.error.transient
    assert "does not offer OAuth 2.0" in result.error.message % result.error.params
    assert oauth.token_requests() == [] and "AUTH" not in server.commands


# --- the token cache -------------------------------------------------------------------------------------------

def test_a_token_is_reused_then_renewed_shortly_before_it_expires(oauth, smtp_server, clock):
    server = smtp_server(oauth=oauth)
    grant = user_grant(oauth)
    first = send_with(server, grant)
    second = send_with(server, grant)
    assert first.ok and second.ok and grant_types(oauth) == ["refresh_token"]
    assert second.token["cached"] and "*: access token from the cache (expires in 60 min)" in second.transcript

    clock[0] += 3600 - 61  # a minute and a second left: still used
    assert send_with(server, grant).token["cached"]
    clock[0] += 2          # less than the 60 s margin left: renewed with the refresh token
    renewed = send_with(server, grant)
    assert renewed.ok and not renewed.token["cached"] and grant_types(oauth) == ["refresh_token", "refresh_token"]
    assert len(server.received) == 4


def test_a_short_lived_token_is_kept_for_nine_tenths_of_its_life(oauth, clock):
    oauth.configure(expires_in=30)
    grant = app_grant(oauth)
    assert token_for(grant).expires_in == 30
    clock[0] += 26.9
    assert token_for(grant).cached
    clock[0] += 0.2
    assert not token_for(grant).cached and len(oauth.token_requests()) == 2


def test_a_token_born_expired_is_used_once_and_never_kept(oauth):
    oauth.configure(expires_in=0)
    grant = app_grant(oauth)
    assert [token_for(grant).cached for _ in range(2)] == [False, False]
    assert len(oauth.token_requests()) == 2


def test_a_changed_secret_never_gets_the_token_of_the_old_one(oauth):
    token_for(app_grant(oauth))
    with pytest.raises(Exception) as refused:
        token_for(app_grant(oauth, client_secret="a-changed-secret"))
    assert refused.value.step is Step.TOKEN and "invalid_client" in refused.value.params["reason"]
    assert [request.get("error") for request in oauth.token_requests()] == [None, "invalid_client"]


def test_the_worker_lanes_share_one_token_request(oauth):
    grant, tokens = app_grant(oauth), []
    lanes = [threading.Thread(target=lambda: tokens.append(token_for(grant).value)) for _ in range(4)]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join()
    assert len(tokens) == 4 and len(set(tokens)) == 1 and len(oauth.token_requests()) == 1


def test_a_thread_about_to_take_a_grants_request_lock_keeps_it_through_a_prune(monkeypatch):
    """A token that comes without a lifetime is not kept, so its grant's request lock goes at the next prune. A
    thread that has found that lock and is just about to take it, as another grant's token prunes the cache, must
    hold the lock the next thread finds: else both ask the endpoint. (A unit edge: the moment is made by hand.)"""
    cache = access_tokens.TokenCache()
    first = OAuthGrant(kind=CLIENT_CREDENTIALS, token_url="https://login.example/token", mailbox="app@example.com",
                       client_id="app", client_secret="s3cret", cache_key="credential:1")
    other = dataclasses.replace(first, cache_key="credential:2")
    key = (first.cache_key, access_tokens.fingerprint(first))
    found_after_prune = []

    def fetch(grant):
        return access_tokens.AccessToken("token", None), None  # no lifetime: not kept

    class OvertakenLock:
        """A lock whose first taker is overtaken by the other grant's request (and its prune) just before taking it."""

        def __init__(self):
            self.inner = threading.Lock()

        def acquire(self, timeout):
            if not found_after_prune:
                found_after_prune.append(None)
                cache.obtain(other, fetch, wait=1)
                found_after_prune[0] = cache._fetching.get(key)
            return self.inner.acquire(timeout=timeout)

        def release(self):
            self.inner.release()

    fetching = access_tokens._Fetching
    monkeypatch.setattr(access_tokens, "_Fetching", lambda: fetching(lock=OvertakenLock()))

    cache.obtain(first, fetch, wait=1)

    assert found_after_prune[0] is not None
    cache.obtain(other, fetch, wait=1)  # no thread holds or waits for the first grant's lock now: the prune drops it
    assert key not in cache._fetching


def test_a_rotated_refresh_token_is_handed_back_and_used_from_then_on(oauth, clock, monkeypatch):
    oauth.configure(rotate_refresh_tokens=True)  # as Microsoft does
    stored = []
    monkeypatch.setattr(TOKENS, "on_refresh_token", lambda grant, token: stored.append((grant, token)))
    original = oauth.refresh_token()
    grant = user_grant(oauth, original)
    token_for(grant)
    assert len(stored) == 1 and stored[0][0] is grant and stored[0][1] != original
    oauth.revoke(original)  # a provider may end the old one once it has issued the new one
    clock[0] += 3600
    assert not token_for(grant).cached
    assert [request["status"] for request in oauth.token_requests()] == [200, 200] and len(stored) == 2


@pytest.mark.parametrize("failure", ["m365", "gmail"])
def test_a_cached_token_the_server_refuses_is_dropped_and_replaced_once(oauth, smtp_server, failure):
    server = smtp_server(oauth=oauth, oauth_scope=M365_SCOPE, oauth_failure=failure)
    grant = app_grant(oauth)
    oauth.configure(clients={"m365-app": {"mailbox": "former@example.com"}})
    token_for(grant)  # cached, and no good for APP_MAILBOX any more: as if revoked before it expired
    oauth.configure(clients={"m365-app": {"mailbox": APP_MAILBOX}})

    result = send_with(server, grant)

    assert result.ok, result.error
    assert server.handler.logins == [("OAUTHBEARER", APP_MAILBOX)] * 2 and len(server.received) == 1
    assert len(oauth.token_requests()) == 2 and not result.token["cached"]
    assert "*: the server refused the cached access token: asking for a new one" in result.transcript


def test_a_new_token_refused_too_is_not_tried_again(oauth, smtp_server):
    server = smtp_server(oauth=oauth, oauth_scope=M365_SCOPE, oauth_failure="m365")
    oauth.configure(clients={"m365-app": {"mailbox": "former@example.com"}})
    grant = app_grant(oauth)
    token_for(grant)

    result = send_with(server, grant)

    assert result.error.step is Step.AUTH and result.code == 535
    assert len(server.handler.logins) == 2 and len(oauth.token_requests()) == 2
    assert not token_for(grant).cached  # the refused token was not kept


def test_smtp_auth_turned_off_is_not_retried_with_a_new_token(oauth, smtp_server):
    server = smtp_server(oauth=oauth, oauth_scope=M365_SCOPE, oauth_failure=M365_SMTP_AUTH_DISABLED)
    grant = app_grant(oauth)
    token_for(grant)
    result = send_with(server, grant)
    assert result.error.step is Step.AUTH and len(server.handler.logins) == 1 and len(oauth.token_requests()) == 1


# --- the servers' refusals -------------------------------------------------------------------------------------

def test_a_temporary_refusal_is_transient_and_not_retried(oauth, smtp_server):
    server = smtp_server(oauth=oauth, oauth_failure="454 4.7.0 Temporary authentication failure")
    grant = user_grant(oauth)
    token_for(grant)
    result = send_with(server, grant)
    assert result.error.step is Step.AUTH and result.error.transient and result.code == 454
    assert len(server.handler.logins) == 1


def test_gmails_json_challenge_gets_the_empty_response_then_its_535_is_explained(oauth, smtp_server):
    server = smtp_server(oauth=oauth)
    result = send_with(server, user_grant(oauth, mailbox="bia@example.com"))  # ana's token, bia's mailbox

    error = result.error
    assert error.step is Step.AUTH and not error.transient and result.code == 535 and "5.7.8" in result.reply
    assert error.params["status"] == "401"
    assert error.message % error.params == "127.0.0.1 refused the access token for bia@example.com (status 401)."
    assert "https://mail.google.com/" in error.hint
    start = result.transcript.index("C: AUTH OAUTHBEARER")
    auth, empty, response, challenge, decoded, dummy, *final = result.transcript[start:start + 8]
    assert (empty, response, dummy) == ("S: 334", "C: ********", "C: ********") and challenge.startswith("S: 334 ey")
    assert json.loads(decoded.removeprefix("*: the server's error challenge: ")) == {
        "status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}
    assert final[-1].startswith("S: 535 5.7.8")
    assert "not bia@example.com" in server.handler.oauth_refusals[0] and server.received == []


def test_microsoft_365s_5_7_3_names_the_permissions_to_grant(oauth, smtp_server):
    server = smtp_server_for(smtp_server, oauth, CLIENT_CREDENTIALS)
    result = send_with(server, app_grant(oauth, mailbox="other@example.com"))
    error = result.error
    assert error.step is Step.AUTH and result.code == 535 and "5.7.3 Authentication unsuccessful" in result.reply
    assert "SMTP.SendAsApp" in error.hint and "Add-MailboxPermission" in error.hint and "status" not in error.message


def test_smtp_auth_disabled_for_the_tenant_says_where_to_turn_it_on(oauth, smtp_server):
    server = smtp_server(oauth=oauth, oauth_scope=M365_SCOPE, oauth_failure=M365_SMTP_AUTH_DISABLED)
    result = send_with(server, app_grant(oauth))
    error = result.error
    assert error.step is Step.AUTH and result.code == 535 and "5.7.139" in result.reply
    assert error.message % error.params == ("127.0.0.1 has SMTP AUTH turned off for the mailbox mailer@example.com "
                                            "or for the whole organization.")
    hint = error.hint % error.params
    assert "Manage email apps → Authenticated SMTP" in hint
    assert "Set-CASMailbox -Identity mailer@example.com -SmtpClientAuthenticationDisabled $false" in hint


def test_a_short_token_goes_as_the_initial_response(oauth, smtp_server, canned_http):
    endpoint = canned_http(body=json.dumps({"access_token": "short-token", "token_type": "Bearer",
                                            "expires_in": 3600}).encode(), headers={"Content-Type": "application/json"})
    server = smtp_server(oauth=oauth, auth_exclude=("OAUTHBEARER",))
    result = send_with(server, user_grant(oauth, token_url=endpoint.url))
    assert result.transcript[result.transcript.index("C: AUTH XOAUTH2 ********") + 1].startswith("S: 334 ")
    assert result.code == 535 and "invalid token" in server.handler.oauth_refusals[0]


# --- no token or secret anywhere -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_no_token_or_secret_shows_in_results_reprs_or_logs(oauth, smtp_server, service_account, kind, caplog,
                                                          monkeypatch):
    tokens = []
    real = access_tokens.token_from_answer
    monkeypatch.setattr(access_tokens, "token_from_answer",
                        lambda answer, host: tokens.append(answer["access_token"]) or real(answer, host))
    caplog.set_level(logging.DEBUG)
    grant = grant_of(kind, oauth, service_account)
    sent = send_with(smtp_server_for(smtp_server, oauth, kind), grant)
    refused = send_with(smtp_server(oauth=oauth, oauth_scope="https://example.com/other"), grant)
    assert sent.ok and refused.error.step is Step.AUTH and len(tokens) == 2  # the cached one refused, a new one too
    # A third token: the refused one was not kept.
    later = repr(token_for(grant)) + repr(smtp_server_for(smtp_server, oauth, kind).settings(oauth=grant))

    secrets = [*tokens, *grant.secrets()]
    secrets += [base64.b64encode(bearer_response("XOAUTH2", grant.mailbox, token, "", 0)).decode() for token in tokens]
    shown = "\n".join([everything_shown(sent), everything_shown(refused), repr(grant), repr(sent), repr(refused),
                       later, caplog.text])
    assert len(tokens) == 3
    for secret in secrets:
        assert secret not in shown
    assert len(grant.secrets()) == (2 if kind == "oauth_refresh" else 1)
