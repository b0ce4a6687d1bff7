"""“Connect with the provider” against the real OAuth test server: the authorization request (PKCE S256, offline
access, the one callback URL), the callback storing the refresh token encrypted, and everything that must store
nothing: a wrong, replayed, expired or foreign state, the user refusing, the token endpoint refusing the code or
the client, an answer without a refresh token, a non-admin, a missing CSRF token."""
import logging
import re
import urllib.parse

import pytest

from tests.support.dialog import dialog_of, text_of
from tests.support.oauth import smtp_server_for, vault_form
from tests.support.outbox import account_for, drain
from tests.test_oauth_accounts import TEST_FORM, assert_nowhere, save_credential
from tests.test_outbox_delivery import notify, reload
from webapp.credentials import provider
from webapp.mail.authorization import MICROSOFT_HOSTS
from webapp.mail.oauth import CLIENT_CREDENTIALS, REFRESH_TOKEN
from webapp.models import AuditEntry, Credential

CALLBACK = "http://localhost/credentials/oauth/callback"  # the test client's host


@pytest.fixture
def loopback(app):
    app.config["OAUTH_ALLOW_LOOPBACK"] = True


@pytest.fixture
def unconnected(admin, oauth, loopback) -> Credential:
    """A refresh-token credential for the test server's web client, saved without a refresh token."""
    return saved(admin, vault_form(REFRESH_TOKEN, oauth, refresh_token=""))


def saved(admin, form) -> Credential:
    """The credential saved through the vault's form, its "added" message read."""
    credential = save_credential(admin, form)
    admin.get("/credentials/")
    return credential


def query_of(url: str) -> dict:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def start(client, credential) -> str:
    """Press “Connect with the provider”: the provider's URL the browser is sent to."""
    response = client.post(f"/credentials/{credential.id}/connect")
    assert response.status_code == 303, text_of(response)
    return response.headers["Location"]


def come_back(client, callback: str):
    """The browser arriving at the callback URL: the page it ends on."""
    parts = urllib.parse.urlsplit(callback)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CALLBACK
    return client.get(f"{parts.path}?{parts.query}", follow_redirects=True)


def flashes(response) -> list[str]:
    return re.findall(r'<p class="flash flash-(\w+)">(.*?)</p>', text_of(response), re.S)


def refresh_token_of(credential) -> str | None:
    return Credential.get_by_id(credential.id).reveal_secret("refresh_token_encrypted")


def grants_asked(oauth) -> list[tuple]:
    return [(asked["grant_type"], asked.get("status"), asked.get("error")) for asked in oauth.token_requests()]


def test_connect_stores_the_refresh_token_and_the_account_sends_with_it(app, admin, oauth, smtp_server, unconnected,
                                                                        caplog):
    caplog.set_level(logging.DEBUG)
    authorize = start(admin, unconnected)
    assert authorize.startswith(oauth.authorize_url + "?")
    asked = query_of(authorize)
    assert {name: asked[name] for name in ("response_type", "client_id", "redirect_uri", "scope", "login_hint",
                                           "code_challenge_method", "access_type", "prompt")} == {
        "response_type": "code", "client_id": oauth.web_client.client_id, "redirect_uri": CALLBACK,
        "scope": unconnected.scope, "login_hint": unconnected.username, "code_challenge_method": "S256",
        "access_type": "offline", "prompt": "consent"}
    assert len(asked["state"]) >= 43 and len(asked["code_challenge"]) == 43

    callback = oauth.consent(authorize)
    page = come_back(admin, callback)
    assert page.request.path == f"/credentials/{unconnected.id}/edit"
    assert flashes(page) == [("success", "Connected: refresh token stored.")]
    token = refresh_token_of(unconnected)
    assert token and grants_asked(oauth) == [("authorization_code", 200, None)]
    audited = AuditEntry.get(AuditEntry.action == "connect")
    assert (audited.object_name, audited.actor_name, audited.changes) == (
        unconnected.name, "alice", {"refresh_token_encrypted": "changed"})

    server = smtp_server_for(smtp_server, oauth, REFRESH_TOKEN)
    account = account_for(server, use_auth=True, credential=unconnected)
    dialog = dialog_of(text_of(admin.htmx("post", f"/accounts/{account.id}/test", data=TEST_FORM)))
    assert "The server accepted the message" in dialog
    assert [mailbox for _, mailbox in server.handler.logins] == [unconnected.username]
    code = query_of(callback)["code"]
    assert_nowhere([token, code], app, admin, caplog, text_of(page), urls=(f"/credentials/{unconnected.id}/edit",))


