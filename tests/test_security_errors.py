"""SECURITY.md item 37: no input gives a 500.

Each class of input the probe of a running install answered with 500 is tried on every route, query parameter or
form field it applies to, read from the app's URL map and from the forms its pages show, so a new screen is tried
as soon as it exists: ids beyond SQLite's integers, dates at the calendar's ends, deeply nested JSON, lone surrogates,
page cursors with thousands of digits, and a full disk (503, "nothing was saved", the database unchanged). The app
runs with TESTING, so an unexpected exception fails the test with its traceback instead of becoming a 500 page.
"""
import json
import logging

import pytest
from peewee import OperationalError

from tests.support.apps import running_app
from tests.support.factories import (
    PASSWORD,
    account_form,
    connector_form,
    credential_form,
    make_account,
    make_client,
    make_connector,
    make_credential,
    make_notification,
    make_user,
)
from tests.support.net import free_port
from tests.support.walk import (
    DATE_KINDS,
    SESSION_FORMS,
    TEXT_KINDS,
    every_form,
    every_form_of_everyone,
    path_of,
    routes,
    world,
)
from webapp.api.routes import FIELDS
from webapp.db import database
from webapp.models import MAX_ROW_ID, ApiToken, AuditEntry, Connector, Notification, ScheduledReport, SmtpAccount

API = "/api/v1/notifications"
# Past SQLite's INTEGER (2**63 - 1), past 64 bits, and past the 4,300 digits int() accepts from text.
HUGE_IDS = [str(MAX_ROW_ID + 1), str(2 ** 64), "9" * 5000]
# Query parameters the screens read as ids or page cursors; sent to every route.
NUMERIC_PARAMETERS = ("account", "account_id", "before", "after", "page", "seen")


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def refused_cleanly(response, *allowed):
    """Not a 500, and one of the allowed statuses when any are given."""
    assert response.status_code != 500, response.get_data(as_text=True)[:500]
    if allowed:
        assert response.status_code in allowed, (response.status_code, response.get_data(as_text=True)[:500])
    return response


def field_error(response, field) -> str:
    """The error shown beside a field of a re-rendered form ("" when there is none)."""
    page = response.get_data(as_text=True)
    marker = f'id="{field}-error">'
    return page.split(marker, 1)[1].split("<", 1)[0] if marker in page else ""


# --- Ids beyond SQLite's integers ---------------------------------------------------------------------------------


def test_security_37_ids_beyond_sqlite_integers_in_any_path_are_not_found(app, admin):
    token = world()["token"]
    tried = 0
    for endpoint, rule, method in routes(app):
        if "<int:" not in rule.rule:
            continue
        for huge in HUGE_IDS:
            url = path_of(rule, huge)
            headers = bearer(token) if url.startswith("/api/") else {}
            # 405 where another rule has the same path for another method (Werkzeug checks methods first).
            response = refused_cleanly(admin.open(url, method=method, headers=headers), 404, 405)
            if url.startswith("/api/"):
                assert response.get_json()["error"] == "not_found", endpoint
            tried += 1
    assert tried > 20


def test_security_37_ids_beyond_sqlite_integers_in_queries_and_form_fields_are_refused_as_values(app, admin):
    token = world()["token"]
    for too_big in (MAX_ROW_ID + 1, 2 ** 64):
        response = admin.post(API, json={"to": "a@example.com", "subject": "s", "text": "t", "account": too_big},
                              headers=bearer(token), csrf=False)
        assert refused_cleanly(response, 400).get_json()["fields"] == {
            "account": "No SMTP account has this name or id."}
    assert Notification.select().count() == 1
    for huge in HUGE_IDS:
        # Every route, with every query parameter a screen reads as a number.
        for _endpoint, rule, method in routes(app):
            if rule.rule.startswith("/api/") or rule.rule in SESSION_FORMS:
                continue
            query = "&".join(f"{name}={huge}" for name in NUMERIC_PARAMETERS)
            refused_cleanly(admin.open(f"{path_of(rule)}?{query}", method=method))
        # Every choice list (accounts, credentials, connectors...) of every form, the yes/no radios on Yes.
        for form in every_form(app, admin):
            response = form.send(admin, form.data(lambda kind, name: huge if kind == "select" else None))
            refused_cleanly(response)
    assert "Choose an account from the list." in field_error(admin.get(f"/deliveries/?account={2 ** 63}"), "account")
    refused_cleanly(admin.post(f"/accounts/test-settings?account_id={2 ** 63}", data={}), 404)
    form = {**account_form(use_auth="yes", credential=str(2 ** 63), use_connector="yes", connector=str(2 ** 63))}
    response = refused_cleanly(admin.post("/accounts/new", data=form), 422)
    assert field_error(response, "credential") == "Choose a credential from the list."
    assert field_error(response, "connector") == "Choose a connector from the list."


