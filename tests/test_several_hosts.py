"""Several hosts on one PostgreSQL database (README, "Scaling out"): two served apps, each gunicorn with an instance
folder of its own and the shared keys in files. Whichever host a request reaches, sign-in lock-outs, ended sessions,
API tokens, settings and access tokens are those of the database, never of one process's memory."""
import html
import re

import pytest
import requests
from cryptography.fernet import Fernet

from tests.support.apps import running_app
from tests.support.dialog import dialog_of, facts_of
from tests.support.factories import PASSWORD, make_account, make_credential, make_user
from tests.support.hosts import Browser, Host, host_env, launch, signed_in, stop_all, with_cookie
from tests.support.oauth import make_oauth_credential, smtp_server_for, vault_form
from tests.support.outbox import account_for
from tests.support.processes import SMTPDESK, stop, wait_for
from webapp.mail.oauth import CLIENT_CREDENTIALS
from webapp.models import ApiToken, Notification

NEW_PASSWORD = "a-new-password-for-bob"


# PostgreSQL whatever --engine says: hosts share a database server. The hosts start once for the module, on a
# database of its own, and each test makes users and accounts of its own there.

@pytest.fixture(scope="module")
def shared_database(postgres_cluster, postgres_template):
    url = postgres_cluster.create_database(postgres_template)
    yield url
    postgres_cluster.drop_database(url)


@pytest.fixture(scope="module")
def vault_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture(scope="module")
def hosts(shared_database, vault_key, tmp_path_factory):
    """Two hosts serving the app on the module's database, the second's token URLs allowed on loopback (the tests'
    OAuth server) as the first's."""
    folder = tmp_path_factory.mktemp("hosts")
    started = Host.start_all({name: (folder / name, host_env(folder / name, shared_database, vault_key,
                                                             OAUTH_ALLOW_LOOPBACK=1))
                              for name in ("a", "b")})
    yield started
    stop_all(started)
    for host in started:
        assert "Traceback" not in host.log.read_text(errors="replace"), host.log.read_text(errors="replace")


@pytest.fixture
def app(tmp_path, shared_database, vault_key, hosts):
    """This test process on the hosts' database, with their vault key: where the tests make their data."""
    with running_app(tmp_path, DATABASE_URL=shared_database, VAULT_KEYS=vault_key) as app:
        yield app


def api(host: Host, method: str, path: str, token: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{host.url}/api/v1{path}", headers={"Authorization": f"Bearer {token}"},
                            timeout=60, **kwargs)


def notify(host: Host, token: str, **fields) -> requests.Response:
    return api(host, "POST", "/notifications", token,
               json={"to": "ana@example.org", "subject": "Disk", "text": "91%", **fields})


def test_sign_in_failures_spread_over_both_hosts_lock_the_user_out_on_both(app, hosts):
    a, b = hosts
    make_user("operator", username="rita")
    make_user("operator", username="sam")
    browser = Browser()
    # Five failures, the limit, and neither host saw five itself.
    for host in (a, b, a, b, a):
        failed = browser.sign_in(host, "rita", "not her password")
        assert failed.status_code == 422 and "Wrong username or password." in failed.text

    for host in (a, b):
        refused = Browser().sign_in(host, "rita", PASSWORD)  # the right password changes nothing now
        assert refused.status_code == 429 and "Too many failed sign-in attempts." in refused.text
    assert Browser().sign_in(b, "sam", PASSWORD).status_code == 302  # the lock is rita's only


def test_signing_out_on_one_host_ends_the_session_on_the_other(app, hosts):
    a, b = hosts
    make_user("auditor", username="ada")
    browser = Browser()
    assert browser.sign_in(a, "ada", PASSWORD).status_code == 302
    cookie = browser.session_cookie
    assert signed_in(with_cookie(b, "/accounts/", cookie))

    browser.get(a, "/accounts/")
    assert browser.post(a, "/auth/logout").status_code == 302

    assert not signed_in(with_cookie(b, "/accounts/", cookie))  # the same cookie, copied before
    assert not signed_in(with_cookie(a, "/accounts/", cookie))


