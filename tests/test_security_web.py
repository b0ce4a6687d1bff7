"""Issue 5, web defences, and SECURITY.md item 27 (login brute force, cookies, security headers).

- Sign-in lock-out per username and per client address, counted from the audit log's login_failed entries, with
  one message and one status (429) whether or not the username exists.
- The session cookie: HttpOnly, SameSite=Lax, Secure behind HTTPS (SMTPDESK_BEHIND_HTTPS, which also trusts one
  reverse proxy through ProxyFix), and sessions that expire.
- Sessions end when the password changes (users screen or `smtpdesk users set-password`).
- Security headers on every answer of every route, and no inline script anywhere the CSP would have to allow.
"""
import json
import re
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from itsdangerous import TimestampSigner
from werkzeug.middleware.proxy_fix import ProxyFix

from tests.conftest import Client
from tests.factories import PASSWORD, make_user
from tests.test_web_security import _routes, _world
from webapp import create_app, db
from webapp.db import database
from webapp.models import AuditEntry, User
from webapp.web import SECURITY_HEADERS

LOCKED = "Too many failed sign-in attempts. Wait 15 minutes and try again."
NEW_PASSWORD = "a brand new passphrase"
PASSWORD_ERROR = re.compile(r'id="password-error">([^<]*)<')


@pytest.fixture
def en(client):
    return client.use_language("en")


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


# --- SECURITY 27: login brute force is rate limited ------------------------------------------------------------

def test_security_27_five_failures_lock_the_username_even_for_the_right_password(en, admin):
    fail(en, admin.username, 5)
    response = sign_in(en, admin.username)  # the right password, during the lock
    assert response.status_code == 429
    assert password_error(response) == LOCKED
    assert response.headers["Retry-After"] == "900"
    assert not is_signed_in(en)
    locked = AuditEntry.get(AuditEntry.action == "login_locked")
    assert (locked.object_name, locked.remote_addr) == (admin.username, "192.0.2.1")


def test_security_27_four_failures_do_not_lock(en, admin):
    fail(en, admin.username, 4)
    assert sign_in(en, admin.username).status_code == 302


def test_security_27_the_lock_reads_the_same_whether_or_not_the_user_exists(app, admin):
    answers = []
    for username in (admin.username, "nobody-here"):
        browser = app.test_client().use_language("en")
        fail(browser, username, 5, address=f"198.51.100.{len(answers) + 1}")
        answers.append(sign_in(browser, username, address=f"198.51.100.{len(answers) + 1}"))
    assert [a.status_code for a in answers] == [429, 429]
    assert password_error(answers[0]) == password_error(answers[1]) == LOCKED


def test_security_27_the_username_is_counted_whatever_its_case_or_spaces(en, admin):
    for typed in ("ALICE", " alice", "Alice ", "alice", "aLiCe"):
        sign_in(en, typed, "wrong password")
    assert sign_in(en, "alice").status_code == 429


def test_security_27_twenty_failures_lock_the_address_for_every_username(app, en, admin):
    for n in range(20):
        sign_in(en, f"guess{n}", "wrong password", address="203.0.113.9")
    response = sign_in(en, admin.username, address="203.0.113.9")
    assert response.status_code == 429 and password_error(response) == LOCKED
    elsewhere = app.test_client()
    assert sign_in(elsewhere, admin.username, address="203.0.113.10").status_code == 302


def test_security_27_the_lock_ends_when_the_window_has_passed(en, admin):
    fail(en, admin.username, 5)
    sign_in(en, admin.username)  # refused: locked attempts are not failures and do not extend the lock
    age_failures(15 * 60 + 1)
    assert sign_in(en, admin.username).status_code == 302


def test_security_27_a_locked_attempt_checks_no_password_and_counts_no_failure(en, admin, monkeypatch):
    fail(en, admin.username, 5)
    monkeypatch.setattr("webapp.auth.routes.authenticate", lambda *a: pytest.fail("password checked"))
    assert sign_in(en, admin.username, "wrong password").status_code == 429
    assert AuditEntry.select().where(AuditEntry.action == "login_failed").count() == 5


def test_security_27_a_success_does_not_reset_the_count(app, en, admin):
    fail(en, admin.username, 4, address="192.0.2.50")
    owner = app.test_client()
    assert sign_in(owner, admin.username, address="192.0.2.60").status_code == 302
    fail(en, admin.username, 1, address="192.0.2.50")
    assert sign_in(app.test_client(), admin.username, address="192.0.2.70").status_code == 429


def test_security_27_failures_recorded_by_another_process_count(en, admin):
    """The count is the audit log's, shared by every process: rows written elsewhere lock here."""
    for _ in range(5):
        AuditEntry.record("login_failed", object_type="user", object_name=admin.username, remote_addr="10.0.0.8")
    assert sign_in(en, admin.username, address="192.0.2.99").status_code == 429