# --- Dates at the calendar's ends ---------------------------------------------------------------------------------


@pytest.fixture(params=["UTC", "America/Sao_Paulo", "Pacific/Kiritimati"])
def zoned_admin(request, tmp_path, database_config):
    """An administrator's client of an app showing times in this zone (UTC-3 and UTC+14 push the calendar's ends
    past what datetime holds)."""
    with running_app(tmp_path, BABEL_DEFAULT_TIMEZONE=request.param, **database_config) as app:
        yield make_client(app)


def test_security_37_dates_at_the_calendars_ends_filter_or_are_refused_in_every_form_and_list(zoned_admin):
    app, admin = zoned_admin.application, zoned_admin
    world()
    forms = every_form(app, admin)
    date_fields = {name for form in forms for name, (kind, _values) in form.fields.items() if kind in DATE_KINDS}
    assert {"date_from", "date_to", "first_run"} <= date_fields
    ends = {"date": ("0001-01-01", "9999-12-31"), "datetime-local": ("0001-01-01T00:00", "9999-12-31T23:59")}
    for first, last in zip(*ends.values()):
        for form in forms:
            for extreme in (first, last):
                refused_cleanly(form.send(admin, form.data(lambda kind, name: {
                    "date": ends["date"], "datetime-local": ends["datetime-local"]}[kind][extreme == last]
                    if kind in DATE_KINDS else None)))
        # Lists and exports read the filters from their address without a form: every route gets them.
        for _endpoint, rule, method in routes(app, ("GET",)):
            if not rule.arguments and not rule.rule.startswith("/api/"):
                query = "&".join(f"{name}={first}&" for name in date_fields if name.endswith("from"))
                query += "&".join(f"{name}={last}" for name in date_fields if name.endswith("to"))
                refused_cleanly(admin.get(f"{path_of(rule)}?{query}"))
    # The widest range is no range: everything is listed.
    everything = admin.get("/deliveries/?date_from=0001-01-01&date_to=9999-12-31").get_data(as_text=True)
    assert "ana@example.com" in everything
    assert "signed in" in admin.get("/audit/export.csv?date_from=0001-01-01&date_to=9999-12-31").get_data(as_text=True)


# --- Deeply nested JSON -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [
    "[" * 100_000 + "]" * 100_000,
    '{"to": ' + "[" * 100_000 + "]" * 100_000 + "}",
    '{"subject": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001,
])
def test_security_37_deeply_nested_json_is_a_400_on_every_api_route(app, client, nested):
    token = world()["token"]
    posted = [rule for _endpoint, rule, _method in routes(app, ("POST",)) if rule.rule.startswith("/api/")]
    assert posted
    for rule in posted:
        response = client.post(path_of(rule), data=nested, content_type="application/json", headers=bearer(token),
                               csrf=False)
        assert refused_cleanly(response, 400).get_json()["error"] == "invalid_json"
        assert "nested too deeply" in response.get_json()["message"]


# --- Lone surrogates ----------------------------------------------------------------------------------------------


def test_security_37_lone_surrogates_in_any_api_field_are_field_errors(app, client):
    token = world()["token"]
    body = {"to": "ana@example.com", "subject": "Invoice", "text": "Ready."}
    for name in FIELDS:
        for value in ("x\ud800y", "\udc80", ["ana@example.com", "bia\udfff@example.com"]):
            if isinstance(value, list) and name not in ("to", "cc", "bcc"):
                continue
            raw = json.dumps({**body, name: value})  # ASCII JSON: the surrogate travels as a \\ud800 escape
            response = client.post(API, data=raw, content_type="application/json", headers=bearer(token), csrf=False)
            assert refused_cleanly(response, 400).get_json()["fields"] == {
                name: "This is not valid Unicode text: it holds a lone surrogate (half of a UTF-16 pair)."}, name
    # The header names the key too.
    response = client.post(API, json=body, headers={**bearer(token), "Idempotency-Key": "key-\udc80"}, csrf=False)
    assert set(refused_cleanly(response, 400).get_json()["fields"]) == {"idempotency_key"}
    # An unknown field with a lone surrogate in its name is named back, escaped.
    response = client.post(API, data='{"\\ud800": 1}', content_type="application/json", headers=bearer(token),
                           csrf=False)
    assert refused_cleanly(response, 400).get_json()["fields"] == {"\ud800": "Unknown field."}
    assert Notification.select().count() == 1


