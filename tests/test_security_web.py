"""Web defences, every route at once: SECURITY.md items 25 (no CSRF token: 400, nothing changed), 26 (anonymous:
login or 401; operators and auditors: 403 on admin actions) and 27 (login brute force, cookies, security headers).

- Routes are read from the app's URL map, so a new screen is covered as soon as it exists. The HTTP API (/api/v1)
  is the exception by design: it authenticates with bearer tokens only, so every request without one, anonymous
  or with a signed-in session cookie, gets 401 JSON, and it needs no CSRF token (tests/test_api.py covers it).
- Sign-in lock-out per username and per client address, counted from the audit log's login_failed entries, with
  one message and one status (429) whether or not the username exists.
- The session cookie: HttpOnly, SameSite=Lax, Secure behind HTTPS (SMTPDESK_BEHIND_HTTPS, which also trusts one
  reverse proxy through ProxyFix), and sessions that expire.
- Sessions end when the password changes (users screen or `smtpdesk users set-password`) and, on the server, when
  the user signs out (item 34); signing in starts a new session with a new CSRF secret.
- Security headers on every answer of every route, and no inline script anywhere the CSP would have to allow.
"""
import json
import re
from datetime import timedelta

import pytest
from itsdangerous import TimestampSigner
from werkzeug.middleware.proxy_fix import ProxyFix

from tests.support.apps import running_app
from tests.support.factories import PASSWORD, make_account, make_connector, make_credential, make_user
from webapp import create_app
from webapp.models import (
    ApiToken,
    AuditEntry,
    Connector,
    Credential,
    Notification,
    ScheduledReport,
    Setting,
    SmtpAccount,
    User,
)
from webapp.outbox import send_notification
from webapp.web import SECURITY_HEADERS

LOCKED = "Too many failed sign-in attempts. Wait 15 minutes and try again."
NEW_PASSWORD = "a brand new passphrase"
PASSWORD_ERROR = re.compile(r'id="password-error">([^<]*)<')


@pytest.fixture
def en(client):
    return client.use_language("en")


@pytest.fixture
def alice(app):
    """An administrator, not signed in yet."""
    return make_user("admin", username="alice")


