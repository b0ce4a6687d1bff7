"""send_notification(): stored before any network work, validated per field, idempotent, account resolution."""
import json
import socket
import time

import pytest

from tests.support.factories import make_account
from webapp.models import DeliveryAttempt, Notification
from webapp.outbox import IdempotencyConflict, NoDefaultAccount, NotificationError, send_notification


def notify(**overrides) -> int:
    fields = dict(to=["ana@example.org"], subject="Disk almost full", text="91% used.")
    fields.update(overrides)
    return send_notification(**fields)


def errors_of(**overrides) -> dict:
    with pytest.raises(NotificationError) as caught:
        notify(**overrides)
    return dict(caught.value.field_errors)  # English, as the API and the CLI show them


def test_the_notification_is_stored_and_its_id_returned_without_any_network_work(app, monkeypatch, closed_port):
    account = make_account(is_default=True, host="127.0.0.1", port=closed_port)

    def no_network(*args, **kwargs):
        raise AssertionError("send_notification must not open a socket")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    started = time.monotonic()
    notification_id = notify(to=["Ana <ana@example.org>", "bia@example.org"], cc="carl@example.org",
                             bcc=["dora@example.org"], html="<p>91% used.</p>", created_by="billing")
    assert time.monotonic() - started < 1
    notification = Notification.get_by_id(notification_id)
    assert notification.status == "queued"
    assert notification.account_id == account.id
    assert notification.to_list == ["Ana <ana@example.org>", "bia@example.org"]
    assert notification.cc_list == ["carl@example.org"]
    assert notification.bcc_list == ["dora@example.org"]
    assert (notification.subject, notification.body_text, notification.body_html) == (
        "Disk almost full", "91% used.", "<p>91% used.</p>")
    assert notification.message_id.endswith("@example.com>")  # the account's sender domain
    assert (notification.source, notification.created_by, notification.attempts) == ("python", "billing", 0)
    assert notification.next_attempt_at <= notification.created_at
    assert not DeliveryAttempt.select().exists()


def test_no_account_and_no_default_raises_no_default_account(app):
    make_account(is_default=False)
    with pytest.raises(NoDefaultAccount):
        notify()
    assert not Notification.select().exists()


def test_an_explicit_account_by_object_id_or_name(app):
    make_account(is_default=True)
    other = make_account(name="billing")
    assert Notification.get_by_id(notify(account=other)).account_id == other.id
    assert Notification.get_by_id(notify(account=other.id)).account_id == other.id
    assert Notification.get_by_id(notify(account="billing")).account_id == other.id


def test_an_unknown_or_disabled_account_is_a_field_error(app):
    disabled = make_account(enabled=False)
    assert errors_of(account="nope") == {"account": "No SMTP account has this name or id."}
    assert errors_of(account=disabled) == {"account": "This SMTP account is disabled."}


def test_every_bad_field_gets_its_own_message(app):
    make_account(is_default=True)
    errors = errors_of(to=[], cc=["a@b@c"], bcc=["a, b"], subject=" ", text="", reply_to="to@",
                       return_path="@", confirmation_email="x <y>", source="fax")
    assert set(errors) == {"to", "cc", "bcc", "subject", "text", "reply_to", "return_path", "confirmation_email",
                           "source"}
    assert errors["to"] == "Give at least one recipient."
    assert errors["subject"] == "This field is required."
    assert "valid e-mail address" in errors["cc"]
    assert not Notification.select().exists()


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: victim@example.com", "Hi\nX-Injected: 1", "Hi\x00"])
def test_security_19_line_breaks_in_the_subject_are_refused(app, subject):
    make_account(is_default=True)
    assert errors_of(subject=subject) == {"subject": "Line breaks and control characters are not allowed here."}


@pytest.mark.parametrize("field", ["to", "cc", "bcc", "reply_to", "return_path", "confirmation_email"])
def test_security_19_line_breaks_in_names_and_addresses_are_refused(app, field):
    make_account(is_default=True)
    value = "Ana\r\nBcc: victim@example.com <ana@example.org>"
    assert field in errors_of(**{field: [value] if field in ("to", "cc", "bcc") else value})


def test_security_23_too_many_recipients_or_an_overlong_subject_are_clear_errors(app):
    make_account(is_default=True)
    many = [f"user{i}@example.org" for i in range(101)]
    assert errors_of(to=many)["to"] == "Send to at most 100 recipients (to, cc and bcc together)."
    assert errors_of(to=many[:60], bcc=many[60:])["to"].startswith("Send to at most 100")
    assert errors_of(subject="x" * 1_000_000) == {"subject": "Use at most 998 characters."}


def test_internationalised_addresses_are_accepted(app):
    make_account(is_default=True)
    notification = Notification.get_by_id(notify(to=["José <jose@bücher.example>"]))
    assert notification.to_list == ["José <jose@bücher.example>"]


def test_overrides_are_stored_and_flagged_as_ignored_when_the_account_forces_its_settings(app):
    forcing = make_account(is_default=True, force_settings=True)
    free = make_account()
    kept = Notification.get_by_id(notify(account=forcing, reply_to="o@example.com"))
    assert kept.reply_to == "o@example.com" and kept.overrides_ignored
    honoured = Notification.get_by_id(notify(account=free, reply_to="o@example.com"))
    assert honoured.reply_to == "o@example.com" and not honoured.overrides_ignored
    plain = Notification.get_by_id(notify(account=forcing))
    assert not plain.overrides_ignored


def test_the_same_idempotency_key_and_payload_returns_the_first_notification(app):
    make_account(is_default=True)
    first = notify(idempotency_key="order-42")
    assert notify(idempotency_key="order-42") == first
    assert Notification.select().count() == 1


def test_the_same_idempotency_key_with_another_payload_is_a_conflict(app):
    make_account(is_default=True)
    first = notify(idempotency_key="order-42")
    with pytest.raises(IdempotencyConflict) as caught:
        notify(idempotency_key="order-42", text="something else")
    assert caught.value.existing_id == first
    assert Notification.select().count() == 1


def test_attachments_are_stored_for_the_worker(app):
    make_account(is_default=True)
    notification = Notification.get_by_id(notify(attachments=[("accounts.csv", "text/csv", b"a;b\r\n")]))
    stored = json.loads(notification.attachments)
    assert stored == [{"filename": "accounts.csv", "mimetype": "text/csv", "data": "YTtiDQo="}]
    assert "attachments" in errors_of(attachments=[("x.csv", "csv", b"")])


def test_send_notification_opens_and_closes_its_own_connection_when_none_is_open(app):
    from webapp.db import database

    make_account(is_default=True)
    database.close()
    notification_id = notify()
    assert database.is_closed()  # opened for the call and closed again
    database.connect()
    assert Notification.get_by_id(notification_id).status == "queued"


def test_an_account_deleted_while_its_notification_is_queued_is_a_field_error(app, monkeypatch):
    """Deleted by an admin between reading the account and storing the notification: refused as an unknown
    account, like a name that never existed, not an internal error."""
    from webapp.outbox import enqueue

    account = make_account(name="Short-lived", is_default=True)
    resolve = enqueue._resolve_account

    def resolve_then_delete(named):
        found = resolve(named)
        account.delete_instance()
        return found

    monkeypatch.setattr(enqueue, "_resolve_account", resolve_then_delete)
    assert errors_of(account="Short-lived") == {"account": "No SMTP account has this name or id."}
    assert not Notification.select().exists()