def test_security_37_bytes_that_are_not_utf8_in_any_form_field_are_never_a_500(app, admin):
    """Over HTTP a form's text arrives as bytes: the halves of a surrogate pair as UTF-8, a lone continuation byte,
    a code point past U+10FFFF, an overlong encoding. Werkzeug keeps them as %XX text, nothing undecodable."""
    world()
    walks = every_form_of_everyone(app, admin)
    assert {form.action.split("?")[0] for _client, form in walks} >= {"/auth/login", "/accounts/new",
                                                                      "/schedules/new", "/deliveries/"}
    for raw in (b"\xed\xa0\x80", b"\x80", b"\xf4\x90\x80\x80", b"\xc0\xae"):
        for client, form in walks:
            data = form.data(lambda kind, name: b"name" + raw + b"@example.com" if kind in TEXT_KINDS else None)
            refused_cleanly(form.send(client, data))
            if form.method == "post":  # multipart/form-data is decoded by another path
                refused_cleanly(form.send(client, data, multipart=True))


def test_security_37_lone_surrogates_on_the_command_line_are_refused_without_a_traceback(app, runner):
    world()
    # Bytes that are not UTF-8 in argv reach Python as lone surrogates (surrogateescape).
    for option in ("--to", "--subject", "--body", "--account", "--idempotency-key"):
        arguments = {"--to": "ana@example.com", "--subject": "Invoice", "--body": "Ready."}
        arguments[option] = "x\udcff" + ("@example.com" if option == "--to" else "")
        result = runner.invoke(args=["send", *[part for pair in arguments.items() for part in pair]])
        assert result.exit_code == 2, (option, result.output, result.exception)
        assert "not valid Unicode text" in result.output
    assert Notification.select().count() == 1


# --- Page cursors with thousands of digits ------------------------------------------------------------------------


def test_security_37_cursors_and_page_numbers_with_thousands_of_digits_show_the_first_page(app, admin):
    world()
    for value in ("9" * 5000, "1" + "0" * 4400, str(2 ** 63), "-1", "1e9", "٣"):
        for _endpoint, rule, method in routes(app, ("GET",)):
            if rule.arguments or rule.rule.startswith("/api/"):
                continue
            for name in ("before", "after", "page"):
                for htmx in (False, True):
                    response = admin.open(f"{path_of(rule)}?{name}={value}", method=method,
                                          headers={"HX-Request": "true"} if htmx else {})
                    refused_cleanly(response)
        assert "ana@example.com" in admin.get(f"/deliveries/?before={value}").get_data(as_text=True)


# --- Logged once -------------------------------------------------------------------------------------------------


def test_security_37_an_unexpected_exception_is_logged_once_with_its_traceback(app, caplog):
    app.config["PROPAGATE_EXCEPTIONS"] = False  # the 500 page and its log, as served

    @app.get("/test-fails")
    def fails():
        raise RuntimeError("this view is broken")

    @app.get("/api/v1/test-fails")
    def api_fails():
        raise RuntimeError("this API view is broken")

    @app.get("/test-fails-in-sql")
    def sql_fails():
        database.execute_sql("SELECT this is not SQL")  # an OperationalError that is no full disk

    admin = make_client(app)
    for url in ("/test-fails", "/api/v1/test-fails", "/test-fails-in-sql"):
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            assert admin.get(url).status_code == 500
        logged = [record for record in caplog.records if record.exc_info]
        assert len(logged) == 1, [record.getMessage() for record in caplog.records]
        assert url in logged[0].getMessage()
        assert "broken" in logged[0].exc_text or "OperationalError" in logged[0].exc_text
        assert len([record for record in caplog.records if record.levelno >= logging.ERROR]) == 1


# --- A full disk --------------------------------------------------------------------------------------------------

FULL = "The storage is full: nothing was saved."
# Routes a full disk may legitimately never stop: they change a value in place, end a session, or keep what they
# start in the session cookie (never a 500 though, and a 503 there must have saved nothing too).
MAY_SUCCEED_WHEN_FULL = {"auth.language", "auth.logout", "credentials.connect"}
# Only reachable before the first user exists.
NOT_WALKED = {"auth.setup"}


def full_disk(full: bool) -> None:
    """SQLite's own size limit as the disk: full means no page beyond those the file has now (max_page_count is never
    set below the current size), for this thread's connection and any it opens later."""
    database.pragma("max_page_count", 1 if full else 2 ** 30, permanent=True)


def snapshot() -> dict:
    """Every row of every table."""
    return {table: database.execute_sql(f'SELECT * FROM "{table}"').fetchall() for table in database.get_tables()}


