"""The SMTP accounts report: columns, filters, pages, sorting, row actions, CSV, print, roles."""
import csv
import io
import re
from datetime import datetime

import pytest

from tests.support.factories import (
    QueryCounter,
    make_account,
    make_client,
    make_connector,
    make_credential,
    make_notification,
)
from webapp.models import AuditEntry, Notification, SmtpAccount

ROW_ID = re.compile(r'<tr id="account-(\d+)"')


def row_ids(response) -> list[int]:
    return [int(n) for n in ROW_ID.findall(response.get_data(as_text=True))]


def is_fragment(response) -> bool:
    return "<html" not in response.get_data(as_text=True)


# --- Columns ----------------------------------------------------------------------------------------------


def test_report_shows_every_column_and_each_accounts_health(admin):
    plain = make_account(name="Plain relay", is_default=True)
    ssl = make_account(name="Implicit TLS", secure=True, secure_type="ssl", force_settings=True,
                       read_confirmation=True, footer_enabled=True,
                       last_test_at=datetime(2025, 3, 4, 5, 6), last_test_ok=True,
                       last_test_summary="250 2.0.0 OK queued")
    tls = make_account(name="Starttls", secure=True, secure_type="tls", ignore_cert_errors=True, enabled=False,
                       last_test_at=datetime(2025, 3, 4, 5, 7), last_test_ok=False,
                       last_test_summary="535 5.7.8 Authentication failed")

    response = admin.get("/accounts/")
    page = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "<h1>SMTP Configuration</h1>" in page
    for heading in ("ID", "Name", "Sender e-mail", "Reply-To", "Return-Path", "Confirmation e-mail", "Enabled",
                    "Default", "Secure connection", "Uses config", "Read confirmation", "Footer", "Last test",
                    "Actions"):
        assert re.search(rf"<th[^>]*>\s*(<a[^>]*>|<abbr[^>]*>)?{re.escape(heading)}", page), heading
    assert row_ids(response) == [plain.id, ssl.id, tls.id]

    def row(account):
        return re.search(rf'<tr id="account-{account.id}".*?</tr>', page, re.S).group(0)

    assert "SSL" in row(ssl) and "TLS" in row(tls) and "SSL" not in row(plain)
    assert "badge-default" in row(plain) and "badge-default" not in row(ssl)
    assert "Never tested" in row(plain)
    assert "OK" in row(ssl) and "250 2.0.0 OK queued" in row(ssl)
    assert "Failed" in row(tls) and "535 5.7.8 Authentication failed" in row(tls)
    assert "TLS not verified" in row(tls) and "TLS not verified" not in row(ssl)
    assert 'datetime="2025-03-04T05:06:00Z"' in row(ssl)
    assert ssl.sender.replace("<", "&lt;").replace(">", "&gt;") in row(ssl)
    assert ssl.reply_to in row(ssl) and ssl.return_path in row(ssl) and ssl.confirmation_email in row(ssl)
    # The row menu: Edit, Test configuration (opens the dialog), Enable/Disable, Make default.
    assert f'href="/accounts/{ssl.id}/edit' in row(ssl)
    assert re.search(rf'<form method="get" action="/accounts/{ssl.id}/test" hx-get="/accounts/{ssl.id}/test"[^>]*>',
                     row(ssl), re.S)
    assert f'action="/accounts/{ssl.id}/disable"' in row(ssl)
    assert f'action="/accounts/{tls.id}/enable"' in row(tls)
    assert f'action="/accounts/{ssl.id}/make-default"' in row(ssl)
    assert 'class="table-wrap"' in page and 'details class="dropdown"' in page


def test_report_without_accounts_invites_the_admin_to_add_one(admin):
    page = admin.get("/accounts/").get_data(as_text=True)
    assert "No SMTP account yet." in page
    assert 'href="/accounts/new"' in page


# --- Filters ----------------------------------------------------------------------------------------------


@pytest.fixture
def two_accounts():
    alpha = make_account(name="Alpha Mailer", sender="Alpha <alpha@mail.example>", reply_to="help@alpha.example",
                         return_path="bounce@alpha.example", confirmation_email="read@alpha.example")
    beta = make_account(name="beta relay", sender="beta@relay.example", reply_to="support@beta.example",
                        return_path="errors@beta.example", confirmation_email="receipts@beta.example", enabled=False)
    return alpha, beta


