"""The HTTP API: POST /api/v1/notifications queues, GET /api/v1/notifications/<id> follows; bearer tokens only.

Every status the API answers with (202, 200, 400 per field, 401, 404, 405, 409, 413, 415, 503), always as JSON,
never a login redirect, never the session cookie, and no CSRF token needed for a bearer call.
"""
import json

import pytest

from tests.support.factories import QueryCounter, make_account
from webapp.models import ApiToken, AuditEntry, DeliveryAttempt, Notification, utcnow

URL = "/api/v1/notifications"


@pytest.fixture
def account(app):
    return make_account(name="Main", is_default=True)


@pytest.fixture
def token(app, admin):
    _row, clear = ApiToken.issue("billing service", created_by=admin.user)
    return clear


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def post(client, body, token, **kwargs):
    """A bearer-authenticated POST, without a CSRF token (the API needs none)."""
    headers = {**bearer(token), **kwargs.pop("headers", {})}
    return client.post(URL, json=body, headers=headers, csrf=False, **kwargs)


def message(**overrides) -> dict:
    return {"to": "ana@example.com", "subject": "Invoice 42", "text": "Your invoice is ready.", **overrides}


# --- Queueing --------------------------------------------------------------------------------------------------


def test_queueing_is_the_same_four_statements_whatever_the_message(client, account, token):
    """The token, the account, the insert, then the answer's notification (no attempts yet: none read); none per
    field."""
    post(client, message(), token)  # the token's first use is recorded (then at most once a minute)
    with QueryCounter() as short:
        assert post(client, message(), token).status_code == 202
    with QueryCounter() as long:
        assert post(client, message(to=[f"p{n}@example.com" for n in range(30)], cc="cc@example.com",
                                    html="<p>Hi</p>", account="Main", reply_to="r@example.com"),
                    token).status_code == 202
    assert short.count == long.count == 4


def test_a_notification_is_queued_with_202_its_id_status_and_url(client, account, token):
    response = post(client, message(cc=["Cc Person <cc@example.com>"], bcc="hidden@example.com",
                                    html="<p>Ready</p>"), token)
    assert response.status_code == 202
    body = response.get_json()
    notification = Notification.get_by_id(body["id"])
    assert body["status"] == "queued"
    assert body["url"] == f"http://localhost{URL}/{notification.id}"
    assert response.headers["Location"].endswith(f"{URL}/{notification.id}")
    assert body["account"] == {"id": account.id, "name": "Main"}
    assert (notification.to_list, notification.cc_list, notification.bcc_list) == (
        ["ana@example.com"], ["Cc Person <cc@example.com>"], ["hidden@example.com"])
    assert (notification.subject, notification.body_text, notification.body_html) == (
        "Invoice 42", "Your invoice is ready.", "<p>Ready</p>")
    assert (notification.source, notification.created_by) == ("api", "billing service")
    assert response.headers["Cache-Control"] == "no-store"


def test_several_recipients_an_account_by_name_or_id_and_overrides(client, account, token):
    other = make_account(name="Marketing")
    by_name = post(client, message(to=["a@example.com", "b@example.com"], account="Marketing",
                                   reply_to="help@example.com"), token)
    by_id = post(client, message(account=other.id), token)
    assert by_name.status_code == by_id.status_code == 202
    first = Notification.get_by_id(by_name.get_json()["id"])
    assert first.account_id == other.id and first.to_list == ["a@example.com", "b@example.com"]
    assert first.reply_to == "help@example.com" and not first.overrides_ignored
    assert Notification.get_by_id(by_id.get_json()["id"]).account_id == other.id


def test_overrides_are_recorded_as_ignored_when_the_account_forces_its_settings(client, app, token):
    make_account(name="Strict", is_default=True, force_settings=True)
    response = post(client, message(reply_to="other@example.com"), token)
    assert response.status_code == 202
    assert response.get_json()["overrides_ignored"] is True


# --- Following a notification ----------------------------------------------------------------------------------


