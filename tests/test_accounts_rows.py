"""The report's rows: always what the database holds now (nothing is kept between requests), their actions for
each role, and those actions with JavaScript (htmx swaps the row) and without (a plain form post)."""
import html
import re
from datetime import datetime

import pytest

from tests.support.factories import make_account, make_client, make_credential, make_notification
from webapp.accounts import columns, forms, routes
from webapp.models import Credential, Notification, SmtpAccount


def row(text: str, account) -> str:
    return re.search(rf'<tr id="account-{account.id}".*?</tr>', text, re.S).group(0)


@pytest.fixture
def report(app):
    """A page of accounts that show every kind of value: default, disabled, tested, TLS, delivered to."""
    main = make_account(name="Main relay", is_default=True, last_test_at=datetime(2025, 3, 4, 5, 6),
                        last_test_ok=True, last_test_summary="250 2.0.0 OK", last_tls_verified=True,
                        secure=True, secure_type="tls")
    other = make_account(name="Other relay")
    make_account(name="Switched off", enabled=False, secure=True, secure_type="ssl", ignore_cert_errors=True)
    make_notification("sent", account=other, last_reply="250 queued")
    return main, other


def _rename(main, other):
    SmtpAccount.update(name="Renamed relay").where(SmtpAccount.id == other.id).execute()


def _disable(main, other):
    SmtpAccount.update(enabled=False).where(SmtpAccount.id == other.id).execute()


def _make_default(main, other):
    other.make_default()


def _record_a_test(main, other):
    SmtpAccount.update(last_test_at=datetime(2025, 5, 6, 7, 8), last_test_ok=False,
                       last_test_summary="421 4.3.2 try later").where(SmtpAccount.id == other.id).execute()


def _deliver_again(main, other):
    make_notification("failed", account=other, last_reply="550 5.1.1 no such user")


def _change_the_last_deliverys_outcome(main, other):
    Notification.update(status="failed", last_reply="554 refused").where(Notification.account == other.id).execute()


# Written behind the app's back (no updated_at moved), as another process or a script would.
@pytest.mark.parametrize("change", [_rename, _disable, _make_default, _record_a_test, _deliver_again,
                                    _change_the_last_deliverys_outcome])
def test_a_row_changes_when_any_value_it_shows_changes(admin, report, change):
    main, other = report
    before = admin.get("/accounts/").get_data(as_text=True)
    change(main, other)
    after = admin.get("/accounts/").get_data(as_text=True)
    assert row(after, other) != row(before, other)


def test_nothing_shown_is_stale_after_a_rename_a_change_or_another_language(app, admin, monkeypatch):
    """A report column showing the account's credential (added the way a column is added: one entry in the column
    table), then the credential renamed, the account changed and the language switched: each shows at once."""
    credential = make_credential(name="Old login")
    account = make_account(name="Billing relay", use_auth=True, credential=credential)
    shown = columns.Column("credential", "Credential", lambda a: a.credential.name if a.credential else "",
                           reads=(SmtpAccount.credential,))
    monkeypatch.setattr(routes, "REPORT_COLUMNS", (*columns.REPORT_COLUMNS, shown))
    monkeypatch.setattr(forms, "REPORT_FIELDS", (*columns.REPORT_FIELDS, SmtpAccount.credential))
    assert "<td>Old login</td>" in row(admin.get("/accounts/").text, account)

    Credential.update(name="New login").where(Credential.id == credential.id).execute()
    assert "<td>New login</td>" in row(admin.get("/accounts/").text, account)
    assert "New login" in admin.get("/accounts/export.csv").text

    SmtpAccount.update(sender="Finance <finance@example.com>").where(SmtpAccount.id == account.id).execute()
    assert "Finance &lt;finance@example.com&gt;" in row(admin.get("/accounts/").text, account)

    page = admin.use_language("pt_BR").get("/accounts/").text
    assert "Configuração SMTP" in page and ">Desativar<" in row(page, account)
    page = admin.use_language("en").get("/accounts/").text
    assert "SMTP Configuration" in page and ">Disable<" in row(page, account)


def test_row_links_lead_back_to_the_report_as_it_was_filtered_and_sorted(admin, report):
    main, other = report
    plain = admin.get("/accounts/").get_data(as_text=True)
    sorted_by_name = admin.get("/accounts/?sort=name").get_data(as_text=True)
    assert "next=/accounts/?sort%3Dname" in row(sorted_by_name, other)  # Edit's link
    assert 'name="next" value="/accounts/?sort=name"' in row(sorted_by_name, other)  # the forms
    assert "sort" not in row(plain, other)


def test_each_role_sees_the_actions_it_may_take(app):
    account = make_account(name="Shared relay", is_default=True)
    rows = {who: row(make_client(app, role, language=language).get("/accounts/").text, account)
            for who, role, language in (("admin en", "admin", "en"), ("admin pt_BR", "admin", "pt_BR"),
                                        ("operator en", "operator", "en"), ("auditor en", "auditor", "en"))}
    assert ">Disable<" in rows["admin en"] and ">Desativar<" in rows["admin pt_BR"]
    for viewer in ("operator en", "auditor en"):
        assert "/disable" not in rows[viewer] and "/make-default" not in rows[viewer] and "/edit" not in rows[viewer]
    assert f'hx-get="/accounts/{account.id}/test"' in rows["operator en"]
    assert re.search(rf'<button [^>]*disabled\s+aria-describedby="why-test-{account.id}">Test configuration</button>\s*'
                     rf'<small id="why-test-{account.id}" class="why">Only operators and administrators can test an '
                     r"account.</small>", rows["auditor en"])