def write_requests(app, admin, token) -> dict:
    """endpoint: (prepare(n), request(n, prepared)), one request of the endpoint that writes something new each time;
    prepare runs first, with room on the disk."""
    default = SmtpAccount.default()
    spare = make_account(name="spare", host="127.0.0.1", port=free_port())
    toggled = make_account(name="toggled", host="127.0.0.1", port=free_port())
    proxies = [make_connector(name=f"proxy {n}", port=free_port()) for n in range(2)]
    credential = make_credential(name="spare login")
    unconnected = make_credential(secret=None, name="unconnected", kind="oauth_refresh", client_id="web-client",
                                  authorization_url="https://accounts.google.com/o/oauth2/v2/auth",
                                  token_url="https://oauth2.googleapis.com/token", scope="https://mail.google.com/")
    colleague = make_user("operator", username="colleague")
    leaving = app.test_client().use_language("en")
    polyglot = make_client(app)  # switches languages: not the admin, whose pages the test reads in English

    def sign_in_leaving(n):
        with leaving.session_transaction() as session:
            session["_user_id"] = colleague.get_id()

    def post(url, data=None, client=admin):
        return lambda n, prepared: client.post(url(n, prepared) if callable(url) else url, data=data(n) if data else {})

    return {
        "accounts.create": (None, post("/accounts/new", lambda n: account_form())),
        "accounts.edit": (None, post(f"/accounts/{spare.id}/edit",
                                     lambda n: account_form(name=f"spare {n}", host="127.0.0.1"))),
        "accounts.enable": (lambda n: SmtpAccount.update(enabled=False).where(SmtpAccount.id == toggled.id).execute(),
                            post(f"/accounts/{toggled.id}/enable")),
        "accounts.disable": (lambda n: SmtpAccount.update(enabled=True).where(SmtpAccount.id == toggled.id).execute(),
                             post(f"/accounts/{toggled.id}/disable")),
        "accounts.make_default": (None, post(lambda n, _: f"/accounts/{(spare, default)[n % 2].id}/make-default")),
        "accounts.delete": (lambda n: make_account(), post(lambda n, account: f"/accounts/{account.id}/delete")),
        "accounts.test_send": (None, post(f"/accounts/{spare.id}/test",
                                          lambda n: {"to": "ana@example.com", "subject": f"Test {n}", "body": "Hi"})),
        "accounts.test_settings": (None, post("/accounts/test-settings", lambda n: account_form(
            host="127.0.0.1", port=str(free_port()), secure="no", test_to="ana@example.com"))),
        "api.send": (None, lambda n, _: admin.post(API, json={"to": "ana@example.com", "subject": f"Invoice {n}",
                                                              "text": "Ready."}, headers=bearer(token), csrf=False)),
        "auth.language": (None, post("/auth/language", lambda n: {"lang": ("pt_BR", "en")[n % 2]}, client=polyglot)),
        "auth.login": (lambda n: app.test_client().use_language("en"), lambda n, client: client.post(
            "/auth/login", data={"username": "colleague", "password": PASSWORD})),
        "auth.logout": (sign_in_leaving, post("/auth/logout", client=leaving)),
        "connectors.create": (None, post("/connectors/new", lambda n: connector_form())),
        "connectors.edit": (None, post(f"/connectors/{proxies[0].id}/edit",
                                       lambda n: connector_form(name=f"proxy edited {n}"))),
        "connectors.delete": (lambda n: make_connector(), post(lambda n, proxy: f"/connectors/{proxy.id}/delete")),
        "connectors.make_default": (None, post(lambda n, _: f"/connectors/{proxies[n % 2].id}/make-default")),
        "connectors.unset_default": (lambda n: Connector.by_id(proxies[0].id).make_default(),
                                     post(f"/connectors/{proxies[0].id}/unset-default")),
        "connectors.test": (None, post(f"/connectors/{proxies[1].id}/test",
                                       lambda n: {"host": "127.0.0.1", "port": str(free_port())})),
        "credentials.create": (None, post("/credentials/new", lambda n: credential_form())),
        "credentials.edit": (None, post(f"/credentials/{credential.id}/edit",
                                        lambda n: credential_form(name=f"spare login {n}", secret=""))),
        "credentials.delete": (lambda n: make_credential(), post(lambda n, made: f"/credentials/{made.id}/delete")),
        "credentials.connect": (None, post(f"/credentials/{unconnected.id}/connect")),
        "deliveries.retry": (lambda n: make_notification("failed"),
                             post(lambda n, notification: f"/deliveries/{notification.id}/retry")),
        "schedules.create": (None, post("/schedules/new", lambda n: {
            "recipients": f"ops{n}@example.com", "frequency": "daily", "first_run": "2099-01-01T07:00",
            "filters": ""})),
        "schedules.delete": (lambda n: ScheduledReport.create(recipients="ops@example.com", frequency="daily"),
                             post(lambda n, schedule: f"/schedules/{schedule.id}/delete")),
        "settings.index": (None, post("/settings/", lambda n: {"footer_text": f"Footer {n}"})),
        "settings.retention": (None, post("/settings/retention", lambda n: {
            "retention_delivery_days": str(30 + n % 60), "retention_audit_days": str(100 + n % 200)})),
        "tokens.create": (None, post("/tokens/new", lambda n: {"name": f"system {n}"})),
        "tokens.revoke": (lambda n: ApiToken.issue(f"old system {n}", created_by=admin.user)[0],
                          post(lambda n, issued: f"/tokens/{issued.id}/revoke")),
        "users.create": (None, post("/users/new", lambda n: {
            "username": f"person{n}", "role": "auditor", "password": PASSWORD, "confirm": PASSWORD})),
        "users.edit": (None, post(f"/users/{colleague.id}/edit", lambda n: {
            "role": ("auditor", "operator")[n % 2], "active": "yes", "password": "", "confirm": ""})),
    }