def sign_in(client, username, password=PASSWORD, address="192.0.2.1"):
    """One sign-in attempt from a client address."""
    return client.post("/auth/login", data={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def fail(client, username, times, address="192.0.2.1"):
    for _ in range(times):
        assert sign_in(client, username, "wrong password", address).status_code == 422


def password_error(response) -> str:
    return PASSWORD_ERROR.search(response.get_data(as_text=True)).group(1)


def is_signed_in(client) -> bool:
    return client.get("/accounts/").status_code == 200


def age_failures(seconds):
    """Move every recorded failure this many seconds into the past."""
    for entry in AuditEntry.select().where(AuditEntry.action == "login_failed"):
        entry.at -= timedelta(seconds=seconds)
        entry.save()


# --- SECURITY 25 and 26: every route ------------------------------------------------------------------------

PUBLIC = {"static", "auth.login", "auth.setup", "auth.language", "home"}
# Tests send mail or open a connection, change no setting: operators may run them (auditors may not).
TEST_ENDPOINTS = {"accounts.test_send", "connectors.test"}
# Retrying a failed delivery changes no setting: operators may do it (auditors may not).
OPERATOR_ACTIONS = {"deliveries.retry"}
# Token-authenticated: the session cookie counts for nothing there.
API = "api."
# For monitoring systems (tests/test_health.py, test_metrics.py): /healthz and /readyz answer anyone, with numbers
# only; /metrics is off (403) until its own token is configured.
HEALTH = {"health.healthz", "health.readyz"}
METRICS = "health.metrics"
# Admin-only GET pages (forms): operators and auditors get 403 there too.
READ_ENDPOINTS_FOR_EVERYONE = {"accounts.index", "accounts.export_csv", "accounts.print_view",
                               "credentials.index", "connectors.index"}


def _routes(app, methods):
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC or not (rule.methods & methods):
            continue
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<int:{arg}>", "1").replace(f"<{arg}>", "1")
        yield rule.endpoint, url, sorted(rule.methods & methods)


def _world():
    """One of everything, id 1, so every URL with an id finds its object."""
    owner = make_user("admin", username="owner")
    credential = make_credential()
    connector = make_connector()
    make_account(credential=credential, use_auth=True, connector=connector, use_connector=True,
                 is_default=True)
    failed = send_notification(to="ana@example.com", subject="Invoice", text="Ready.")
    Notification.update(status="failed").where(Notification.id == failed).execute()
    ApiToken.issue("integration", created_by=owner)
    ScheduledReport.create(recipients="ana@example.com", frequency="daily")


def _counts():
    return [m.select().count() for m in (User, Credential, Connector, SmtpAccount, ScheduledReport, Setting)] + [
        SmtpAccount.select().where(SmtpAccount.is_default == True).count(),  # noqa: E712
        ApiToken.select().where(ApiToken.revoked_at.is_null()).count(),
    ]


def _failed_notifications():
    return Notification.select().where(Notification.status == "failed").count()


def _refused_by_the_api(response) -> bool:
    """401 JSON asking for a bearer token: never a login redirect, never a page."""
    return (response.status_code == 401 and response.is_json
            and response.headers["WWW-Authenticate"].startswith("Bearer"))


def test_security_26_anonymous_requests_go_to_sign_in_or_get_401(app, client):
    _world()
    for endpoint, url, methods in _routes(app, {"GET", "POST"}):
        for method in methods:
            if endpoint.startswith(API):
                assert _refused_by_the_api(client.open(url, method=method)), endpoint
                assert _refused_by_the_api(client.htmx(method, url)), endpoint
                continue
            if endpoint in HEALTH:
                continue
            if endpoint == METRICS:
                assert client.open(url, method=method).status_code == 403
                assert client.htmx(method, url).status_code == 403
                continue
            plain = client.open(url, method=method)
            assert plain.status_code in (302, 400), (endpoint, method, plain.status_code)
            if plain.status_code == 302:
                assert "/auth/login" in plain.headers["Location"], endpoint
            fragment = client.htmx(method, url)
            assert fragment.status_code in (401, 400), (endpoint, method, fragment.status_code)
            if fragment.status_code == 401:
                assert "/auth/login" in fragment.headers["HX-Redirect"]
    assert client.get("/").status_code == 302


def test_security_25_state_changing_requests_without_csrf_token_are_refused(app, admin):
    _world()
    before = _counts()
    audit_before = AuditEntry.select().count()
    for endpoint, url, _methods in _routes(app, {"POST"}):
        for htmx in (False, True):
            headers = {"HX-Request": "true"} if htmx else {}
            response = admin.post(url, data={"name": "changed", "enabled": "no"}, headers=headers,
                                         csrf=False)
            if endpoint.startswith(API):
                assert _refused_by_the_api(response), endpoint
                continue
            assert response.status_code == 400, (endpoint, response.status_code)
    response = admin.post("/auth/language", data={"lang": "en"}, csrf=False)
    assert response.status_code == 400
    assert _counts() == before
    assert _failed_notifications() == 1 and Notification.select().count() == 1
    assert AuditEntry.select().count() == audit_before


@pytest.mark.parametrize("role", ["operator", "auditor"])
def test_security_26_operators_and_auditors_cannot_change_anything(app, role):
    _world()
    client = app.test_client()
    client.login(make_user(role))
    before = _counts()
    for endpoint, url, methods in _routes(app, {"GET", "POST"}):
        if endpoint == "auth.logout":
            continue
        for method in methods:
            response = client.open(url, method=method, data={"name": "x"})
            if endpoint.startswith(API):
                assert _refused_by_the_api(response), endpoint
            elif method == "POST" and endpoint in TEST_ENDPOINTS and role == "operator":
                assert response.status_code == 422, (endpoint, response.status_code)  # invalid: nothing sent
            elif method == "POST" and endpoint in OPERATOR_ACTIONS and role == "operator":
                assert response.status_code == 303, (endpoint, response.status_code)
            elif method == "POST":
                assert response.status_code == 403, (endpoint, response.status_code)
            if method == "GET" and endpoint.split(".")[0] in ("users", "tokens", "settings", "schedules"):
                assert response.status_code == 403, endpoint
    assert _counts() == before
    assert _failed_notifications() == (0 if role == "operator" else 1)


def test_unknown_pages_and_errors_explain_without_a_stack_trace(admin):
    response = admin.get("/no/such/page")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "Traceback" not in page and "<html" in page


@pytest.mark.parametrize("url", ["/auth/login", "/accounts/", "/accounts/export.csv", "/no-such-page",
                                 "/api/v1/notifications/1"])
def test_every_answer_forbids_framing_inline_script_and_sniffing(app, admin, url):
    """SECURITY.md 27: a CSP without inline script, frame-ancestors 'none', and no MIME sniffing."""
    response = admin.get(url)
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


# --- SECURITY 27: login brute force is rate limited ------------------------------------------------------------

def test_security_27_five_failures_lock_the_username_even_for_the_right_password(en, alice):
    fail(en, alice.username, 5)
    response = sign_in(en, alice.username)  # the right password, during the lock
    assert response.status_code == 429
    assert password_error(response) == LOCKED
    assert response.headers["Retry-After"] == "900"
    assert not is_signed_in(en)
    locked = AuditEntry.get(AuditEntry.action == "login_locked")
    assert (locked.object_name, locked.remote_addr) == (alice.username, "192.0.2.1")


def test_security_27_four_failures_do_not_lock(en, alice):
    fail(en, alice.username, 4)
    assert sign_in(en, alice.username).status_code == 302


def test_security_27_the_lock_reads_the_same_whether_or_not_the_user_exists(app, alice):
    answers = []
    for username in (alice.username, "nobody-here"):
        browser = app.test_client().use_language("en")
        fail(browser, username, 5, address=f"198.51.100.{len(answers) + 1}")
        answers.append(sign_in(browser, username, address=f"198.51.100.{len(answers) + 1}"))
    assert [a.status_code for a in answers] == [429, 429]
    assert password_error(answers[0]) == password_error(answers[1]) == LOCKED


def test_security_27_the_username_is_counted_whatever_its_case_or_spaces(en, alice):
    for typed in ("ALICE", " alice", "Alice ", "alice", "aLiCe"):
        sign_in(en, typed, "wrong password")
    assert sign_in(en, "alice").status_code == 429


def test_security_27_twenty_failures_lock_the_address_for_every_username(app, en, alice):
    for n in range(20):
        sign_in(en, f"guess{n}", "wrong password", address="203.0.113.9")
    response = sign_in(en, alice.username, address="203.0.113.9")
    assert response.status_code == 429 and password_error(response) == LOCKED
    elsewhere = app.test_client()
    assert sign_in(elsewhere, alice.username, address="203.0.113.10").status_code == 302


def test_security_27_the_lock_ends_when_the_window_has_passed(en, alice):
    fail(en, alice.username, 5)
    sign_in(en, alice.username)  # refused: locked attempts are not failures and do not extend the lock
    age_failures(15 * 60 + 1)
    assert sign_in(en, alice.username).status_code == 302


def test_security_27_a_locked_attempt_checks_no_password_and_counts_no_failure(en, alice, monkeypatch):
    fail(en, alice.username, 5)
    monkeypatch.setattr("webapp.auth.routes.authenticate", lambda *a: pytest.fail("password checked"))
    assert sign_in(en, alice.username, "wrong password").status_code == 429
    assert AuditEntry.select().where(AuditEntry.action == "login_failed").count() == 5


def test_security_27_a_success_does_not_reset_the_count(app, en, alice):
    fail(en, alice.username, 4, address="192.0.2.50")
    owner = app.test_client()
    assert sign_in(owner, alice.username, address="192.0.2.60").status_code == 302
    fail(en, alice.username, 1, address="192.0.2.50")
    assert sign_in(app.test_client(), alice.username, address="192.0.2.70").status_code == 429


def test_security_27_failures_recorded_by_another_process_count(en, alice):
    """The count is the audit log's, shared by every process: rows written elsewhere lock here."""
    for _ in range(5):
        AuditEntry.record("login_failed", object_type="user", object_name=alice.username, remote_addr="10.0.0.8")
    assert sign_in(en, alice.username, address="192.0.2.99").status_code == 429


def test_security_27_limits_and_window_are_settings(app, en, alice):
    app.config.update(LOGIN_MAX_FAILURES_PER_USER=2, LOGIN_MAX_FAILURES_PER_ADDRESS=3, LOGIN_WINDOW_SECONDS=60)
    fail(en, alice.username, 2)
    response = sign_in(en, alice.username)
    assert response.status_code == 429
    assert password_error(response) == "Too many failed sign-in attempts. Wait 1 minutes and try again."
    assert response.headers["Retry-After"] == "60"
    age_failures(61)
    assert sign_in(en, alice.username).status_code == 302


def test_security_27_the_lock_message_is_translated(client, alice):
    fail(client, alice.username, 5)
    response = sign_in(client, alice.username)
    assert response.status_code == 429
    assert password_error(response) != LOCKED and "15" in password_error(response)


# --- SECURITY 27: the session cookie ---------------------------------------------------------------------------

def session_cookie(response) -> str:
    return next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("session="))


def test_security_27_the_session_cookie_is_httponly_lax_and_expires(client, alice):
    cookie = session_cookie(sign_in(client, alice.username))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Expires=" in cookie  # permanent: it ends PERMANENT_SESSION_LIFETIME after it was last signed
    assert "Secure" not in cookie  # plain HTTP by default (a local install); see BEHIND_HTTPS below
    assert client.application.config["PERMANENT_SESSION_LIFETIME"] == timedelta(hours=8)


def test_security_27_a_session_older_than_its_lifetime_is_refused(client, alice, monkeypatch):
    signed_at = TimestampSigner.get_timestamp
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: signed_at(self) - 8 * 3600 - 1)
    assert sign_in(client, alice.username).status_code == 302
    monkeypatch.setattr(TimestampSigner, "get_timestamp", signed_at)
    page = client.get("/accounts/")
    assert page.status_code == 302 and "/auth/login" in page.headers["Location"]