def _form(text: str, label: str, account) -> dict:
    """A row action's form: its attributes and what it posts (its CSRF token and where to return), unescaped as
    the browser reads them."""
    found = re.search(rf'<form method="post" action="/accounts/{account.id}/[^"]*"[^>]*>\s*'
                      r'<input type="hidden" name="csrf_token" value="([^"]+)">\s*'
                      rf'<input type="hidden" name="next" value="([^"]*)">\s*<button[^>]*>{label}<', text)
    attributes = {name: html.unescape(value) for name, value in re.findall(r'([\w-]+)="([^"]*)"', found.group(0))}
    return {**attributes, "data": {"csrf_token": found.group(1), "next": html.unescape(found.group(2))}}


def test_without_javascript_a_row_action_posts_its_form_and_returns_to_the_report(admin, report):
    main, other = report
    text = admin.get("/accounts/?name=relay").get_data(as_text=True)
    form = _form(text, "Disable", other)
    assert form["action"] == f"/accounts/{other.id}/disable"
    assert form["data"]["next"] == "/accounts/?name=relay"

    # What the browser sends: the form's fields, to the form's action; no CSRF header.
    response = admin.post(form["action"], data=form["data"], csrf=False)

    assert response.status_code == 303
    assert response.headers["Location"] == "/accounts/?name=relay"
    assert not SmtpAccount.get_by_id(other.id).enabled
    assert "Account “Other relay” disabled." in admin.get("/accounts/?name=relay").get_data(as_text=True)
    assert admin.post(form["action"], data={}, csrf=False).status_code == 400  # the token is still needed


def test_with_htmx_a_row_action_swaps_in_the_rows_the_page_would_show(admin, report):
    main, other = report
    text = admin.get("/accounts/?sort=name").get_data(as_text=True)
    form = _form(text, "Make default", other)
    assert form["hx-post"] == form["action"] == f"/accounts/{other.id}/make-default"
    assert form["hx-target"] == "closest tr" and form["data"]["next"] == "/accounts/?sort=name"

    # What htmx sends: the form's fields and the page's CSRF header.
    response = admin.htmx("post", form["hx-post"], data={"next": form["data"]["next"]})

    assert response.status_code == 200
    swapped, flash = response.get_data(as_text=True).split('<div id="flashes" hx-swap-oob="innerHTML">')
    assert "“Other relay” is now the default account." in flash
    new_row, old_row = swapped.split(f'<tr id="account-{main.id}" hx-swap-oob="true"')
    old_row = f'<tr id="account-{main.id}" ' + old_row
    after = admin.get("/accounts/?sort=name").get_data(as_text=True)

    def same(a: str, b: str) -> bool:  # the page's rows and the swapped ones differ only in their CSRF tokens
        def words(text):
            return re.sub(r'name="csrf_token" value="[^"]+"', 'name="csrf_token"', text).split()
        return words(a) == words(b)

    assert same(new_row.strip(), row(after, other))
    assert same(old_row.replace(' hx-swap-oob="true"', "").strip(), row(after, main))
    assert "badge-default" in new_row and "badge-default" not in old_row


def test_the_disabled_buttons_say_why_in_visible_text(admin, report):
    main, other = report
    text = admin.get("/accounts/").get_data(as_text=True)
    switched_off = SmtpAccount.get(SmtpAccount.name == "Switched off")

    def reason(account, action: str, label: str) -> str:
        """The visible text the disabled button points to with aria-describedby."""
        found = re.search(rf'disabled aria-describedby="why-{action}-{account.id}">{label}</button>\s*'
                          rf'<small id="why-{action}-{account.id}" class="why">([^<]+)</small>', row(text, account))
        return found.group(1)

    assert reason(main, "toggle", "Disable").startswith("The default account cannot be disabled.")
    assert reason(main, "default", "Make default") == "This is the default account."
    assert reason(switched_off, "default", "Make default").startswith("Enable the account first")
    assert ">Enable<" in row(text, switched_off)
    other_row = row(text, other)
    assert not re.search(r"disabled[^>]*>(Disable|Make default)<", other_row) and 'class="why"' not in other_row
    assert not re.search(r"disabled[^>]* title=", row(text, main))  # not a tooltip only


@pytest.mark.parametrize("action,message", [("disable", "Account “Other relay” disabled."),
                                            ("enable", "Account “Switched off” enabled."),
                                            ("make-default", "“Other relay” is now the default account.")])
def test_a_row_action_by_htmx_confirms_what_it_did_in_the_pages_messages(admin, report, action, message):
    main, other = report
    account = SmtpAccount.get(SmtpAccount.name == "Switched off") if action == "enable" else other
    page = admin.get("/accounts/").get_data(as_text=True)
    assert '<div id="flashes" class="flashes" role="status" aria-live="polite">' in page  # there before the action

    response = admin.htmx("post", f"/accounts/{account.id}/{action}", data={"next": "/accounts/"})

    assert response.status_code == 200
    assert (f'<div id="flashes" hx-swap-oob="innerHTML"><p class="flash flash-success">{message}</p></div>'
            in response.get_data(as_text=True))


def test_make_default_asks_first_as_it_reroutes_every_notification(app, report):
    main, other = report
    for language, question in (("en", "Make “Other relay” the default account? Every notification that names no "
                                      "account will be sent through it."),
                               ("pt_BR", "Tornar “Other relay” a conta padrão? Toda notificação que não indicar "
                                         "uma conta será enviada por ela.")):
        text = make_client(app, "admin", language=language).get("/accounts/").get_data(as_text=True)
        form = re.search(rf'<form method="post" action="/accounts/{other.id}/make-default"[^>]*>', row(text, other))
        assert f'hx-confirm="{question}"' in form.group(0)