@pytest.mark.parametrize("name,term", [
    ("name", "ALPHA"),
    ("sender", "Alpha@MAIL"),
    ("reply_to", "HELP@"),
    ("return_path", "Bounce@Alpha"),
    ("confirmation", "READ@ALPHA"),
])
def test_each_text_filter_finds_what_contains_it_ignoring_case(admin, two_accounts, name, term):
    alpha, beta = two_accounts
    response = admin.get("/accounts/", query_string={name: term})
    assert row_ids(response) == [alpha.id]
    # The filter stays in the form (and so in the URL of a plain GET).
    assert f'value="{term}"' in response.get_data(as_text=True)


def test_id_filter_matches_ids_containing_the_digits(admin):
    accounts = [make_account() for _ in range(12)]
    ids = [a.id for a in accounts if "1" in str(a.id)]
    assert row_ids(admin.get("/accounts/?id=1")) == ids
    assert row_ids(admin.get(f"/accounts/?id={accounts[4].id}")) == [a.id for a in accounts
                                                                     if str(accounts[4].id) in str(a.id)]


def test_enabled_filter_is_any_yes_or_no(admin, two_accounts):
    alpha, beta = two_accounts
    assert row_ids(admin.get("/accounts/?enabled=")) == [alpha.id, beta.id]
    assert row_ids(admin.get("/accounts/?enabled=yes")) == [alpha.id]
    assert row_ids(admin.get("/accounts/?enabled=no")) == [beta.id]
    assert row_ids(admin.get("/accounts/?enabled=maybe")) == [alpha.id, beta.id]


def test_filters_combine(admin, two_accounts):
    alpha, beta = two_accounts
    assert row_ids(admin.get("/accounts/?name=a&reply_to=example&enabled=no")) == [beta.id]
    assert row_ids(admin.get("/accounts/?name=alpha&enabled=no")) == []
    page = admin.get("/accounts/?name=alpha&enabled=no").get_data(as_text=True)
    assert "No account matches these filters." in page


def test_filters_ignore_case_beyond_ascii_and_take_wildcards_literally(admin):
    acao = make_account(name="Notificações AÇÃO")
    percent = make_account(name="100% relay_1")
    make_account(name="Other")
    assert row_ids(admin.get("/accounts/?name=ação")) == [acao.id]
    assert row_ids(admin.get("/accounts/?name=%25")) == [percent.id]
    assert row_ids(admin.get("/accounts/?name=_1")) == [percent.id]


@pytest.mark.parametrize("args", [
    {},
    {"name": "STRASSE"},  # casefolded: finds "Straße"
    {"id": "1"},
    {"enabled": "no"},
    {"sender": "ops", "reply_to": "REPLY", "enabled": "yes", "sort": "-name"},
    {"confirmation": "%"},
    {"return_path": "bounces", "sort": "name"},
    {"name": "relay", "sort": "-id"},
])
def test_each_page_holds_the_filtered_accounts_with_their_last_delivery(app, args):
    """The report's page (only the fields it shows, the last deliveries in one query) against the plain queries."""
    from flask import request

    from webapp.accounts.forms import AccountFilterForm

    for n in range(7):
        account = make_account(name=(f"Straße relay {n}" if n % 3 == 0 else f"Relay {n}"), enabled=n % 4 != 1)
        if n % 2 == 0:  # enabled, and so able to send
            make_notification("sent" if n % 4 else "failed", account=account, last_reply=f"250 ok {n}")
            make_notification("queued", account=account)
    for query_string in (args, {**args, "name": args.get("name", "") + "no such thing"}):
        with app.test_request_context("/accounts/", query_string=query_string):
            filters = AccountFilterForm(formdata=request.args)
            everything = list(filters.query())
            for number in (1, 2, 3):
                page = SmtpAccount.attach_last_delivery(list(filters.rows().paginate(number, 3)))
                assert [a.id for a in page] == [a.id for a in everything[(number - 1) * 3:number * 3]]
                for account in page:
                    newest = (Notification.select().where(Notification.account == account.id,
                                                          Notification.status.in_(("sent", "failed")))
                              .order_by(Notification.id.desc()).first())
                    assert getattr(account.last_delivery, "id", None) == getattr(newest, "id", None)
                    if newest is not None:
                        assert (account.last_delivery.status, account.last_delivery.last_reply) == (
                            newest.status, newest.last_reply)