@pytest.mark.sqlite_only("the full disk is SQLite's max_page_count; PostgreSQL's disk_full (53100) is "
                        "recognised too (tests/test_db.py)")
def test_security_37_a_full_disk_answers_503_storage_full_and_saves_nothing_on_every_route_that_writes(app, admin):
    token = world()["token"]
    admin.post(API, json={"to": "a@example.com", "subject": "s", "text": "t"}, headers=bearer(token), csrf=False)
    requests = write_requests(app, admin, token)
    writes = {endpoint for endpoint, _rule, _method in routes(app, ("POST",))} - NOT_WALKED
    assert writes == set(requests), f"a write route to add here: {sorted(writes ^ set(requests))}"
    for endpoint, (prepare, request) in requests.items():
        for n in range(5 if endpoint in MAY_SUCCEED_WHEN_FULL else 200):
            full_disk(False)
            prepared = prepare(n) if prepare else None
            full_disk(True)
            before = snapshot()
            response = refused_cleanly(request(n, prepared))
            if response.status_code == 503:
                assert snapshot() == before, endpoint
                if endpoint.startswith("api."):
                    assert response.get_json()["error"] == "storage_full"
                else:
                    assert FULL in response.get_data(as_text=True), endpoint
                break
            assert response.status_code < 400, (endpoint, response.status_code)
        else:
            assert endpoint in MAY_SUCCEED_WHEN_FULL, f"{endpoint} never found the disk full"
    # htmx gets the message as a toast, the form left as it was; reading still works.
    response = admin.post("/accounts/new", data=account_form(), headers={"HX-Request": "true"})
    assert response.status_code == 503 and response.headers["HX-Reswap"] == "none"
    assert FULL in response.get_data(as_text=True)
    assert admin.get("/accounts/").status_code == 200
    full_disk(False)
    assert admin.post("/accounts/new", data=account_form()).status_code == 303


@pytest.mark.sqlite_only("the full disk is SQLite's max_page_count")
def test_signing_out_on_a_full_disk_still_signs_this_browser_out(app):
    colleague = make_user("operator", username="colleague")
    browser = app.test_client().use_language("en")
    with browser.session_transaction() as session:
        session["_user_id"] = colleague.get_id()
    assert browser.get("/accounts/").status_code == 200
    full_disk(True)
    try:
        for size in (500, 50, 1):  # the audit log's pages filled: the next entry, however small, needs a new one
            with pytest.raises(OperationalError):
                while True:
                    AuditEntry.create(action="filler", object_type="user", object_name="x" * size)
        response = browser.post("/auth/logout", data={})
    finally:
        full_disk(False)
    assert response.status_code == 503 and FULL in response.get_data(as_text=True)
    assert browser.get("/accounts/").status_code == 302


def test_a_row_deleted_while_a_request_reads_it_is_not_found(app):
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as served

    @app.get("/test-reads-a-deleted-row")
    def reads_deleted():
        return ApiToken.get_by_id(MAX_ROW_ID).name

    @app.get("/api/v1/test-reads-a-deleted-row")
    def api_reads_deleted():
        return ApiToken.get_by_id(MAX_ROW_ID).name

    admin = make_client(app)
    assert admin.get("/test-reads-a-deleted-row").status_code == 404
    assert admin.get("/api/v1/test-reads-a-deleted-row").status_code == 404