def test_the_form_shows_the_redirect_uri_and_the_list_offers_to_connect(admin, oauth, unconnected):
    page = text_of(admin.get(f"/credentials/{unconnected.id}/edit"))
    assert f'<input id="redirect-uri" type="text" value="{CALLBACK}" readonly' in page
    assert "not connected yet" in page and "Connect with the provider" in page
    assert f'action="/credentials/{unconnected.id}/connect"' in text_of(admin.get("/credentials/"))

    come_back(admin, oauth.consent(start(admin, unconnected)))
    assert ">stored</span>" in text_of(admin.get(f"/credentials/{unconnected.id}/edit"))
    # Connected: the list no longer offers it; the edit page still does, to connect again.
    assert f'action="/credentials/{unconnected.id}/connect"' not in text_of(admin.get("/credentials/"))


def test_behind_a_tls_proxy_the_redirect_uri_is_the_public_https_one(tmp_path, oauth, database_config):
    from tests.support.apps import running_app
    from tests.support.factories import make_client

    with running_app(tmp_path, BEHIND_HTTPS=True, OAUTH_ALLOW_LOOPBACK=True, **database_config) as app:
        admin = make_client(app, "admin", username="alice")
        forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "desk.example.com"}
        credential = saved(admin, vault_form(REFRESH_TOKEN, oauth, refresh_token=""))
        page = text_of(admin.get(f"/credentials/{credential.id}/edit", headers=forwarded))
        assert 'value="https://desk.example.com/credentials/oauth/callback"' in page
        # Flask-WTF checks an https POST's Referer, as a browser sends it.
        referer = f"https://desk.example.com/credentials/{credential.id}/edit"
        response = admin.post(f"/credentials/{credential.id}/connect", headers={**forwarded, "Referer": referer})
        assert query_of(response.headers["Location"])["redirect_uri"] == \
            "https://desk.example.com/credentials/oauth/callback"


def form_action(response) -> str:
    policy = dict(d.strip().split(" ", 1) for d in response.headers["Content-Security-Policy"].split(";"))
    return policy["form-action"]


def test_pages_with_the_button_let_its_form_go_on_to_the_sign_in_page(app, admin, oauth, unconnected):
    # A form's redirect counts for CSP form-action: without JavaScript, the 303 goes on to the provider's origin.
    assert form_action(admin.get(f"/credentials/{unconnected.id}/edit")) == f"'self' {oauth.issuer}"
    assert form_action(admin.get("/credentials/")) == f"'self' {oauth.issuer}"
    assert form_action(admin.get("/accounts/")) == "'self'"
    app.config["OAUTH_ALLOW_LOOPBACK"] = False  # the URL is refused now: nobody is sent there
    assert form_action(admin.get(f"/credentials/{unconnected.id}/edit")) == "'self'"


def test_htmx_gets_hx_redirect_to_the_provider(admin, unconnected, oauth):
    response = admin.htmx("post", f"/credentials/{unconnected.id}/connect")
    assert response.status_code == 200 and response.headers["HX-Redirect"].startswith(oauth.authorize_url)


def test_microsoft_gets_neither_offline_parameter(admin, oauth, loopback):
    credential = saved(admin, vault_form(
        REFRESH_TOKEN, oauth, refresh_token="",
        authorization_url="https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize"))
    asked = query_of(start(admin, credential))
    assert "login.microsoftonline.com" in MICROSOFT_HOSTS
    assert "prompt" not in asked and "access_type" not in asked and asked["code_challenge_method"] == "S256"


# --- nothing stored ---------------------------------------------------------------------------------------------