def test_security_27_limits_and_window_are_settings(app, en, admin):
    app.config.update(LOGIN_MAX_FAILURES_PER_USER=2, LOGIN_MAX_FAILURES_PER_ADDRESS=3, LOGIN_WINDOW_SECONDS=60)
    fail(en, admin.username, 2)
    response = sign_in(en, admin.username)
    assert response.status_code == 429
    assert password_error(response) == "Too many failed sign-in attempts. Wait 1 minutes and try again."
    assert response.headers["Retry-After"] == "60"
    age_failures(61)
    assert sign_in(en, admin.username).status_code == 302


def test_security_27_the_lock_message_is_translated(client, admin):
    fail(client, admin.username, 5)
    response = sign_in(client, admin.username)
    assert response.status_code == 429
    assert password_error(response) != LOCKED and "15" in password_error(response)


# --- SECURITY 27: the session cookie ---------------------------------------------------------------------------

def session_cookie(response) -> str:
    return next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("session="))


def test_security_27_the_session_cookie_is_httponly_lax_and_expires(client, admin):
    cookie = session_cookie(sign_in(client, admin.username))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Expires=" in cookie  # permanent: it ends PERMANENT_SESSION_LIFETIME after the last request
    assert "Secure" not in cookie  # plain HTTP by default (a local install); see BEHIND_HTTPS below
    assert client.application.config["PERMANENT_SESSION_LIFETIME"] == timedelta(hours=8)


def test_security_27_a_session_older_than_its_lifetime_is_refused(client, admin, monkeypatch):
    signed_at = TimestampSigner.get_timestamp
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: signed_at(self) - 8 * 3600 - 1)
    assert sign_in(client, admin.username).status_code == 302
    monkeypatch.setattr(TimestampSigner, "get_timestamp", signed_at)
    page = client.get("/accounts/")
    assert page.status_code == 302 and "/auth/login" in page.headers["Location"]


@pytest.fixture
def https_app(tmp_path):
    """The app as configured behind a TLS reverse proxy."""
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret-key", "BEHIND_HTTPS": True,
                      "VAULT_KEYS": Fernet.generate_key().decode(), "DATABASE": str(tmp_path / "smtpdesk.db")})
    app.instance_path = str(tmp_path)
    app.test_client_class = Client
    db.upgrade()
    with app.app_context():
        database.connect(reuse_if_open=True)
        yield app
        if not database.is_closed():
            database.close()


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


def test_security_27_without_behind_https_forwarded_headers_are_ignored(client, admin):
    client.post("/auth/login", data={"username": admin.username, "password": PASSWORD}, headers=PROXIED,
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


def test_a_new_password_from_the_users_screen_ends_the_users_other_sessions(app, admin_client):
    bob = make_user("operator", username="bob")
    bobs_browser = app.test_client()
    bobs_browser.login(bob)
    assert is_signed_in(bobs_browser)
    response = admin_client.post(f"/users/{bob.id}/edit",
                                 data=edit_form(bob, password=NEW_PASSWORD, confirm=NEW_PASSWORD))
    assert response.status_code == 303
    assert signed_out(bobs_browser)
    bobs_browser.login(User.get_by_id(bob.id), password=NEW_PASSWORD)
    assert is_signed_in(bobs_browser)


def test_saving_a_user_without_a_new_password_keeps_their_sessions(app, admin_client):
    bob = make_user("operator", username="bob")
    bobs_browser = app.test_client()
    bobs_browser.login(bob)
    admin_client.post(f"/users/{bob.id}/edit", data=edit_form(bob, role="auditor"))
    assert is_signed_in(bobs_browser)


def test_an_admin_changing_their_own_password_stays_signed_in_but_their_other_sessions_end(app, admin_client,
                                                                                            admin):
    laptop = app.test_client()
    laptop.login(admin)
    response = admin_client.post(f"/users/{admin.id}/edit",
                                 data=edit_form(admin, password=NEW_PASSWORD, confirm=NEW_PASSWORD))
    assert response.status_code == 303
    assert admin_client.get("/users/").status_code == 200
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


def test_the_session_id_reveals_nothing_of_the_password_hash(app, admin):
    user_id = admin.get_id()
    row_id, fingerprint = user_id.split(".")
    assert row_id == str(admin.id) and len(fingerprint) == 20
    assert fingerprint not in admin.password_hash


def test_a_session_with_a_bare_or_forged_user_id_loads_nobody(app, client, admin):
    for forged in (str(admin.id), f"{admin.id}.", f"{admin.id}.0000000000", "x.y", ""):
        with client.session_transaction() as session:
            session["_user_id"] = forged
            session["_fresh"] = True
        assert signed_out(client), forged


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


def test_security_27_a_lock_out_answer_carries_the_security_headers(en, admin):
    fail(en, admin.username, 5)
    assert_protected(sign_in(en, admin.username), "429")