def test_get_shows_status_attempts_last_reply_and_timestamps(client, account, token):
    notification_id = post(client, message(), token).get_json()["id"]
    started = utcnow()
    DeliveryAttempt.create(notification=notification_id, started_at=started, duration_ms=120, ok=False, code=451,
                           reply="451 4.3.0 try later", step="data", transient=True, worker="w1")
    Notification.update(status="retrying", attempts=1, last_code=451, last_reply="451 4.3.0 try later",
                        last_step="data").where(Notification.id == notification_id).execute()

    response = client.get(f"{URL}/{notification_id}", headers=bearer(token))
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "retrying" and body["attempts"] == 1
    assert body["last_reply"] == {"code": 451, "text": "451 4.3.0 try later", "step": "data"}
    assert body["history"] == [{"started_at": started.isoformat(timespec="seconds") + "Z", "duration_ms": 120,
                                "ok": False, "code": 451, "reply": "451 4.3.0 try later", "step": "data",
                                "transient": True}]
    assert body["created_at"].endswith("Z") and body["next_attempt_at"].endswith("Z")
    assert body["sent_at"] is None
    assert body["message_id"].startswith("<") and body["message_id"].endswith("@example.com>")


def test_an_unknown_notification_is_404_json(client, account, token):
    response = client.get(f"{URL}/999", headers=bearer(token))
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


# --- 400: per-field messages, in English whatever the UI language ------------------------------------------------


@pytest.mark.parametrize("body,fields", [
    ({"subject": "x", "text": "y"}, {"to"}),
    (message(to="not an address"), {"to"}),
    (message(to=["ok@example.com", "a@b@c"]), {"to"}),
    (message(cc=["x@"]), {"cc"}),
    (message(to=42), {"to"}),
    (message(to={"address": "a@example.com"}), {"to"}),
    (message(subject=""), {"subject"}),
    (message(subject="Hi\r\nBcc: victim@example.com"), {"subject"}),
    (message(text=None), {"text"}),
    (message(text=["a", "b"]), {"text"}),
    (message(reply_to="a <b>"), {"reply_to"}),
    (message(return_path="bounces@example.com\r\nBcc: victim@example.com"), {"return_path"}),
    (message(account="No such account"), {"account"}),
    (message(account=True), {"account"}),
    (message(recipients=["a@example.com"]), {"recipients"}),
    (message(idempotency_key="k" * 256), {"idempotency_key"}),
    # PostgreSQL's text holds no NUL: each field that reaches the database refuses it before a query sees it.
    (message(to="ana\x00@example.com"), {"to"}),
    (message(subject="Invoice\x0042"), {"subject"}),
    (message(text="ready\x00"), {"text"}),
    (message(html="<p>\x00</p>"), {"html"}),
    (message(account="Main\x00"), {"account"}),
    (message(idempotency_key="k\x00"), {"idempotency_key"}),
])
def test_invalid_fields_get_400_with_a_message_for_each(client, account, token, body, fields):
    response = post(client, body, token)
    assert response.status_code == 400, response.get_json()
    answer = response.get_json()
    assert answer["error"] == "invalid_fields"
    assert set(answer["fields"]) == fields
    assert all(isinstance(text, str) and text for text in answer["fields"].values())
    assert Notification.select().count() == 0


def test_field_messages_are_english_even_for_a_portuguese_browser(client, account, token):
    client.use_language("pt_BR")
    response = post(client, message(to="not an address", subject=""), token)
    assert response.get_json()["fields"] == {
        "to": "Enter a valid e-mail address, such as ops@example.com or Ops <ops@example.com>.",
        "subject": "This field is required.",
    }


def test_a_disabled_account_is_refused_by_name(client, account, token):
    make_account(name="Old", enabled=False)
    response = post(client, message(account="Old"), token)
    assert response.status_code == 400
    assert response.get_json()["fields"] == {"account": "This SMTP account is disabled."}


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b'"text"', b""])
def test_a_body_that_is_not_a_json_object_is_400(client, account, token, data):
    response = client.post(URL, data=data, content_type="application/json", headers=bearer(token), csrf=False)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_json"


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", None])
def test_a_body_that_is_not_json_is_415(client, account, token, content_type):
    response = client.post(URL, data=json.dumps(message()), content_type=content_type, headers=bearer(token),
                           csrf=False)
    assert response.status_code == 415
    assert response.get_json()["error"] == "unsupported_media_type"
    assert Notification.select().count() == 0


def test_an_oversized_body_is_413_before_anything_is_stored(client, app, account, token):
    text = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    response = post(client, message(text=text), token)
    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"
    assert Notification.select().count() == 0


# --- 401: tokens, and nothing else --------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": ""},
    {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer smtpdesk_not-a-real-token"},
])
def test_calls_without_a_valid_token_get_401_json_never_a_login_redirect(client, account, headers):
    for response in (client.post(URL, json=message(), headers=headers, csrf=False),
                     client.get(f"{URL}/1", headers=headers),
                     client.get(f"{URL}/1", headers={**headers, "HX-Request": "true"})):
        assert response.status_code == 401
        assert response.is_json and response.get_json()["error"] in ("unauthorized", "invalid_token")
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="smtpdesk"')
        assert "Location" not in response.headers and "HX-Redirect" not in response.headers
    assert Notification.select().count() == 0


