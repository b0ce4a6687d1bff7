"""The settings screen (admins): the system footer text, plain text up to 10 KB, audited with the diff, and what
the outbox appends to notifications of accounts with "Enable footer"."""
import pytest

from tests.support.factories import make_account, make_client, make_notification
from webapp.models import AuditEntry, Setting
from webapp.outbox import build_message


def footer() -> str:
    return Setting.get_value("footer_text")


def test_the_page_shows_the_footer_and_which_accounts_use_it(admin):
    Setting.set_value("footer_text", "Sent by ACME")
    make_account(name="Billing", footer_enabled=True)
    make_account(name="Alerts", footer_enabled=False)
    html = admin.get("/settings/").get_data(as_text=True)
    assert "<h1>Settings</h1>" in html and '<label for="footer_text">Footer text</label>' in html
    assert ">\r\nSent by ACME</textarea>" in html or ">Sent by ACME</textarea>" in html
    assert "Accounts with the footer enabled: Billing." in html
    assert 'href="/settings/" aria-current="page"' in html


def test_saving_stores_plain_text_and_audits_the_diff(admin):
    Setting.set_value("footer_text", "Old footer")
    response = admin.post("/settings/", data={"footer_text": "ACME Ltd.\r\nDo not reply.\r\n\r\n"})
    assert response.status_code == 303 and response.headers["Location"] == "/settings/"
    assert footer() == "ACME Ltd.\nDo not reply."
    entry = AuditEntry.get(AuditEntry.object_type == "setting")
    assert (entry.action, entry.object_name, entry.actor_name) == ("update", "footer_text", "alice")
    assert entry.changes == {"footer_text": ["Old footer", "ACME Ltd.\nDo not reply."]}
    assert "Settings saved." in admin.get("/settings/").get_data(as_text=True)
    assert "Footer text: Old footer → ACME Ltd. Do not reply." in admin.get("/audit/").get_data(as_text=True)


def test_saving_the_same_text_changes_nothing_and_audits_nothing(admin):
    Setting.set_value("footer_text", "Same")
    admin.post("/settings/", data={"footer_text": "Same"})
    assert not AuditEntry.select().where(AuditEntry.object_type == "setting").exists()
    assert "Nothing changed." in admin.get("/settings/").get_data(as_text=True)


def test_an_htmx_save_redirects_and_an_invalid_one_swaps_the_form_with_422(admin):
    ok = admin.htmx("post", "/settings/", data={"footer_text": "ACME"})
    assert ok.headers["HX-Redirect"] == "/settings/"
    bad = admin.htmx("post", "/settings/", data={"footer_text": "x" * (10 * 1024 + 1)})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422 and "<html" not in html and html.lstrip().startswith('<form id="settings-form"')
    assert "The footer is too long: at most 10 KB." in html
    assert footer() == "ACME"


def test_the_limit_is_10_kb_of_utf8(admin):
    assert admin.post("/settings/", data={"footer_text": "x" * 10 * 1024}).status_code == 303
    accented = "ç" * (5 * 1024 + 1)  # 2 bytes each: just over 10 KB
    assert admin.post("/settings/", data={"footer_text": accented}).status_code == 422
    assert footer() == "x" * 10 * 1024


@pytest.mark.parametrize("text", ["bell\x07", "nul\x00byte", "escape\x1b[31m"])
def test_control_characters_are_refused(admin, text):
    response = admin.post("/settings/", data={"footer_text": text})
    assert response.status_code == 422
    assert "Control characters are not allowed in the footer." in response.get_data(as_text=True)
    assert footer() == ""


def test_an_empty_footer_is_allowed(admin):
    Setting.set_value("footer_text", "Something")
    assert admin.post("/settings/", data={"footer_text": ""}).status_code == 303
    assert footer() == ""


def test_markup_in_the_footer_is_shown_escaped(admin):
    Setting.set_value("footer_text", "</textarea><script>alert(1)</script>")
    html = admin.get("/settings/").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;/textarea&gt;&lt;script&gt;" in html


@pytest.mark.parametrize("role", ["operator", "auditor"])
def test_only_admins_see_or_change_settings(app, role):
    client = make_client(app, role)
    assert client.get("/settings/").status_code == 403
    assert client.post("/settings/", data={"footer_text": "mine"}).status_code == 403
    assert footer() == ""
    assert 'href="/settings/"' not in client.get("/deliveries/").get_data(as_text=True)


def test_saving_needs_the_csrf_token(admin):
    assert admin.post("/settings/", data={"footer_text": "x"}, csrf=False).status_code == 400
    assert footer() == ""


def test_the_saved_footer_is_what_notifications_of_footer_accounts_carry(app, admin):
    admin.post("/settings/", data={"footer_text": "ACME Ltd. <do-not-reply>"})
    account = make_account(is_default=True, footer_enabled=True)
    message, _sender, _recipients = build_message(make_notification(text="Hello.", html="<p>Hello.</p>"), account)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Hello." in text and "ACME Ltd. <do-not-reply>" in text
    assert "ACME Ltd. &lt;do-not-reply&gt;" in html
