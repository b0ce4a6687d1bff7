"""SECURITY.md item 38: text that would be accepted and then fail.

38. A Unicode line break (U+2028, U+2029, U+0085) or a C0 control in any header field — every single-line field of
    every form that saves, the schedules' recipients, the API's subject and addresses — and NUL in a body are refused
    as field errors before anything is stored. (Before, the API took them with 202 and the notification then failed
    for good; the account form saved such a sender; NUL reached the wire.)
"""
import pytest

from tests.support.walk import every_form, world
from webapp.db import database
from webapp.models import Notification

API = "/api/v1/notifications"
# Unicode's line breaks, which str.splitlines() and mail clients honour, and C0 controls a header cannot hold.
LINE_BREAKERS = ["\u2028", "\u2029", "\x85", "\x00", "\x1b", "\x1e", "\r", "\n", "\x7f"]
SINGLE_LINE = {"text", "email", "search", "url", "tel"}
# Multi-line fields that still end up in a header: the recipients, one per line.
HEADER_TEXTAREAS = {"recipients"}
# The account form's "Send to" is read only by "Test these settings" (a button with its own action).
READ_ELSEWHERE = {"test_to"}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def snapshot() -> dict:
    return {table: database.execute_sql(f'SELECT * FROM "{table}"').fetchall() for table in database.get_tables()}


def field_error(response, field) -> str:
    page = response.get_data(as_text=True)
    marker = f'id="{field}-error">'
    return page.split(marker, 1)[1].split("<", 1)[0] if marker in page else ""


# --- 38: line breaks and controls -----------------------------------------------------------------------------


@pytest.fixture
def token(app, admin):
    return world()["token"]


@pytest.mark.parametrize("breaker", LINE_BREAKERS, ids=[f"U+{ord(c):04X}" for c in LINE_BREAKERS])
def test_security_38_line_breaks_in_any_api_header_field_are_field_errors_and_nothing_is_queued(client, token,
                                                                                              breaker):
    body = {"to": "ana@example.com", "subject": "Invoice", "text": "Ready."}
    header_fields = {
        "subject": f"Disk{breaker}full",
        "to": f"Ops{breaker}Team <ops@example.com>",
        "cc": [f"Ops{breaker}Team <ops@example.com>"],
        "bcc": f"ops{breaker}@example.com",
        "reply_to": f"Help{breaker}Desk <help@example.com>",
        "return_path": f"bounces{breaker}@example.com",
        "confirmation_email": f"Receipts{breaker} <receipts@example.com>",
        "idempotency_key": f"key{breaker}42",
    }
    before = Notification.select().count()
    for name, value in header_fields.items():
        response = client.post(API, json={**body, name: value}, headers=bearer(token), csrf=False)
        assert response.status_code == 400, (name, response.get_json())
        assert set(response.get_json()["fields"]) == {name}
    assert Notification.select().count() == before


def test_security_38_nul_in_an_api_body_is_a_field_error_and_line_separators_there_are_kept(client, token):
    body = {"to": "ana@example.com", "subject": "Invoice"}
    for name in ("text", "html"):
        response = client.post(API, json={**body, "text": "Ready.", name: "Ready\x00 now."}, headers=bearer(token),
                               csrf=False)
        assert response.status_code == 400
        assert response.get_json()["fields"] == {name: "NUL characters are not allowed in a message."}
    assert Notification.select().count() == 1
    # In a body a line separator is only text: it travels encoded, so it is kept as typed.
    response = client.post(API, json={**body, "text": "Line one\u2028line two\x85"}, headers=bearer(token),
                           csrf=False)
    assert response.status_code == 202
    assert Notification.get_by_id(response.get_json()["id"]).body_text == "Line one\u2028line two\x85"


def test_security_38_line_breaks_in_any_header_field_of_any_form_are_field_errors_and_nothing_is_saved(app, admin):
    world()
    forms = [form for form in every_form(app, admin) if form.method == "post"]
    walked = set()
    for form in forms:
        reads_test_to = "test-settings" in form.action
        header_fields = [name for name, (kind, _values) in form.fields.items()
                         if (kind in SINGLE_LINE or name in HEADER_TEXTAREAS)
                         and (name not in READ_ELSEWHERE or reads_test_to)]
        for name in header_fields:
            for breaker in ("\u2028", "\u2029", "\x85", "\x00", "\x0b"):
                before = snapshot()
                data = form.data(lambda kind, field: f"Ops{breaker}Team@example.com" if field == name else None)
                response = form.send(admin, data)
                assert response.status_code == 422, (form.action, name, repr(breaker), response.status_code)
                assert field_error(response, name), (form.action, name, repr(breaker))
                assert snapshot() == before, (form.action, name)
            walked.add((form.action.split("?")[0], name))
    # The fields the probe found, among every other one.
    assert {("/accounts/new", "sender"), ("/accounts/new", "name"), ("/accounts/1/test", "subject"),
            ("/credentials/new", "username"), ("/schedules/new", "recipients"),
            ("/connectors/1/test", "host")} <= walked


def test_security_38_the_account_form_refuses_a_sender_named_with_a_line_separator(admin):
    from tests.support.factories import account_form
    from webapp.models import SmtpAccount

    response = admin.post("/accounts/new", data=account_form(sender="Ops\u2028Team <ops@example.com>"))
    assert response.status_code == 422
    assert field_error(response, "sender") == "Line breaks and control characters are not allowed here."
    assert SmtpAccount.select().count() == 0