@pytest.fixture
def https_app(tmp_path, database_config):
    """The app as configured behind a TLS reverse proxy."""
    with running_app(tmp_path, BEHIND_HTTPS=True, **database_config) as app:
        yield app


# Over HTTPS flask-wtf also wants a same-site Referer, which browsers send (Referrer-Policy: same-origin).
PROXIED = {"X-Forwarded-For": "203.0.113.77", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "desk.example.com",
           "Referer": "https://desk.example.com/auth/login"}


def test_security_27_behind_https_the_cookie_is_secure_and_the_proxy_names_the_client(https_app):
    admin = make_user("admin", username="alice")
    client = https_app.test_client()
    response = client.post("/auth/login", data={"username": "alice", "password": PASSWORD}, headers=PROXIED,
                           environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert response.status_code == 302
    assert "Secure" in session_cookie(response) and "HttpOnly" in session_cookie(response)
    assert https_app.config["REMEMBER_COOKIE_SECURE"] is True
    assert isinstance(https_app.wsgi_app, ProxyFix)
    login = AuditEntry.get(AuditEntry.action == "login", AuditEntry.object_id == admin.id)
    assert login.remote_addr == "203.0.113.77"  # the client, not the proxy at 10.0.0.2


def test_security_27_behind_https_failures_are_counted_per_forwarded_client(https_app):
    make_user("admin", username="alice")
    client = https_app.test_client()
    for n in range(20):
        client.post("/auth/login", data={"username": f"guess{n}", "password": "x"},
                    headers={**PROXIED, "X-Forwarded-For": "198.51.100.66"})
    locked = client.post("/auth/login", data={"username": "alice", "password": PASSWORD},
                         headers={**PROXIED, "X-Forwarded-For": "198.51.100.66"})
    assert locked.status_code == 429
    other = client.post("/auth/login", data={"username": "alice", "password": PASSWORD}, headers=PROXIED)
    assert other.status_code == 302  # another client behind the same proxy is not locked out


def test_security_27_smtpdesk_behind_https_is_read_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SMTPDESK_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("SMTPDESK_DATABASE", str(tmp_path / "env.db"))
    monkeypatch.setenv("SMTPDESK_BEHIND_HTTPS", "1")
    app = create_app()
    assert app.config["SESSION_COOKIE_SECURE"] is True and isinstance(app.wsgi_app, ProxyFix)
    monkeypatch.setenv("SMTPDESK_BEHIND_HTTPS", "0")
    app = create_app()
    assert not app.config.get("SESSION_COOKIE_SECURE") and not isinstance(app.wsgi_app, ProxyFix)


def test_security_27_without_behind_https_forwarded_headers_are_ignored(client, alice):
    client.post("/auth/login", data={"username": alice.username, "password": PASSWORD}, headers=PROXIED,
                environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert AuditEntry.get(AuditEntry.action == "login").remote_addr == "10.0.0.2"


# --- sessions end when the password changes ----------------------------------------------------------------------

def edit_form(user, **overrides):
    data = {"role": user.role, "active": "yes" if user.active else "no", "password": "", "confirm": ""}
    data.update(overrides)
    return data


def signed_out(client) -> bool:
    page = client.get("/accounts/")
    fragment = client.htmx("get", "/accounts/")
    return (page.status_code == 302 and "/auth/login" in page.headers["Location"]
            and fragment.status_code == 401 and "/auth/login" in fragment.headers["HX-Redirect"])


def test_a_new_password_from_the_users_screen_ends_the_users_other_sessions(app, admin):
    bob = make_user("operator", username="bob")
    bobs_browser = app.test_client()
    bobs_browser.login(bob)
    assert is_signed_in(bobs_browser)
    response = admin.post(f"/users/{bob.id}/edit",
                                 data=edit_form(bob, password=NEW_PASSWORD, confirm=NEW_PASSWORD))
    assert response.status_code == 303
    assert signed_out(bobs_browser)
    bobs_browser.login(User.get_by_id(bob.id), password=NEW_PASSWORD)
    assert is_signed_in(bobs_browser)


def test_saving_a_user_without_a_new_password_keeps_their_sessions(app, admin):
    bob = make_user("operator", username="bob")
    bobs_browser = app.test_client()
    bobs_browser.login(bob)
    admin.post(f"/users/{bob.id}/edit", data=edit_form(bob, role="auditor"))
    assert is_signed_in(bobs_browser)


def test_an_admin_changing_their_own_password_stays_signed_in_but_their_other_sessions_end(app, admin):
    laptop = app.test_client()
    laptop.login(admin.user)
    response = admin.post(f"/users/{admin.user.id}/edit",
                          data=edit_form(admin.user, password=NEW_PASSWORD, confirm=NEW_PASSWORD))
    assert response.status_code == 303
    assert admin.get("/users/").status_code == 200
    assert signed_out(laptop)


def test_a_new_password_from_the_cli_ends_the_users_sessions(app, runner):
    bob = make_user("operator", username="bob")
    bobs_browser = app.test_client()
    bobs_browser.login(bob)
    result = runner.invoke(args=["users", "set-password", "Bob", "--password", NEW_PASSWORD])
    assert result.exit_code == 0, result.output
    assert NEW_PASSWORD not in result.output
    assert signed_out(bobs_browser)
    entry = AuditEntry.get(AuditEntry.action == "update", AuditEntry.object_id == bob.id)
    assert entry.changes == {"password_hash": "changed"} and entry.remote_addr == "cli"
    bobs_browser.login(User.get_by_id(bob.id), password=NEW_PASSWORD)


def test_the_cli_refuses_a_short_password_or_an_unknown_user(app, runner):
    make_user("operator", username="bob")
    assert runner.invoke(args=["users", "set-password", "bob", "--password", "short"]).exit_code != 0
    assert runner.invoke(args=["users", "set-password", "nobody", "--password", NEW_PASSWORD]).exit_code != 0
    assert not AuditEntry.select().where(AuditEntry.action == "update").exists()


def test_the_session_id_reveals_nothing_of_the_password_hash(app, alice):
    user_id = alice.get_id()
    row_id, fingerprint = user_id.split(".")
    assert row_id == str(alice.id) and len(fingerprint) == 20
    assert fingerprint not in alice.password_hash


def test_a_session_with_a_bare_or_forged_user_id_loads_nobody(app, client, alice):
    for forged in (str(alice.id), f"{alice.id}.", f"{alice.id}.0000000000", "x.y", ""):
        with client.session_transaction() as session:
            session["_user_id"] = forged
            session["_fresh"] = True
        assert signed_out(client), forged


# --- SECURITY 34: signing out ends the session on the server; sign-in renews the CSRF secret ----------------------

CSRF_IN_PAGE = re.compile(r'"X-CSRFToken": "([^"]+)"')


def page_token(client, url="/accounts/") -> str:
    """The CSRF token the page at url carries for its buttons, as a browser reads it."""
    return CSRF_IN_PAGE.search(client.get(url, follow_redirects=True).get_data(as_text=True)).group(1)


def test_security_34_a_cookie_captured_before_signing_out_is_not_signed_in_after(app, en, alice):
    client = en
    client.login(alice)
    assert is_signed_in(client)
    captured = client.get_cookie("session").value
    response = client.post("/auth/logout")
    assert response.status_code == 302
    assert "You are signed out." in client.get(response.headers["Location"]).get_data(as_text=True)
    replay = app.test_client()  # another browser, holding only the stolen cookie
    replay.set_cookie("session", captured)
    assert signed_out(replay)
    client.login(User.get_by_id(alice.id))  # signing in again works, with a new cookie
    assert is_signed_in(client)


def test_security_34_signing_out_ends_the_users_sessions_in_every_browser(app, alice):
    laptop, phone = app.test_client(), app.test_client()
    laptop.login(alice)
    phone.login(alice)
    assert phone.post("/auth/logout").status_code == 302
    assert signed_out(laptop)


def test_security_34_a_csrf_token_from_before_sign_in_is_refused_after_it(app, client, alice):
    client.use_language("en")
    account = make_account(name="Spare relay")
    anonymous = page_token(client, "/auth/login")
    signed_in = client.post("/auth/login", data={"username": alice.username, "password": PASSWORD},
                            headers={"X-CSRFToken": anonymous}, csrf=False)
    assert signed_in.status_code == 302
    stale = client.post(f"/accounts/{account.id}/disable", data={"next": "/accounts/"},
                        headers={"X-CSRFToken": anonymous}, csrf=False)
    assert stale.status_code == 400 and SmtpAccount.get_by_id(account.id).enabled
    fresh = page_token(client)
    assert fresh != anonymous
    assert "SMTP Configuration" in client.get("/accounts/").get_data(as_text=True)  # the language choice stays
    done = client.post(f"/accounts/{account.id}/disable", data={"next": "/accounts/"},
                       headers={"X-CSRFToken": fresh}, csrf=False)
    assert done.status_code == 303 and not SmtpAccount.get_by_id(account.id).enabled


def test_security_34_a_csrf_token_from_before_setup_is_refused_after_it(app, client):
    from webapp.auth.passwords import issue_setup_code

    code = issue_setup_code(app.instance_path)
    anonymous = page_token(client, "/auth/setup")
    form = {"code": code, "username": "root", "password": PASSWORD, "confirm": PASSWORD}
    assert client.post("/auth/setup", data=form, headers={"X-CSRFToken": anonymous}, csrf=False).status_code == 302
    stale = client.post("/tokens/new", data={"name": "ci"}, headers={"X-CSRFToken": anonymous}, csrf=False)
    assert stale.status_code == 400 and ApiToken.select().count() == 0


# --- SECURITY 27: security headers on every answer, no inline script ------------------------------------------

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\s(on[a-z]+|hx-on[:\w-]*|style)\s*=", re.I)


def assert_protected(response, what):
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (what, name)
    if response.mimetype == "text/html":
        page = response.get_data(as_text=True)
        assert not INLINE_SCRIPT.search(page), what
        assert not INLINE_HANDLER.search(page), (what, INLINE_HANDLER.search(page))


def test_security_27_the_policy_allows_no_inline_script_no_eval_and_no_framing():
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'" and "script-src" not in directives
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert "unsafe" not in policy
    assert SECURITY_HEADERS["X-Content-Type-Options"] == "nosniff"
    assert SECURITY_HEADERS["Referrer-Policy"] == "same-origin"


def test_security_27_htmx_is_configured_for_the_policy(client):
    page = client.get("/auth/login", follow_redirects=True).get_data(as_text=True)
    meta = re.search(r"<meta name=\"htmx-config\" content='([^']+)'>", page).group(1)
    config = json.loads(meta)
    # No eval (hx-on, js: expressions), no <script> from swapped content, no injected indicator <style>.
    assert config["allowEval"] is False
    assert config["allowScriptTags"] is False
    assert config["includeIndicatorStyles"] is False


@pytest.mark.parametrize("role", ["admin", "operator", "anonymous"])
def test_security_27_every_page_and_fragment_carries_the_security_headers(app, role):
    _world()
    client = app.test_client().use_language("en")
    if role != "anonymous":
        client.login(make_user(role, username=f"{role}-walker"))
    for endpoint, url, _methods in _routes(app, {"GET"}):
        assert_protected(client.get(url), (role, endpoint))
        assert_protected(client.htmx("get", url), (role, endpoint, "htmx"))
    for url in ("/", "/auth/login", "/static/js/app.js", "/static/vendor/htmx.min.js", "/no/such/page"):
        response = client.get(url)
        assert_protected(response, (role, url))
        response.close()
    assert_protected(client.post("/auth/login", data={"username": "x", "password": "y"}), (role, "login post"))


def test_security_27_a_lock_out_answer_carries_the_security_headers(en, alice):
    fail(en, alice.username, 5)
    assert_protected(sign_in(en, alice.username), "429")