def test_a_wrong_or_missing_state_stores_nothing_and_leaves_the_real_one_usable(admin, oauth, unconnected):
    callback = oauth.consent(start(admin, unconnected))
    for forged in (re.sub(r"state=[^&]+", "state=forged", callback), re.sub(r"&?state=[^&]+", "", callback)):
        page = come_back(admin, forged)
        assert page.request.path == "/credentials/"
        [(category, message)] = flashes(page)
        assert category == "error" and "matches no connection you started here" in message
    assert refresh_token_of(unconnected) is None and oauth.token_requests() == []
    assert flashes(come_back(admin, callback)) == [("success", "Connected: refresh token stored.")]


def test_a_replayed_callback_is_refused(admin, oauth, unconnected):
    callback = oauth.consent(start(admin, unconnected))
    come_back(admin, callback)
    stored = refresh_token_of(unconnected)
    [(category, message)] = flashes(come_back(admin, callback))
    assert category == "error" and "used already" in message
    assert refresh_token_of(unconnected) == stored and len(oauth.token_requests()) == 1


def test_an_expired_attempt_is_refused(admin, oauth, unconnected, monkeypatch):
    monkeypatch.setattr(provider, "ATTEMPT_SECONDS", 0)
    [(category, message)] = flashes(come_back(admin, oauth.consent(start(admin, unconnected))))
    assert category == "error" and "in the last 0 minutes" in message
    assert refresh_token_of(unconnected) is None and oauth.token_requests() == []


def test_another_admin_cannot_finish_someone_elses_attempt(app, admin, oauth, unconnected):
    from tests.support.factories import make_client

    callback = oauth.consent(start(admin, unconnected))
    other = make_client(app, "admin", username="bruna")
    assert flashes(come_back(other, callback))[0][0] == "error"
    assert refresh_token_of(unconnected) is None and oauth.token_requests() == []


def test_access_denied_is_explained(admin, oauth, unconnected):
    oauth.configure(authorize_error="access_denied")
    page = come_back(admin, oauth.consent(start(admin, unconnected)))
    assert page.request.path == f"/credentials/{unconnected.id}/edit"
    [(category, message)] = flashes(page)
    assert category == "error" and "says access was not allowed (access_denied: scripted by the test)" in message
    assert f"sign in as {unconnected.username} and allow access" in message
    assert refresh_token_of(unconnected) is None and oauth.token_requests() == []


def test_a_code_the_token_endpoint_refuses_is_explained(admin, oauth, unconnected):
    callback = oauth.consent(start(admin, unconnected))
    [(category, message)] = flashes(come_back(admin, callback.replace("code=", "code=stale-")))
    assert category == "error" and "refused the authorization code (HTTP 400, invalid_grant" in message
    assert "Connect with the provider again" in message
    assert refresh_token_of(unconnected) is None and grants_asked(oauth) == [("authorization_code", 400,
                                                                               "invalid_grant")]


def test_a_wrong_client_secret_is_explained(admin, oauth, loopback):
    credential = saved(admin, vault_form(REFRESH_TOKEN, oauth, refresh_token="",
                                                   client_secret="not-the-secret-0000"))
    [(category, message)] = flashes(come_back(admin, oauth.consent(start(admin, credential))))
    assert category == "error" and "did not accept the client ID or secret (HTTP 401, invalid_client" in message
    assert "not-the-secret-0000" not in message and refresh_token_of(credential) is None


def test_the_exchange_keeps_to_the_outbound_policy(app, admin, oauth, unconnected):
    callback = oauth.consent(start(admin, unconnected))
    app.config["OUTBOUND_BLOCKED_NETWORKS"] = "127.0.0.0/8"  # the token endpoint's network, blocked meanwhile
    [(category, message)] = flashes(come_back(admin, callback))
    assert category == "error" and "127.0.0.1" in message and "blocked" in message
    assert refresh_token_of(unconnected) is None and oauth.token_requests() == []


def test_an_answer_without_a_refresh_token_says_what_to_do(admin, oauth, unconnected):
    oauth.configure(code_refresh_token=False)
    [(category, message)] = flashes(come_back(admin, oauth.consent(start(admin, unconnected))))
    assert category == "error" and "issued no refresh token, so nothing was stored" in message
    assert "Third-party apps with account access" in message and "offline_access" in message
    assert refresh_token_of(unconnected) is None and AuditEntry.select().where(
        AuditEntry.action == "connect").count() == 0