def test_filtering_with_htmx_swaps_only_the_results_block(admin, two_accounts):
    alpha, beta = two_accounts
    fragment = admin.htmx("get", "/accounts/?name=beta")
    assert fragment.status_code == 200
    assert is_fragment(fragment)
    text = fragment.get_data(as_text=True)
    assert text.lstrip().startswith('<div id="account-rows">')
    assert row_ids(fragment) == [beta.id]
    assert "1 account" in text
    assert "HX-Request" in fragment.headers["Vary"]
    # The address bar gets the short form of the search (the form also sends its empty fields).
    assert fragment.headers["HX-Push-Url"] == "/accounts/?name=beta"
    noisy = admin.htmx("get", "/accounts/?id=&name=beta&sender=&reply_to=&enabled=&sort=id")
    assert noisy.headers["HX-Push-Url"] == "/accounts/?name=beta"

    # The same URL without htmx (a shared link, the back button, no JavaScript) is the whole page.
    page = admin.get("/accounts/?name=beta")
    assert not is_fragment(page)
    assert "HX-Request" in page.headers["Vary"]
    assert row_ids(page) == [beta.id]


def test_the_filter_form_is_a_plain_get_form_driven_by_htmx(admin):
    page = admin.get("/accounts/").get_data(as_text=True)
    form = re.search(r'<form id="account-filters".*?>', page, re.S).group(0)
    assert 'method="get"' in form and 'action="/accounts/"' in form
    assert 'hx-get="/accounts/"' in form
    assert 'hx-target="#account-rows"' in form
    assert 'hx-push-url="true"' in form
    assert "input changed delay:" in form and "change" in form and "submit" in form
    for name in ("id", "name", "sender", "reply_to", "return_path", "confirmation", "enabled"):
        assert f'name="{name}"' in page
    # The sort belongs to the form, so a new search keeps the chosen order.
    assert '<input type="hidden" name="sort" value="id" form="account-filters">' in page


# --- Pages and order --------------------------------------------------------------------------------------


def test_thirty_rows_a_page_and_the_pager_keeps_the_filter(admin):
    accounts = [make_account(name=f"bulk-{n:03d}") for n in range(65)]
    make_account(name="elsewhere")

    first = admin.get("/accounts/?name=bulk")
    assert row_ids(first) == [a.id for a in accounts[:30]]
    text = first.get_data(as_text=True)
    assert "65 accounts" in text
    assert "Page 1 of 3" in text
    assert 'href="/accounts/?name=bulk&amp;page=2"' in text

    third = admin.htmx("get", "/accounts/?name=bulk&page=3")
    assert is_fragment(third)
    assert row_ids(third) == [a.id for a in accounts[60:]]
    assert 'href="/accounts/?name=bulk&amp;page=2"' in third.get_data(as_text=True)
    # Out-of-range page numbers land on the nearest page.
    assert row_ids(admin.get("/accounts/?name=bulk&page=99")) == [a.id for a in accounts[60:]]
    assert row_ids(admin.get("/accounts/?name=bulk&page=abc")) == [a.id for a in accounts[:30]]


def test_sorting_by_id_and_by_name_both_ways(admin):
    charlie = make_account(name="charlie")
    alpha = make_account(name="Alpha")
    bravo = make_account(name="bravo")

    assert row_ids(admin.get("/accounts/")) == [charlie.id, alpha.id, bravo.id]
    assert row_ids(admin.get("/accounts/?sort=-id")) == [bravo.id, alpha.id, charlie.id]
    assert row_ids(admin.get("/accounts/?sort=name")) == [alpha.id, bravo.id, charlie.id]
    assert row_ids(admin.get("/accounts/?sort=-name")) == [charlie.id, bravo.id, alpha.id]
    assert row_ids(admin.get("/accounts/?sort=host;drop")) == [charlie.id, alpha.id, bravo.id]


