"""SECURITY.md items 38 and 39: text that would be accepted and then fail, and parsers that take quadratic time.

38. A Unicode line break (U+2028, U+2029, U+0085) or a C0 control in any header field — every single-line field of
    every form that saves, the schedules' recipients, the API's subject and addresses — and NUL in a body are refused
    as field errors before anything is stored. (Before, the API took them with 202 and the notification then failed
    for good; the account form saved such a sender; NUL reached the wire.)
39. 100 KB of adversarial text in any field of any form or of the API is answered at once: a generous bound, far
    below the 18 s the schedules' recipients took before.
"""
import json
import time

import pytest

from tests.support.walk import every_form, every_form_of_everyone, text_fields, world
from webapp import logs
from webapp.db import database
from webapp.mail.addresses import check_address
from webapp.mail.connectors import parse_networks
from webapp.models import Notification
from webapp.schedules.forms import split_recipients

API = "/api/v1/notifications"
# Unicode's line breaks, which str.splitlines() and mail clients honour, and C0 controls a header cannot hold.
LINE_BREAKERS = ["\u2028", "\u2029", "\x85", "\x00", "\x1b", "\x1e", "\r", "\n", "\x7f"]
SINGLE_LINE = {"text", "email", "search", "url", "tel"}
# Multi-line fields that still end up in a header: the recipients, one per line.
HEADER_TEXTAREAS = {"recipients"}
# The account form's "Send to" is read only by "Test these settings" (a button with its own action).
READ_ELSEWHERE = {"test_to"}
# Answered "at once": generous, and far below the 18 s the recipients field took with 100 KB before.
PROMPT = 2.0
# 100 KB each: quotes and separators (the recipients' old look-ahead), spaces before an angle bracket (the
# display-name pattern), backslashes and quotes (quoted names), blank lines (the log scrubber).
ADVERSARIAL = {
    "quotes": ',"' * 50_000,
    "spaces": " " * 99_999 + "<",
    "escapes": '"\\' * 50_000,
    "lines": "334" + "\n" * 99_997,
}
# The four at once, 25 KB each, for the walk of every form field (a request per field, not four).
MIXED = ',"' * 12_500 + " " * 24_999 + "<" + '"\\' * 12_500 + "334" + "\n" * 24_997


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


def test_security_38_a_nul_in_any_field_of_any_form_is_a_field_error_never_a_500(app, admin):
    """PostgreSQL refuses NUL in text, so a NUL reaching a query (a name looked up, a search) was a 500 there: every
    form refuses it beside the field (webapp.forms.Form), on either engine, and a GET filter just ignores it."""
    world()
    walks = every_form_of_everyone(app, admin)
    tried = set()
    for client, form, name, kind in text_fields(walks):
        before = snapshot()
        response = form.send(client, form.data(lambda _kind, field: "ops\x00team@example.com"
                                               if field == name else None))
        if form.method == "get":
            assert response.status_code == 200, (form.action, name, response.status_code)
            continue
        assert response.status_code in (422, 429), (form.action, name, response.status_code)
        if response.status_code == 422 and kind not in ("hidden", "select"):  # a browser sends only an option
            assert field_error(response, name), (form.action, name)
        assert snapshot() == before, (form.action, name)
        tried.add((form.action.split("?")[0], name))
    assert {("/accounts/new", "name"), ("/auth/login", "username"), ("/auth/login", "password"),
            ("/credentials/new", "description"), ("/settings/", "footer_text")} <= tried


def test_security_38_the_account_form_refuses_a_sender_named_with_a_line_separator(admin):
    from tests.support.factories import account_form
    from webapp.models import SmtpAccount

    response = admin.post("/accounts/new", data=account_form(sender="Ops\u2028Team <ops@example.com>"))
    assert response.status_code == 422
    assert field_error(response, "sender") == "Line breaks and control characters are not allowed here."
    assert SmtpAccount.select().count() == 0


# --- 39: linear parsers -------------------------------------------------------------------------------------------


def answered_at_once(call):
    started = time.perf_counter()
    result = call()
    elapsed = time.perf_counter() - started
    assert elapsed < PROMPT, f"{elapsed:.1f} s"
    return result


def test_security_39_100_kb_of_adversarial_text_in_any_form_field_is_answered_at_once(app, admin):
    world()
    walks = every_form_of_everyone(app, admin)
    tried = set()
    for client, form, name, kind in text_fields(walks):
        data = form.data(lambda _kind, field: MIXED if field == name else None)
        response = answered_at_once(lambda: form.send(client, data))
        assert response.status_code != 500
        if form.method == "post" and kind != "hidden":
            assert response.status_code in (200, 303, 422, 429), (form.action, name, response.status_code)
        tried.add((form.action.split("?")[0], name))
    assert {("/schedules/new", "recipients"), ("/accounts/1/test", "to"), ("/credentials/new", "allowed_hosts"),
            ("/deliveries/", "recipient"), ("/auth/login", "username")} <= tried
    response = admin.post("/schedules/new", data={"recipients": ADVERSARIAL["quotes"], "frequency": "daily",
                                                  "first_run": "2099-01-01T07:00", "filters": ""})
    assert response.status_code == 422 and field_error(response, "recipients") == "At most 50 recipients."


def test_security_39_100_kb_of_adversarial_text_in_any_api_field_is_answered_at_once(client, token):
    from webapp.api.routes import FIELDS

    body = {"to": "ana@example.com", "subject": "Invoice", "text": "Ready."}
    for name in FIELDS:
        for text in ADVERSARIAL.values():
            response = answered_at_once(lambda: client.post(API, data=json.dumps({**body, name: text}),
                                                            content_type="application/json",
                                                            headers=bearer(token), csrf=False))
            assert response.status_code in (202, 400), (name, response.status_code)
            if response.status_code == 400:
                assert set(response.get_json()["fields"]) == {name}
        # A list of the longest addresses that are not quite addresses, for every address field.
        if name in ("to", "cc", "bcc"):
            worst = [" " * 159 + "<" + " " * 159] * 100
            response = answered_at_once(lambda: client.post(API, json={**body, name: worst}, headers=bearer(token),
                                                            csrf=False))
            assert response.status_code == 400


def test_security_39_the_address_and_list_parsers_are_linear():
    # Display names: 320 characters of spaces around "<" took 40-70 ms each (cubic back-tracking); 1,000 of them
    # would take a minute.
    for value in (" " * 159 + "<" + " " * 160, " " * 319 + "x", '"' + "\\" * 318 + "x", "a " * 160):
        answered_at_once(lambda: [_refused(check_address, value) for _ in range(1000)])
    for text in ADVERSARIAL.values():
        answered_at_once(lambda: split_recipients(text))
        answered_at_once(lambda: _refused(parse_networks, text))
        answered_at_once(lambda: logs.scrub(text))
    # Still the same lists.
    assert split_recipients('"Silva, Ana" <ana@example.com>; bob@example.com\r\n"Open <x@example.com>, c@d.e') == [
        '"Silva, Ana" <ana@example.com>', "bob@example.com", '"Open <x@example.com>, c@d.e']


def _refused(parse, value):
    try:
        parse(value)
    except ValueError:
        return True
    return False