def test_only_a_refresh_token_credential_connects(admin, oauth, loopback):
    credential = saved(admin, vault_form(CLIENT_CREDENTIALS, oauth))
    response = admin.post(f"/credentials/{credential.id}/connect", follow_redirects=True)
    assert flashes(response)[0] == ("error", "Only a credential of the type “OAuth 2.0 — refresh token” connects "
                                             "with its provider.")


def test_an_authorization_url_refused_since_saving_sends_nobody_there(app, admin, unconnected):
    app.config["OAUTH_ALLOW_LOOPBACK"] = False
    response = admin.post(f"/credentials/{unconnected.id}/connect")
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/{unconnected.id}/edit")
    [(category, message)] = flashes(admin.get(response.headers["Location"]))
    assert category == "error" and "SMTPDESK_OAUTH_ALLOW_LOOPBACK" in message


def test_non_admins_are_refused(operator, auditor, admin, oauth, unconnected):
    callback = oauth.consent(start(admin, unconnected))
    for client in (operator, auditor):
        assert client.post(f"/credentials/{unconnected.id}/connect").status_code == 403
        parts = urllib.parse.urlsplit(callback)
        assert client.get(f"{parts.path}?{parts.query}").status_code == 403
    assert refresh_token_of(unconnected) is None


def test_connect_needs_the_csrf_token(admin, unconnected):
    response = admin.post(f"/credentials/{unconnected.id}/connect", csrf=False)
    assert response.status_code == 400 and "Location" not in response.headers


# --- an unconnected credential when sending ---------------------------------------------------------------------

def test_an_unconnected_credential_says_to_connect_first(app, admin, oauth, smtp_server, unconnected):
    server = smtp_server_for(smtp_server, oauth, REFRESH_TOKEN)
    account = account_for(server, use_auth=True, credential=unconnected)
    dialog = dialog_of(text_of(admin.htmx("post", f"/accounts/{account.id}/test", data=TEST_FORM)))
    assert "has no refresh token yet: it is not connected with its provider" in dialog
    assert "Connect the credential with the provider first" in dialog

    notification = notify()
    drain(oauth_allow_loopback=True)
    notification = reload(notification)
    assert (notification.status, notification.last_step) == ("failed", "policy")
    # The delivery's page says what to do, as the dialog does.
    page = text_of(admin.get(f"/deliveries/{notification.id}"))
    assert "not connected with its provider" in page
    assert "<dt>What to do</dt><dd>Connect the credential with the provider first" in page
    assert server.connections == 0 and oauth.token_requests() == []


def test_settings_changed_after_the_start_store_nothing(admin, oauth, unconnected):
    callback = oauth.consent(start(admin, unconnected))
    Credential.update(client_id="another-client").where(Credential.id == unconnected.id).execute()
    [(category, message)] = flashes(come_back(admin, callback))
    assert category == "error" and "settings changed after the connection started" in message
    assert refresh_token_of(unconnected) is None and oauth.token_requests() == []


def test_an_edit_made_while_the_provider_answers_is_kept(admin, oauth, unconnected, monkeypatch):
    exchange = provider.refresh_token

    def exchange_while_someone_edits(credential, attempt, code):
        token = exchange(credential, attempt, code)
        Credential.update(description="narrowed meanwhile", allowed_hosts="smtp.example.com").where(
            Credential.id == credential.id).execute()
        return token

    monkeypatch.setattr(provider, "refresh_token", exchange_while_someone_edits)
    assert flashes(come_back(admin, oauth.consent(start(admin, unconnected))))[0][0] == "success"
    stored = Credential.get_by_id(unconnected.id)
    assert (stored.description, stored.allowed_hosts) == ("narrowed meanwhile", "smtp.example.com")
    assert stored.reveal_secret("refresh_token_encrypted")


@pytest.mark.parametrize("preset", ["state=mine", "redirect_uri=https%3A%2F%2Fevil.example%2F",
                                    "code_challenge_method=plain"])
def test_an_authorization_url_may_not_set_the_requests_own_parameters(admin, oauth, loopback, preset):
    form = vault_form(REFRESH_TOKEN, oauth, refresh_token="", authorization_url=f"{oauth.authorize_url}?{preset}")
    response = admin.post("/credentials/new", data=form)
    assert response.status_code == 422
    assert "smtpdesk adds these itself" in text_of(response)
    assert Credential.select().count() == 0