def test_column_headings_sort_and_keep_the_filter(admin):
    make_account(name="alpha")
    text = admin.get("/accounts/?name=a&sort=name").get_data(as_text=True)
    # The current order is marked, and its heading flips it.
    assert re.search(r'<th scope="col" aria-sort="ascending"><a href="/accounts/\?name=a&amp;sort=-name"', text)
    assert 'href="/accounts/?name=a&amp;sort=-id"' not in text
    assert 'href="/accounts/?name=a"' in text  # sort by ID (the default) asc
    assert 'hx-target="#account-rows"' in text


# --- Row actions ------------------------------------------------------------------------------------------


def test_disable_without_javascript_redirects_back_to_the_filtered_report(admin):
    default = make_account(is_default=True)
    account = make_account(name="to disable")
    response = admin.post(f"/accounts/{account.id}/disable", data={"next": "/accounts/?name=disable"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/accounts/?name=disable"
    assert not SmtpAccount.get_by_id(account.id).enabled
    assert "Account “to disable” disabled." in admin.get(response.headers["Location"]).get_data(as_text=True)
    entry = AuditEntry.get(AuditEntry.action == "disable")
    assert (entry.object_id, entry.changes) == (account.id, {"enabled": [True, False]})
    assert SmtpAccount.get_by_id(default.id).enabled


def test_row_actions_never_redirect_off_site(admin):
    account = make_account()
    response = admin.post(f"/accounts/{account.id}/disable", data={"next": "//evil.example/"})
    assert response.headers["Location"] == "/accounts/"


def test_enable_and_disable_with_htmx_swap_the_row(admin):
    make_account(is_default=True)
    account = make_account(enabled=False)

    response = admin.htmx("post", f"/accounts/{account.id}/enable", data={"next": "/accounts/?enabled=no"})
    assert response.status_code == 200
    assert is_fragment(response)
    text = response.get_data(as_text=True)
    assert text.strip().startswith(f'<tr id="account-{account.id}"')
    assert f'action="/accounts/{account.id}/disable"' in text
    assert '<input type="hidden" name="next" value="/accounts/?enabled=no">' in text
    assert "HX-Request" in response.headers["Vary"]
    assert SmtpAccount.get_by_id(account.id).enabled

    response = admin.htmx("post", f"/accounts/{account.id}/disable")
    text = response.get_data(as_text=True)
    assert f'action="/accounts/{account.id}/enable"' in text
    assert '<input type="hidden" name="next" value="/accounts/">' in text
    assert not SmtpAccount.get_by_id(account.id).enabled
    assert [e.action for e in AuditEntry.select().where(AuditEntry.object_type == "smtp_account")
            .order_by(AuditEntry.id)] == ["enable", "disable"]


def test_row_actions_carry_hx_attributes_beside_their_plain_action(admin):
    account = make_account()
    text = admin.get("/accounts/").get_data(as_text=True)
    for action in ("disable", "make-default"):
        url = f"/accounts/{account.id}/{action}"
        form = re.search(rf'<form method="post" action="{re.escape(url)}"[^>]*>', text).group(0)
        assert f'hx-post="{url}"' in form
        assert 'hx-target="closest tr"' in form


def test_enabling_an_account_when_there_is_no_default_makes_it_the_default(admin):
    account = make_account(enabled=False)
    response = admin.post(f"/accounts/{account.id}/enable")
    assert SmtpAccount.get_by_id(account.id).is_default
    assert "It is now the default account" in admin.get(response.headers["Location"]).get_data(as_text=True)


def test_make_default_with_htmx_returns_both_changed_rows(admin):
    old = make_account(is_default=True)
    new = make_account()

    response = admin.htmx("post", f"/accounts/{new.id}/make-default")

    assert response.status_code == 200
    assert is_fragment(response)
    text = response.get_data(as_text=True)
    assert text.strip().startswith(f'<tr id="account-{new.id}"')
    assert re.search(rf'<tr id="account-{old.id}"\s+hx-swap-oob="true"', text)
    new_row, old_row = text.split(f'<tr id="account-{old.id}"')
    assert "badge-default" in new_row and "badge-default" not in old_row
    assert [a.id for a in SmtpAccount.select().where(SmtpAccount.is_default == True)] == [new.id]  # noqa: E712
    entries = {e.action: e for e in AuditEntry.select()}
    assert entries["make_default"].object_id == new.id
    assert entries["make_default"].changes == {"is_default": [False, True]}
    assert entries["update"].object_id == old.id
    assert entries["update"].changes == {"is_default": [True, False]}


def test_make_default_without_javascript(admin):
    make_account(is_default=True)
    new = make_account(name="next default")
    response = admin.post(f"/accounts/{new.id}/make-default", data={"next": "/accounts/?sort=name"})
    assert response.headers["Location"] == "/accounts/?sort=name"
    assert SmtpAccount.default().id == new.id
    assert "“next default” is now the default account." in admin.get("/accounts/").get_data(as_text=True)


def test_disabling_the_default_account_is_refused_with_a_clear_message(admin):
    default = make_account(name="main", is_default=True)

    response = admin.htmx("post", f"/accounts/{default.id}/disable")
    assert response.status_code == 409
    assert "“main” is the default account and cannot be disabled" in response.get_data(as_text=True)

    response = admin.post(f"/accounts/{default.id}/disable", data={"next": "/accounts/?name=main"})
    assert response.status_code == 303
    page = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "flash-error" in page and "Make another account the default first." in page

    assert SmtpAccount.get_by_id(default.id).enabled
    assert not AuditEntry.select().where(AuditEntry.object_type == "smtp_account").exists()


def test_a_disabled_account_cannot_be_made_default(admin):
    default = make_account(is_default=True)
    disabled = make_account(name="off", enabled=False)

    response = admin.htmx("post", f"/accounts/{disabled.id}/make-default")
    assert response.status_code == 409
    assert "“off” is disabled, and the default account must be enabled." in response.get_data(as_text=True)
    response = admin.post(f"/accounts/{disabled.id}/make-default")
    assert response.status_code == 303
    assert "Enable it first." in admin.get("/accounts/").get_data(as_text=True)
    assert SmtpAccount.default().id == default.id


def test_row_actions_on_a_missing_account_are_404(admin):
    assert admin.post("/accounts/999/disable").status_code == 404
    assert admin.htmx("post", "/accounts/999/make-default").status_code == 404


def test_row_actions_need_the_csrf_token(admin):
    account = make_account()
    response = admin.post(f"/accounts/{account.id}/disable", csrf=False)
    assert response.status_code == 400
    assert SmtpAccount.get_by_id(account.id).enabled
    assert admin.post(f"/accounts/{account.id}/make-default", csrf=False).status_code == 400
    assert SmtpAccount.default() is None


# --- Roles ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["operator", "auditor"])
def test_operators_and_auditors_see_the_report_read_only(app, role):
    account = make_account(name="visible", is_default=True)
    viewer = make_client(app, role)
    text = viewer.get("/accounts/").get_data(as_text=True)
    assert "visible" in text
    assert 'href="/accounts/new"' not in text
    assert f"/accounts/{account.id}/edit" not in text
    assert "/disable" not in text and "/make-default" not in text and "/enable" not in text
    assert 'href="/accounts/export.csv"' in text and 'href="/accounts/print"' in text
    assert viewer.get("/accounts/export.csv").status_code == 200
    assert viewer.get("/accounts/print").status_code == 200


@pytest.mark.parametrize("role", ["operator", "auditor"])
def test_operators_and_auditors_get_403_on_every_write_route(app, role):
    default = make_account(is_default=True)
    other = make_account(enabled=False)
    viewer = make_client(app, role)
    before = [a.audit_snapshot() for a in SmtpAccount.select().order_by(SmtpAccount.id)]
    routes = [
        ("get", "/accounts/new"), ("post", "/accounts/new"),
        ("get", f"/accounts/{other.id}/edit"), ("post", f"/accounts/{other.id}/edit"),
        ("post", f"/accounts/{other.id}/delete"), ("post", f"/accounts/{other.id}/enable"),
        ("post", f"/accounts/{default.id}/disable"), ("post", f"/accounts/{other.id}/make-default"),
    ]
    for method, url in routes:
        assert viewer.open(url, method=method.upper()).status_code == 403, url
        assert viewer.htmx(method, url).status_code == 403, url
    assert [a.audit_snapshot() for a in SmtpAccount.select().order_by(SmtpAccount.id)] == before


def test_anonymous_visitors_are_sent_to_sign_in(client):
    account = make_account()
    for url in ("/accounts/", "/accounts/?name=x", "/accounts/export.csv", "/accounts/print", "/accounts/new",
                f"/accounts/{account.id}/edit"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.headers["Location"].startswith("/auth/login")
        response = client.htmx("get", url)
        assert response.status_code == 401, url
        assert response.headers["HX-Redirect"].startswith("/auth/login")
    for action in ("enable", "disable", "make-default", "delete", "edit"):
        response = client.post(f"/accounts/{account.id}/{action}")
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/auth/login")
    assert SmtpAccount.get_by_id(account.id).enabled


# --- CSV export -------------------------------------------------------------------------------------------


def read_csv(response) -> list[list[str]]:
    text = response.get_data().decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def test_csv_export_has_every_column_of_the_filtered_sorted_rows(admin):
    credential = make_credential(name="mailer login")
    connector = make_connector(name="office proxy")
    alpha = make_account(name="alpha", secure=True, secure_type="tls", use_auth=True, credential=credential,
                         use_connector=True, connector=connector, port=2525, is_default=True,
                         last_test_at=datetime(2025, 1, 2, 3, 4, 5), last_test_ok=True, last_test_summary="250 OK")
    beta = make_account(name="alphabet", secure=True, secure_type="ssl", ignore_cert_errors=True,
                        use_connector=True, enabled=False)
    make_account(name="other")

    response = admin.get("/accounts/export.csv?name=alpha&sort=-name")

    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert "smtp-accounts.csv" in response.headers["Content-Disposition"]
    header, *rows = read_csv(response)
    assert header[:12] == ["ID", "Name", "Sender e-mail", "Reply-To", "Return-Path", "Confirmation e-mail",
                           "Enabled", "Default", "Secure connection", "Uses config", "Read confirmation", "Footer"]
    assert "SMTP host" in header and "Credential for authentication" in header and "Last test" in header
    assert [row[1] for row in rows] == ["alphabet", "alpha"]
    record = dict(zip(header, rows[1]))
    assert record["ID"] == str(alpha.id)
    assert record["Sender e-mail"] == alpha.sender
    assert (record["Enabled"], record["Default"], record["Secure connection"]) == ("Yes", "Yes", "TLS")
    assert (record["Port"], record["Credential for authentication"], record["Network connector"]) == \
        ("2525", "mailer login", "office proxy")
    assert (record["Last test"], record["Last test result"], record["Last test summary"]) == \
        ("2025-01-02 03:04:05 UTC", "OK", "250 OK")
    record = dict(zip(header, rows[0]))
    assert (record["Enabled"], record["Secure connection"], record["TLS not verified"]) == ("No", "SSL", "Yes")
    assert record["Port"] == "465"
    assert record["Network connector"] == "System default connector"
    assert beta.id == int(record["ID"])


def test_csv_export_never_contains_a_secret(admin):
    credential = make_credential(secret="Vault-Secret-9137")
    connector = make_connector(password="Proxy-Password-4242")
    make_account(use_auth=True, credential=credential, use_connector=True, connector=connector)

    raw = admin.get("/accounts/export.csv").get_data()

    for secret in ("Vault-Secret-9137", "Proxy-Password-4242", credential.secret_encrypted,
                   connector.password_encrypted):
        assert secret.encode() not in raw


def test_security_24_csv_cells_that_spreadsheets_would_run_as_formulas_are_neutralised(admin):
    make_account(name="=HYPERLINK(\"http://evil.example\",\"x\")", last_test_summary="@SUM(A1)")
    make_account(name="+1+2", last_test_summary="\tcmd")
    make_account(name="-3", last_test_summary="\rcmd")
    make_account(name="ok name", last_test_summary="plain")

    header, *rows = read_csv(admin.get("/accounts/export.csv"))
    names = [row[1] for row in rows]
    summaries = [row[header.index("Last test summary")] for row in rows]
    assert names == ["'=HYPERLINK(\"http://evil.example\",\"x\")", "'+1+2", "'-3", "ok name"]
    assert summaries == ["'@SUM(A1)", "'\tcmd", "'\rcmd", "plain"]


# --- Print view -------------------------------------------------------------------------------------------


def test_print_view_lists_every_matching_row_without_navigation_or_actions(admin):
    accounts = [make_account(name=f"printed-{n:02d}") for n in range(35)]
    make_account(name="left out")

    response = admin.get("/accounts/print?name=printed")

    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert row_ids(response) == [a.id for a in accounts]  # not paginated
    assert "left out" not in text
    assert "site-header" not in text and 'class="nav-links"' not in text
    assert "Actions" not in text and "/make-default" not in text and "/edit" not in text
    assert re.search(r"<button[^>]*data-print[^>]*>Print</button>", text)
    assert "35 accounts" in text
    assert "Name “printed”" in text


# --- Stored markup is shown as text (SECURITY 24) ----------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


def test_markup_in_stored_fields_is_escaped_in_report_fragment_and_print(admin):
    account = make_account(name=SCRIPT, sender=f'"{IMG}" <ops@example.com>', reply_to=IMG,
                           last_test_at=datetime(2025, 1, 1), last_test_ok=False, last_test_summary=IMG + SCRIPT)
    pages = [
        admin.get("/accounts/"),
        admin.htmx("get", "/accounts/"),
        admin.get("/accounts/print"),
        admin.htmx("post", f"/accounts/{account.id}/disable"),
    ]
    for response in pages:
        text = response.get_data(as_text=True)
        assert SCRIPT not in text
        assert "<img" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_markup_in_stored_fields_is_plain_text_in_the_csv(admin):
    make_account(name=SCRIPT, reply_to=IMG)
    header, row = read_csv(admin.get("/accounts/export.csv"))
    assert row[1] == SCRIPT
    assert row[3] == IMG


def test_the_report_shows_each_accounts_last_delivery_in_one_query(admin):
    """DESIGN's health at a glance: the last delivery's result and time, without a query per row."""
    sent_through = make_account(name="Sends fine", is_default=True)
    fails_through = make_account(name="Bounces")
    make_account(name="Never used")
    make_notification("sent", account=sent_through)
    make_notification("failed", account=fails_through, last_reply="550 no such user")
    make_notification("queued", account=fails_through)  # not finished: the failed one stays the last delivery
    page = admin.get("/accounts/").get_data(as_text=True)
    rows = {name: re.search(rf"<tr[^>]*>(?:(?!</tr>).)*{name}(?:(?!</tr>).)*</tr>", page, re.S).group(0)
            for name in ("Sends fine", "Bounces", "Never used")}
    assert "Last delivery:" in rows["Sends fine"] and "badge-ok\">Sent<" in rows["Sends fine"]
    assert "Last delivery:" in rows["Bounces"] and "badge-bad\">Failed<" in rows["Bounces"]
    assert "Last delivery:" not in rows["Never used"]

    with QueryCounter() as three:
        admin.get("/accounts/")
    for n in range(6):
        make_notification("sent", account=make_account(name=f"more-{n}"))
    with QueryCounter() as nine:
        admin.get("/accounts/")
    assert nine.count == three.count


def test_a_report_page_is_four_queries_for_one_row_or_thirty(admin):
    """The signed-in user, the count, the page's rows (with their backup) and their last deliveries; nothing per
    row."""
    make_notification("sent", account=make_account(name="Only one", is_default=True))
    with QueryCounter() as one_row:
        assert len(row_ids(admin.get("/accounts/"))) == 1
    previous = None
    for n in range(40):
        account = make_account(name=f"many-{n:02d}", last_test_at=datetime(2025, 3, 4), last_test_ok=n % 2 == 0,
                               last_test_summary="250 OK")
        make_notification("failed" if n % 2 else "sent", account=account, last_reply="550 no")
        # Every other account names the one before as its backup, enabled or not, some failing over to it.
        SmtpAccount.update(enabled=n % 3 > 0, backup_account=previous if n % 2 else None,
                           failover_until=datetime(2999, 1, 1) if n % 4 == 3 else None).where(
            SmtpAccount.id == account.id).execute()
        previous = account.id
    with QueryCounter() as thirty_rows:
        response = admin.get("/accounts/")
        assert len(row_ids(response)) == 30
    assert one_row.count == thirty_rows.count == 4
    text = response.get_data(as_text=True)
    assert "backup many-00 disabled" in text and "failing over to many-02" in text