def test_an_unknown_token_says_invalid_token_in_www_authenticate(client, account):
    response = client.get(f"{URL}/1", headers=bearer("smtpdesk_wrong"))
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="smtpdesk", error="invalid_token"'


def test_a_revoked_token_is_refused_at_once(client, account, admin):
    row, clear = ApiToken.issue("old integration", created_by=admin.user)
    assert post(client, message(), clear).status_code == 202
    row.revoked_at = utcnow()
    row.save()
    response = post(client, message(subject="After revocation"), clear)
    assert response.status_code == 401
    assert response.get_json()["message"] == "This API token is unknown or was revoked."
    assert Notification.select().count() == 1


def test_a_signed_in_browser_session_does_not_authenticate_the_api(admin, account):
    """The session cookie (and even a valid CSRF token) is not an API credential: only a bearer token is."""
    response = admin.post(URL, json=message())  # the test client adds the CSRF header
    assert response.status_code == 401
    assert admin.get(f"{URL}/1").status_code == 401
    assert Notification.select().count() == 0


def test_a_bearer_call_needs_no_csrf_token_even_with_a_session_cookie(admin, account, token):
    response = admin.post(URL, json=message(), headers=bearer(token), csrf=False)
    assert response.status_code == 202


def test_the_token_records_when_it_was_last_used(client, account, token):
    row = ApiToken.get(ApiToken.name == "billing service")
    assert row.last_used_at is None
    post(client, message(), token)
    assert ApiToken.get_by_id(row.id).last_used_at is not None


def test_api_calls_write_no_audit_entries(client, account, token):
    before = AuditEntry.select().count()
    post(client, message(), token)
    assert AuditEntry.select().count() == before


# --- Idempotency ------------------------------------------------------------------------------------------------


def test_a_repeated_idempotency_key_with_the_same_payload_returns_the_first_notification_with_200(
        client, account, token):
    first = post(client, message(idempotency_key="invoice-42"), token)
    again = post(client, message(idempotency_key="invoice-42"), token)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.get_json()["id"] == first.get_json()["id"]
    assert Notification.select().count() == 1


def test_the_idempotency_key_may_come_as_a_header(client, account, token):
    first = post(client, message(), token, headers={"Idempotency-Key": "invoice-43"})
    again = post(client, message(idempotency_key="invoice-43"), token)
    assert (first.status_code, again.status_code) == (202, 200)
    assert Notification.get_by_id(first.get_json()["id"]).idempotency_key == "invoice-43"


def test_a_header_and_a_field_with_different_keys_are_400(client, account, token):
    response = post(client, message(idempotency_key="a"), token, headers={"Idempotency-Key": "b"})
    assert response.status_code == 400
    assert set(response.get_json()["fields"]) == {"idempotency_key"}


def test_a_repeated_idempotency_key_with_another_payload_is_409(client, account, token):
    post(client, message(idempotency_key="invoice-44"), token)
    response = post(client, message(idempotency_key="invoice-44", subject="Something else"), token)
    assert response.status_code == 409
    assert response.get_json()["error"] == "idempotency_conflict"
    assert Notification.select().count() == 1


# --- 503 and the JSON answers for the rest -------------------------------------------------------------------------


def test_without_an_enabled_default_account_it_is_503_unless_an_account_is_named(client, app, token):
    named = make_account(name="Named")  # enabled, not the default: there is none
    response = post(client, message(), token)
    assert response.status_code == 503
    assert response.get_json()["error"] == "no_default_account"
    assert Notification.select().count() == 0
    assert post(client, message(account="Named"), token).status_code == 202
    assert Notification.get().account_id == named.id


def test_unknown_api_addresses_and_methods_answer_json(client, account, token):
    missing = client.get("/api/v1/nothing-here", headers=bearer(token))
    assert missing.status_code == 404 and missing.get_json()["error"] == "not_found"
    wrong = client.delete(f"{URL}/1", headers=bearer(token), csrf=False)
    assert wrong.status_code == 405 and wrong.get_json()["error"] == "method_not_allowed"
    assert "GET" in wrong.headers["Allow"]
    listing = client.get(URL, headers=bearer(token))
    assert listing.status_code == 405 and listing.is_json
