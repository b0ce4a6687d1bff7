"""Every route at once: sign-in required, CSRF required, roles enforced, errors never leak a stack trace.

SECURITY.md items 25 (no CSRF token → 400, nothing changed) and 26 (anonymous → login or 401; operator and
auditor → 403 on admin actions). Routes are read from the app's URL map, so a new screen is covered as soon
as it exists. The HTTP API (/api/v1) is the exception by design: it authenticates with bearer tokens only, so
every request without one — anonymous or with a signed-in session cookie — gets 401 JSON, and it needs no CSRF
token (tests/test_api.py covers it in depth).
"""
import pytest

from tests.factories import make_account, make_connector, make_credential, make_user
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

PUBLIC = {"static", "auth.login", "auth.setup", "auth.language", "home"}
# Tests send mail or open a connection, change no setting: operators may run them (auditors may not).
TEST_ENDPOINTS = {"accounts.test_send", "connectors.test"}
# Retrying a failed delivery changes no setting: operators may do it (auditors may not).
OPERATOR_ACTIONS = {"deliveries.retry"}
# Token-authenticated: the session cookie counts for nothing there.
API = "api."
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
    make_user("admin", username="owner")
    credential = make_credential()
    connector = make_connector()
    make_account(credential=credential, use_auth=True, connector=connector, use_connector=True,
                 is_default=True)
    failed = send_notification(to="ana@example.com", subject="Invoice", text="Ready.")
    Notification.update(status="failed").where(Notification.id == failed).execute()
    ApiToken.issue("integration")
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
            plain = client.open(url, method=method)
            assert plain.status_code in (302, 400), (endpoint, method, plain.status_code)
            if plain.status_code == 302:
                assert "/auth/login" in plain.headers["Location"], endpoint
            fragment = client.htmx(method, url)
            assert fragment.status_code in (401, 400), (endpoint, method, fragment.status_code)
            if fragment.status_code == 401:
                assert "/auth/login" in fragment.headers["HX-Redirect"]
    assert client.get("/").status_code == 302


def test_security_25_state_changing_requests_without_csrf_token_are_refused(app, admin_client):
    _world()
    before = _counts()
    audit_before = AuditEntry.select().count()
    for endpoint, url, _methods in _routes(app, {"POST"}):
        for htmx in (False, True):
            headers = {"HX-Request": "true"} if htmx else {}
            response = admin_client.post(url, data={"name": "changed", "enabled": "no"}, headers=headers,
                                         csrf=False)
            if endpoint.startswith(API):
                assert _refused_by_the_api(response), endpoint
                continue
            assert response.status_code == 400, (endpoint, response.status_code)
    response = admin_client.post("/auth/language", data={"lang": "en"}, csrf=False)
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


def test_unknown_pages_and_errors_explain_without_a_stack_trace(admin_client):
    response = admin_client.get("/no/such/page")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "Traceback" not in page and "<html" in page


@pytest.mark.parametrize("url", ["/auth/login", "/accounts/", "/accounts/export.csv", "/no-such-page",
                                 "/api/v1/notifications/1"])
def test_every_answer_forbids_framing_inline_script_and_sniffing(app, admin_client, url):
    """SECURITY.md 27: a CSP without inline script, frame-ancestors 'none', and no MIME sniffing."""
    response = admin_client.get(url)
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