def test_a_password_changed_on_one_host_ends_the_sessions_on_the_other(app, hosts):
    a, b = hosts
    make_user("admin", username="paula")
    bob = make_user("operator", username="bob")
    admin, browser = Browser(), Browser()
    assert admin.sign_in(a, "paula", PASSWORD).status_code == 302
    assert browser.sign_in(b, "bob", PASSWORD).status_code == 302
    cookie = browser.session_cookie
    assert signed_in(with_cookie(a, "/accounts/", cookie))

    admin.get(a, f"/users/{bob.id}/edit")
    changed = admin.post(a, f"/users/{bob.id}/edit", {"role": "operator", "active": "yes",
                                                      "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert changed.status_code == 303, changed.text

    assert not signed_in(with_cookie(b, "/accounts/", cookie))
    assert not signed_in(with_cookie(a, "/accounts/", cookie))
    assert Browser().sign_in(b, "bob", PASSWORD).status_code == 422
    assert Browser().sign_in(b, "bob", NEW_PASSWORD).status_code == 302


def test_an_api_token_revoked_on_one_host_is_refused_by_the_other(app, hosts):
    a, b = hosts
    make_user("admin", username="tara")
    make_account().make_default()
    admin = Browser()
    admin.sign_in(a, "tara", PASSWORD)
    admin.get(a, "/tokens/new")
    page = admin.post(a, "/tokens/new", {"name": "revoked on a"}).text
    token = html.unescape(re.search(r'id="new-token" type="text" value="([^"]+)"', page).group(1))
    queued = notify(b, token)
    assert queued.status_code == 202
    assert api(a, "GET", f"/notifications/{queued.json()['id']}", token).status_code == 200

    row = ApiToken.get(ApiToken.name == "revoked on a")
    admin.get(a, "/tokens/")
    assert admin.post(a, f"/tokens/{row.id}/revoke").status_code == 303

    for host in (b, a):
        refused = api(host, "GET", f"/notifications/{queued.json()['id']}", token)
        assert refused.status_code == 401 and refused.json()["message"] == \
            "This API token is unknown or was revoked."
    before = Notification.select().count()
    assert notify(b, token).status_code == 401 and Notification.select().count() == before


def test_a_change_made_on_one_host_shows_at_once_on_the_other(app, hosts):
    a, b = hosts
    make_user("admin", username="dora")
    first, second = make_account(name="first"), make_account(name="second")
    first.make_default()
    _row, token = ApiToken.issue("monitoring", created_by=make_user("admin"))
    admin = Browser()
    admin.sign_in(a, "dora", PASSWORD)
    assert notify(b, token).json()["account"]["name"] == "first"
    admin.get(b, "/settings/")  # b has read the footer (nothing yet) and the accounts before the changes

    admin.get(a, "/accounts/")
    assert admin.post(a, f"/accounts/{second.id}/make-default").status_code == 303
    assert admin.post(a, "/settings/", {"footer_text": "Sent by the operations desk"}).status_code == 303

    assert notify(b, token).json()["account"]["name"] == "second"
    accounts = admin.get(b, "/accounts/").text
    assert re.search(rf'id="why-default-{second.id}" class="why">This is the default account.', accounts)
    assert f'id="why-default-{first.id}"' not in accounts
    assert "Sent by the operations desk" in admin.get(b, "/settings/").text


def test_an_access_token_is_not_reused_once_another_host_changed_its_credential(app, hosts, oauth, smtp_server):
    """Each process caches OAuth access tokens, keyed by every setting of the credential they were obtained for."""
    a, b = hosts
    make_user("admin", username="olga")
    credential = make_oauth_credential(CLIENT_CREDENTIALS, oauth)
    account = account_for(smtp_server_for(smtp_server, oauth, CLIENT_CREDENTIALS), use_auth=True,
                          credential=credential, is_default=False)
    admin = Browser()
    admin.sign_in(a, "olga", PASSWORD)

    def tested_on(host: Host) -> str:
        """The test dialog after sending from the account's row on that host."""
        admin.get(host, f"/accounts/{account.id}/test", headers={"HX-Request": "true"})
        return dialog_of(admin.post(host, f"/accounts/{account.id}/test", {
            "to": "rita@example.org", "subject": "Check", "body": "Hello"}, headers={"HX-Request": "true"}).text)

    assert facts_of(tested_on(a))["Access token"].startswith("obtained")
    assert facts_of(tested_on(a))["Access token"].startswith("reused")
    admin.get(b, f"/credentials/{credential.id}/edit")
    edited = admin.post(b, f"/credentials/{credential.id}/edit",
                        vault_form(CLIENT_CREDENTIALS, oauth, name=credential.name, client_secret="changed-on-b-0001"))
    assert edited.status_code == 303, edited.text

    refused = tested_on(a)  # a's cached token was obtained with the old secret: the endpoint is asked again
    assert "did not accept the client ID or secret (HTTP 401, invalid_client" in refused
    assert "Access token" not in facts_of(refused)
    assert [request.get("error") for request in oauth.token_requests()] == [None, "invalid_client"]


def test_a_worker_does_not_keep_a_connection_whose_login_another_host_changed(app, hosts, smtp_server, tmp_path):
    """A worker keeps its SMTP connection to an account's relay between batches only while the account's settings,
    as the database has them now, are those it was opened with."""
    a, b = hosts
    server = smtp_server(users={"first-login": "first-pass-0001", "second-login": "second-pass-0002"})
    credential = make_credential(username="first-login", secret="first-pass-0001")
    account = make_account(host=server.host, port=server.port, use_auth=True, credential=credential)
    _row, token = ApiToken.issue("worker test", created_by=make_user("admin"))
    make_user("admin", username="wanda")
    admin = Browser()
    admin.sign_in(b, "wanda", PASSWORD)
    env = host_env(tmp_path / "a", app.config["DATABASE_URL"], app.config["VAULT_KEYS"], OUTBOX_POLL_SECONDS=0.1)
    worker = launch([str(SMTPDESK), "worker"], env, tmp_path / "worker.log")
    try:
        first = notify(b, token, account=account.name).json()["id"]
        wait_for(lambda: Notification.get_by_id(first).status == "sent", 60, "the first delivery")
        admin.get(b, f"/credentials/{credential.id}/edit")
        edited = admin.post(b, f"/credentials/{credential.id}/edit", {
            "name": credential.name, "kind": "password", "username": "second-login", "secret": "second-pass-0002",
            "description": "", "allowed_hosts": ""})
        assert edited.status_code == 303, edited.text
        second = notify(a, token, account=account.name).json()["id"]
        wait_for(lambda: Notification.get_by_id(second).status == "sent", 60, "the second delivery")
    finally:
        stop(worker, timeout=30)
    assert [login for _mechanism, login in server.handler.logins] == ["first-login", "second-login"]
    assert "Traceback" not in (tmp_path / "worker.log").read_text(errors="replace")
