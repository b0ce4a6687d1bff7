"""The worker against real aiosmtpd servers: headers and envelope by the account's rules, one connection for many
messages, retries and failures by reply code (SECURITY 16, 17, 21), reconnection, leases, limits, graceful stop."""
import base64
import logging
import threading
import time
from datetime import timedelta

import pytest

from tests.support.factories import make_account, make_credential, summary_of
from tests.support.outbox import (
    FAST,
    account_for,
    drain,
    fast_worker,
    hold_data,
    hold_quit,
    message_ids,
    statuses,
    vanish_after_dot,
)
from webapp.models import DeliveryAttempt, Notification, Setting, SmtpAccount, utcnow
from webapp.outbox import FOOTER_SETTING, OutboxSettings, Worker, claim, retry_notification, send_notification
from webapp.outbox.message import reply_words

FOOTER = "Sent by the monitoring system.\nDo not reply."
OVERRIDES = dict(reply_to="o-reply@example.net", return_path="o-bounces@example.net",
                 confirmation_email="o-receipts@example.net")


def notify(**overrides) -> Notification:
    fields = dict(to=["ana@example.org"], subject="Disk almost full", text="91% used.")
    fields.update(overrides)
    return Notification.get_by_id(send_notification(**fields))


def reload(notification) -> Notification:
    return Notification.get_by_id(notification.id)


def attempts_of(notification) -> list[DeliveryAttempt]:
    return list(DeliveryAttempt.select().where(DeliveryAttempt.notification == notification.id)
                .order_by(DeliveryAttempt.id))


def body_of(part) -> str:
    return part.get_content().replace("\r\n", "\n")


# --- Headers and envelope by the account's rules -----------------------------------------------------------------


@pytest.mark.parametrize("read_confirmation", [True, False], ids=["receipt", "no-receipt"])
@pytest.mark.parametrize("footer_enabled", [True, False], ids=["footer", "no-footer"])
@pytest.mark.parametrize("force_settings", [True, False], ids=["forced", "free"])
def test_headers_and_envelope_for_every_combination(app, smtp_server, read_confirmation, footer_enabled,
                                                    force_settings):
    server = smtp_server()
    Setting.set_value(FOOTER_SETTING, FOOTER)
    account_for(server, sender="Ops <ops@example.com>", reply_to="reply@example.com",
                return_path="bounces@example.com", confirmation_email="receipts@example.com",
                read_confirmation=read_confirmation, footer_enabled=footer_enabled, force_settings=force_settings)
    notification = notify(html="<html><body><p>91% used.</p></body></html>", **OVERRIDES)

    drain()

    [received] = server.received
    message = received.message
    honoured = not force_settings
    assert message["From"] == "Ops <ops@example.com>"
    assert received.mail_from == ("o-bounces@example.net" if honoured else "bounces@example.com")
    assert message["Reply-To"] == ("o-reply@example.net" if honoured else "reply@example.com")
    if read_confirmation:
        assert message["Disposition-Notification-To"] == (
            "o-receipts@example.net" if honoured else "receipts@example.com")
    else:
        assert message["Disposition-Notification-To"] is None
    assert "Return-Path" not in message  # the receiving server writes it from MAIL FROM
    text, html = body_of(message.get_body(("plain",))), body_of(message.get_body(("html",)))
    assert ("Do not reply." in text) == footer_enabled
    assert ("Do not reply." in html) == footer_enabled
    assert text.startswith("91% used.")
    assert message["Message-ID"] == notification.message_id
    notification = reload(notification)
    assert notification.status == "sent"
    assert notification.overrides_ignored == force_settings


def test_overrides_apply_only_to_the_message_that_gives_them(app, smtp_server):
    server = smtp_server()
    account_for(server, reply_to="reply@example.com", return_path="bounces@example.com")
    notify(subject="with", **OVERRIDES)
    notify(subject="without")
    drain()
    by_subject = {r.message["Subject"]: r for r in server.received}
    assert by_subject["with"].mail_from == "o-bounces@example.net"
    assert by_subject["with"].message["Reply-To"] == "o-reply@example.net"
    assert by_subject["without"].mail_from == "bounces@example.com"
    assert by_subject["without"].message["Reply-To"] == "reply@example.com"


def test_bcc_is_in_the_envelope_only_and_cc_in_both(app, smtp_server):
    server = smtp_server()
    account_for(server)
    notification = notify(to=["Ana <ana@example.org>", "José <jose@bücher.example>"], cc=["carl@example.org"],
                          bcc=["secret-auditor@example.org", "ana@example.org"])
    drain()
    [received] = server.received
    assert received.rcpt_tos == ["ana@example.org", "jose@xn--bcher-kva.example", "carl@example.org",
                                 "secret-auditor@example.org"]  # each once, IDN punycoded
    assert b"secret-auditor" not in received.content
    assert "Bcc" not in received.message
    assert received.message["Cc"] == "carl@example.org"
    assert [a.addr_spec for a in received.message["To"].addresses] == ["ana@example.org",
                                                                        "jose@xn--bcher-kva.example"]
    assert "secret-auditor" not in reload(notification).headers_sent


def test_the_headers_sent_are_recorded_exactly(app, smtp_server):
    server = smtp_server()
    account_for(server)
    notification = notify(subject="Relatório — ação", html="<p>multipart: its boundary is in the headers</p>")
    drain()
    headers = reload(notification).headers_sent
    assert 'boundary="=_smtpdesk_' in headers
    assert server.received[0].content.replace(b"\r\n", b"\n").startswith(headers.replace("\r\n", "\n").encode())
    assert "Subject: =?utf-8?" in headers


def test_security_21_dot_lines_and_bare_line_feeds_are_delivered_intact(app, smtp_server):
    server = smtp_server()
    account_for(server)
    text = "first\n.\nsecond\n.\r\nthird\n..\nfourth\r\n.\r\nlast"
    notify(text=text, html="<p>\n.\n</p>")
    drain()
    [received] = server.received
    assert b"\n." not in received.content.replace(b"\r\n", b"") and b"\r." not in received.content.replace(
        b"\r\n", b"")  # no bare CR or LF anywhere
    message = received.message
    assert body_of(message.get_body(("plain",))) == "first\n.\nsecond\n.\nthird\n..\nfourth\n.\nlast\n"
    assert body_of(message.get_body(("html",))) == "<p>\n.\n</p>\n"


# --- One connection, many messages --------------------------------------------------------------------------------


def test_one_connection_carries_a_whole_batch(app, smtp_server):
    server = smtp_server()
    account_for(server)
    for n in range(20):
        notify(subject=f"n{n}")
    drain()
    assert server.connections == 1
    assert statuses() == {"sent": 20}
    assert DeliveryAttempt.select().where(DeliveryAttempt.ok == True).count() == 20  # noqa: E712


def test_accounts_get_their_own_connections_in_the_same_batch(app, smtp_server):
    first, second = smtp_server(), smtp_server()
    account_for(first)
    other = account_for(second, is_default=False, name="second")
    for n in range(5):
        notify(subject=f"a{n}")
        notify(subject=f"b{n}", account=other)
    drain()
    assert (len(first.received), len(second.received)) == (5, 5)
    assert (first.connections, second.connections) == (1, 1)


def test_starttls_with_authentication_delivers(app, smtp_server, certificates):
    users = {"mailer@example.com": "Sm7p-s3cret"}
    server = smtp_server("starttls", users=users)
    account_for(server, certificates, users=users)
    notify()
    drain()
    assert len(server.received) == 1
    assert server.handler.logins == [("PLAIN", "mailer@example.com")]


def test_reconnects_when_the_server_drops_the_session_mid_batch(app, smtp_server):
    server = smtp_server()
    handler = server.handler
    original_mail, original_data = handler.handle_MAIL, handler.handle_DATA

    async def handle_DATA(smtp, session, envelope):
        reply = await original_data(smtp, session, envelope)
        if len(handler.received) % 2 == 0:
            session.drop_next = True  # after every second message, this connection dies at the next MAIL
        return reply

    async def handle_MAIL(smtp, session, envelope, address, options):
        if getattr(session, "drop_next", False):
            smtp.transport.abort()
            return "421 4.4.2 gone"
        return await original_mail(smtp, session, envelope, address, options)

    handler.handle_MAIL, handler.handle_DATA = handle_MAIL, handle_DATA
    account_for(server)
    sent = [notify(subject=f"n{n}") for n in range(6)]

    worker = fast_worker()
    assert worker.run_once() == 6  # the whole batch in one go: every drop is healed by a reconnection
    worker.close()

    assert statuses() == {"sent": 6}
    assert sorted(message_ids(server).values()) == [1] * 6
    assert server.connections == 3
    dropped = [a for n in sent for a in attempts_of(n) if not a.ok]
    assert len(dropped) == 2 and all(a.transient and a.step == "connection_lost" for a in dropped)
    # Both tries of a reconnected message are recorded in the same transaction, and both count.
    assert [Notification.get_by_id(n.id).attempts for n in sent] == [len(attempts_of(n)) for n in sent]


# --- Retries and failures by reply --------------------------------------------------------------------------------


def test_retry_on_451_then_success_with_the_same_message_id(app, smtp_server):
    server = smtp_server(replies={"DATA": "451 4.3.0 try again later"})
    account_for(server)
    notification = notify()
    worker = fast_worker(backoff_base_seconds=60, backoff_max_seconds=60)
    worker.run_once()
    notification = reload(notification)
    assert notification.status == "retrying"
    assert (notification.last_code, notification.last_step) == (451, "data")
    assert notification.next_attempt_at > utcnow() + timedelta(seconds=25)  # 60 s with half of it jittered
    assert worker.run_once() == 0  # not due yet

    server.handler.replies.clear()
    Notification.update(next_attempt_at=utcnow()).execute()
    worker.run_once()
    worker.close()

    notification = reload(notification)
    assert notification.status == "sent" and notification.attempts == 2
    assert [(a.ok, a.code, a.transient) for a in attempts_of(notification)] == [(False, 451, True),
                                                                                 (True, 250, False)]
    [received] = server.received
    assert received.message["Message-ID"] == notification.message_id


def test_stop_on_550(app, smtp_server):
    server = smtp_server(replies={"RCPT": "550 5.1.1 no such user"})
    account_for(server)
    notification = notify()
    drain()
    notification = reload(notification)
    assert notification.status == "failed"
    assert notification.attempts == 1
    assert notification.last_code == 550 and "no such user" in reply_words(notification.last_reply)
    assert notification.last_step == "recipient"
    assert server.received == []


def test_an_unexpected_fault_counts_a_transient_attempt_instead_of_spinning(app, smtp_server, monkeypatch):
    server = smtp_server()
    account_for(server)
    first, second = notify(subject="first"), notify(subject="second")

    def broken(*args, **kwargs):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(Worker, "_send", broken)
    worker = fast_worker(backoff_base_seconds=60, backoff_max_seconds=60)
    worker.run_once()
    worker.close()
    first, second = reload(first), reload(second)
    assert first.status == "retrying" and first.attempts == 1 and first.last_step == "internal"
    assert first.next_attempt_at > utcnow()  # backoff applies: no busy loop
    assert attempts_of(first)[0].transient
    assert second.status == "queued" and second.attempts == 0  # put back, untouched
    assert server.received == []


@pytest.mark.parametrize("code", [421, 450, 451, 452])
def test_security_16_transient_replies_are_retried_later(app, smtp_server, code):
    server = smtp_server(replies={"DATA": f"{code} 4.0.0 not now"})
    account_for(server)
    notification = notify()
    worker = fast_worker(backoff_base_seconds=60, backoff_max_seconds=60)
    worker.run_once()
    worker.close()
    notification = reload(notification)
    assert notification.status == "retrying"
    assert notification.last_code == code
    assert notification.next_attempt_at > utcnow()
    assert attempts_of(notification)[0].transient


@pytest.mark.parametrize("code", [550, 553, 554])
def test_security_16_permanent_replies_fail_at_once(app, smtp_server, code):
    server = smtp_server(replies={"DATA": f"{code} 5.0.0 no"})
    account_for(server)
    notification = notify()
    drain()
    notification = reload(notification)
    assert notification.status == "failed" and notification.attempts == 1
    assert notification.last_code == code
    assert not attempts_of(notification)[0].transient


def test_security_16_a_535_fails_and_shows_an_authentication_problem_on_the_account(app, smtp_server, caplog):
    caplog.set_level(logging.DEBUG)
    server = smtp_server(users={"mailer@example.com": "the-right-one"})
    account = account_for(server, users={"mailer@example.com": "a-wrong-one"}, last_test_ok=True)
    batch = [notify(subject=f"n{n}") for n in range(3)]
    drain()
    for notification in map(reload, batch):
        assert notification.status == "failed"
        assert (notification.last_code, notification.last_step) == (535, "auth")
    # One login (one mechanism) on one connection for the whole batch, not one per message: a wrong secret must not
    # get the mailbox locked.
    assert server.connections == 1
    assert [mechanism for mechanism, _ in server.handler.logins] == ["PLAIN"]
    account = SmtpAccount.get_by_id(account.id)
    assert account.last_test_ok is False
    assert summary_of(account).startswith("Delivery failed: authentication: 535")
    assert "a-wrong-one" not in account.last_test_summary
    for attempt in DeliveryAttempt.select():
        assert "a-wrong-one" not in (attempt.reply or "")
    # SECURITY 5 and 8: the worker's log names the failure, never the secret or its AUTH encodings.
    logged = caplog.text
    assert "535" in logged
    for secret in ("a-wrong-one", *(base64.b64encode(raw.encode()).decode() for raw in
                                    ("a-wrong-one", "\0mailer@example.com\0a-wrong-one"))):
        assert secret not in logged


def test_transient_failures_give_up_after_the_maximum_attempts_with_a_reason(app, smtp_server):
    server = smtp_server(replies={"DATA": "451 4.3.0 try again later"})
    account_for(server)
    notification = notify()
    drain(max_attempts=3)
    notification = reload(notification)
    assert notification.status == "failed" and notification.attempts == 3
    assert "Gave up: the attempt limit (3) was reached." in reply_words(notification.last_reply)
    assert "451" in reply_words(notification.last_reply)


def test_transient_failures_give_up_at_the_maximum_age(app, smtp_server):
    server = smtp_server(replies={"DATA": "451 4.3.0 try again later"})
    account_for(server)
    notification = notify()
    Notification.update(created_at=utcnow() - timedelta(days=3)).execute()
    drain()
    notification = reload(notification)
    assert notification.status == "failed" and notification.attempts == 1
    assert "not delivered within" in reply_words(notification.last_reply)


def test_security_17_a_drop_after_the_final_dot_is_retried_with_the_same_message_id(app, smtp_server):
    server = smtp_server()
    vanish_after_dot(server, times=1)
    account_for(server)
    notification = notify()
    drain()
    notification = reload(notification)
    assert notification.status == "sent" and notification.attempts == 2
    first, second = attempts_of(notification)
    assert (first.ok, first.transient, first.step) == (False, True, "connection_lost")
    # The documented duplicate: the server got it twice, with one Message-ID, so mail clients show it once.
    assert message_ids(server) == {notification.message_id: 2}


def test_a_server_that_cannot_be_reached_retries_the_whole_group(app, closed_port):
    account = make_account(is_default=True, host="127.0.0.1", port=closed_port)
    batch = [notify(subject=f"n{n}") for n in range(3)]
    worker = fast_worker(backoff_base_seconds=60, backoff_max_seconds=60)
    worker.run_once()
    worker.close()
    for notification in map(reload, batch):
        assert notification.status == "retrying"
        assert notification.last_step == "connect"
    assert account.id


def test_our_own_refusal_fails_the_group_without_a_connection(app, smtp_server):
    server = smtp_server()
    credential = make_credential(allowed_hosts="smtp.elsewhere.example")
    account_for(server, use_auth=True, credential=credential)
    notification = notify()
    drain()
    notification = reload(notification)
    assert notification.status == "failed" and notification.last_step == "policy"
    assert "may not be sent to" in reply_words(notification.last_reply)
    assert server.connections == 0


def test_an_account_disabled_after_queueing_sends_nothing(app, smtp_server):
    server = smtp_server()
    account = account_for(server, is_default=False)
    notification = notify(account=account)
    SmtpAccount.update(enabled=False).execute()
    drain()
    notification = reload(notification)
    assert notification.status == "failed" and notification.last_step == "policy"
    assert "is disabled" in reply_words(notification.last_reply)
    assert server.connections == 0


def test_a_failed_notification_can_be_retried(app, smtp_server):
    server = smtp_server(replies={"DATA": "554 5.7.1 rejected"})
    account_for(server)
    notification = notify()
    drain()
    server.handler.replies.clear()
    assert retry_notification(notification.id)
    assert not retry_notification(notification.id)  # queued now, not failed
    drain()
    notification = reload(notification)
    assert notification.status == "sent" and notification.attempts == 2
    assert message_ids(server) == {notification.message_id: 1}


# --- Leases, several workers, limits ------------------------------------------------------------------------------


def test_an_expired_lease_comes_back_with_the_lost_attempt_recorded(app, smtp_server):
    server = smtp_server()
    account_for(server)
    notification = notify()
    settings = OutboxSettings(**FAST)
    [claimed] = claim("dead-worker", settings)
    assert claimed.id == notification.id and reload(notification).status == "sending"
    assert claim("other-worker", settings) == []  # leased: nobody else gets it
    Notification.update(lease_until=utcnow() - timedelta(seconds=1)).execute()

    drain()

    notification = reload(notification)
    assert notification.status == "sent" and notification.attempts == 2
    lost = attempts_of(notification)[0]
    assert (lost.step, lost.worker, lost.transient) == ("lease_expired", "dead-worker", True)
    assert len(server.received) == 1


def test_a_lease_near_its_end_is_renewed_and_one_taken_by_another_worker_is_not_sent(app, smtp_server):
    server = smtp_server()
    account_for(server)
    batch = [notify(subject=f"n{n}") for n in range(3)]
    worker = fast_worker()
    claimed = claim(worker.name, worker.settings)
    soon = utcnow() + timedelta(seconds=1)  # less than one deadline and a second left: no message may start
    Notification.update(lease_until=soon).execute()
    for notification in claimed:
        notification.lease_until = soon
    Notification.update(lease_owner="another-worker").where(Notification.id == batch[1].id).execute()

    worker._deliver_group(claimed)  # the claimed batch as run_once() hands it over
    worker.close()

    assert sorted(r.message["Subject"] for r in server.received) == ["n0", "n2"]
    taken = reload(batch[1])
    assert (taken.status, taken.lease_owner, taken.attempts) == ("sending", "another-worker", 0)
    assert [reload(n).status for n in (batch[0], batch[2])] == ["sent", "sent"]


def test_two_workers_in_parallel_never_send_a_notification_twice(app, smtp_server):
    server = smtp_server()
    account_for(server)
    for n in range(150):
        notify(subject=f"n{n}")
    workers = [fast_worker(batch_size=7), fast_worker(batch_size=7)]
    errors = []

    def run(worker):
        try:
            worker.run_until_idle(timeout=30)
        except Exception as error:  # pragma: no cover - shown by the assertion below
            errors.append(error)
        finally:
            worker.close()

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(40)
    assert errors == []
    assert statuses() == {"sent": 150}
    assert len(message_ids(server)) == 150 and set(message_ids(server).values()) == {1}
    by_worker = {a.worker for a in DeliveryAttempt.select()}
    assert by_worker == {w.name for w in workers}  # both took part


def test_max_connections_per_account_holds_across_workers(app, smtp_server):
    server = smtp_server()
    account_for(server, max_connections=1)
    for n in range(4):
        notify(subject=f"n{n}")
    settings = OutboxSettings(**{**FAST, "batch_size": 2})
    assert len(claim("first", settings)) == 2
    assert claim("second", settings) == []  # the account's one connection is taken
    assert len(claim("first", settings)) == 2  # the holder itself may take more


def test_a_claim_passes_over_the_accounts_the_worker_is_busy_with_however_long_their_backlog(app):
    busy, other, third = (make_account(name=name) for name in ("busy", "other", "third"))
    for n in range(6):  # more than a claim looks at (twice the batch) before it searches account by account
        notify(subject=f"busy{n}", account=busy)
    later = [notify(subject=f"other{n}", account=other) for n in range(2)] + [notify(subject="third", account=third)]
    settings = OutboxSettings(**{**FAST, "batch_size": 2})

    assert [n.id for n in claim("w", settings, busy={busy.id})] == [n.id for n in later[:2]]
    assert [n.id for n in claim("w", settings, busy={busy.id, other.id})] == [later[2].id]
    assert claim("w", settings, busy={busy.id, other.id, third.id}) == []


def test_a_claim_takes_as_many_accounts_as_it_is_told(app):
    first, second = make_account(name="first"), make_account(name="second")
    notify(subject="a", account=first)
    notify(subject="b", account=second)
    notify(subject="c", account=first)
    claimed = claim("w", OutboxSettings(**FAST), accounts=1)
    assert [n.subject for n in claimed] == ["a", "c"]


def test_rate_limit_per_account(app, smtp_server):
    server = smtp_server()
    account_for(server, rate_per_minute=3)
    other = account_for(smtp_server(), is_default=False, name="unlimited")
    for n in range(5):
        notify(subject=f"limited{n}")
        notify(subject=f"free{n}", account=other)
    worker = fast_worker()
    worker.run_once()
    assert worker.run_once() == 0  # 3 sent in the last minute; the rest waits
    worker.close()
    assert len(server.received) == 3
    assert Notification.select().where(Notification.status == "sent").count() == 8
    assert Notification.select().where(Notification.status == "queued").count() == 2


def running_worker() -> tuple[Worker, threading.Thread]:
    """A fast worker running on a thread of its own (stop it with worker.stop(), then join the thread)."""
    worker = fast_worker()
    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    return worker, thread


def wait_until(condition, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)


def test_a_graceful_stop_finishes_the_message_in_flight_and_puts_the_rest_back(app, smtp_server):
    server = smtp_server(stall={"DATA": 0.3})
    account_for(server)
    for n in range(6):
        notify(subject=f"n{n}")
    worker, thread = running_worker()
    wait_until(lambda: server.received)
    worker.stop()
    thread.join(5)
    assert not thread.is_alive()
    counts = statuses()
    assert counts["sent"] == len(server.received) >= 1
    assert counts["sent"] + counts["queued"] == 6
    assert Notification.select().where(Notification.lease_owner.is_null(False)).count() == 0


def test_a_stop_after_the_next_envelope_went_out_puts_that_message_back_unsent(app, smtp_server):
    # The worker sends each message's final dot with the next message's MAIL, RCPT and DATA (PIPELINING). A stop
    # asked while it waits for the dot's reply: that next message's content never goes, the connection is
    # dropped (no QUIT read as its content), and it is delivered once, later.
    server = smtp_server(pipelining=True, stall={"DATA": 0.5})
    account_for(server)
    for n in range(4):
        notify(subject=f"n{n}")
    worker, thread = running_worker()
    wait_until(lambda: True in server.handler.data_with_more_buffered)
    announced = server.handler.data_with_more_buffered.index(True) + 1  # n{announced}'s envelope went out
    try:
        assert announced < 4  # (the first of a group goes alone when the next is not composed yet)
    finally:
        worker.stop()
        thread.join(5)
    assert not thread.is_alive()
    assert [r.message["Subject"] for r in server.received] == [f"n{n}" for n in range(announced)]
    assert statuses() == {"sent": announced, "queued": 4 - announced}
    assert "QUIT" not in server.handler.commands

    server.handler.stall.clear()
    drain()
    assert [r.message["Subject"] for r in server.received] == ["n0", "n1", "n2", "n3"]
    assert set(message_ids(server).values()) == {1}


# --- One account never holds up another -------------------------------------------------------------------------

# A message may wait this long for its reply: far beyond the bounds below, so a relay the test holds stays stuck.
PATIENT = dict(smtp_timeout=20, smtp_deadline=30, lease_seconds=62)


def test_security_36_a_stuck_relay_does_not_delay_another_accounts_notifications(app, smtp_server):
    stuck_server, healthy_server = smtp_server(), smtp_server()
    held = hold_data(stuck_server)
    account_for(stuck_server)
    healthy = account_for(healthy_server, is_default=False, name="healthy")
    stuck = notify(subject="to the stuck relay")
    worker = fast_worker(**PATIENT)
    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    try:
        wait_until(lambda: held.waiting == 1)  # its content went over; the relay keeps it waiting for the reply
        sent = [notify(subject=f"healthy {n}", account=healthy) for n in range(5)]
        wait_until(lambda: len(healthy_server.received) == 5, timeout=15)  # generous: "does not wait", not speed

        assert [r.message["Subject"] for r in healthy_server.received] == [f"healthy {n}" for n in range(5)]
        # The relay has them; the worker records outcomes a moment after the relay's 250.
        wait_until(lambda: {reload(n).status for n in sent} == {"sent"}, timeout=15)
        assert held.waiting == 1 and stuck_server.received == [] and reload(stuck).status == "sending"
    finally:
        held.release()
        wait_until(lambda: stuck_server.received)
        worker.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert statuses() == {"sent": 6}


@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelined"])
def test_security_36_a_relay_stalling_mid_transaction_gets_one_try_and_the_rest_back_in_the_queue(app, smtp_server,
                                                                                                 pipelining):
    # MAIL and RCPT accepted, then no answer after the message: one timeout, and the lane is free again; the
    # notifications never tried go back untried, due after the same backoff, instead of a timeout each.
    stuck_server, other_server = smtp_server(pipelining=pipelining), smtp_server()
    held = hold_data(stuck_server)
    account_for(stuck_server)
    other = account_for(other_server, is_default=False, name="other")
    stuck = [notify(subject=f"stuck {n}") for n in range(4)]
    waiting = notify(subject="other", account=other)
    worker = fast_worker(concurrency=1, backoff_base_seconds=60, backoff_max_seconds=60)
    try:
        assert worker.run_once() == 4  # the one lane takes the stuck relay's group (the oldest)
        assert stuck_server.commands.count("DATA") == 1
        first, *rest = map(reload, stuck)
        # The message in flight may have been taken: retried later, with the same Message-ID.
        assert (first.status, first.attempts, first.last_step) == ("retrying", 1, "timeout")
        assert [(n.status, n.attempts, n.lease_owner) for n in rest] == [("queued", 0, None)] * 3
        assert all(n.next_attempt_at > utcnow() + timedelta(seconds=25) for n in rest)  # 60 s, half jittered
        assert not any(attempts_of(n) for n in rest)

        assert worker.run_once() == 1  # the lane goes to the other account
        assert reload(waiting).status == "sent"
    finally:
        held.release()
        worker.close()


# QUIT may wait this long for its answer (the read timeout), far beyond the bounds below.
SLOW_QUIT = dict(smtp_timeout=30, smtp_deadline=40, lease_seconds=82)


def closed(server) -> bool:
    """Whether every connection to the test server has ended."""
    return all(session.transport is None for session in server.controller.sessions)


def test_security_36_closing_an_idle_connection_to_a_relay_that_never_answers_quit_delays_no_one(app, smtp_server):
    quiet_server, healthy_server = smtp_server(), smtp_server()
    held = hold_quit(quiet_server)
    account_for(quiet_server)
    healthy = account_for(healthy_server, is_default=False, name="healthy")
    first = notify(subject="to the quiet relay")
    worker = fast_worker(**SLOW_QUIT, session_idle_seconds=0.2)
    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    try:
        wait_until(lambda: reload(first).status == "sent")
        wait_until(lambda: held.waiting == 1 or closed(quiet_server))  # its idle connection is being closed
        sent = [notify(subject=f"healthy {n}", account=healthy) for n in range(3)]
        wait_until(lambda: {reload(n).status for n in sent} == {"sent"}, timeout=15)  # generous: not speed
        assert {reload(n).status for n in sent} == {"sent"}
    finally:
        held.release()
        worker.stop()
        thread.join(40)
    assert not thread.is_alive()


def test_security_36_stopping_the_worker_does_not_wait_on_relays_that_never_answer_quit(app, smtp_server):
    servers = [smtp_server() for _ in range(3)]
    held = [hold_quit(server) for server in servers]
    accounts = [account_for(server, is_default=False, name=f"quiet {n}") for n, server in enumerate(servers)]
    sent = [notify(subject="to a quiet relay", account=account) for account in accounts]
    worker = fast_worker(**SLOW_QUIT)
    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    try:
        wait_until(lambda: {reload(n).status for n in sent} == {"sent"}, timeout=15)  # generous: not speed
        assert {reload(n).status for n in sent} == {"sent"}
        worker.stop()
        thread.join(15)  # generous: "does not hang", not speed
        assert not thread.is_alive()
        assert sum(h.waiting for h in held) >= 1  # QUIT is still said, as far as its short time allows
    finally:
        for h in held:
            h.release()
        thread.join(120)


def test_a_busy_accounts_new_notifications_wait_for_its_connection(app, smtp_server):
    """While an account's messages are being sent, the worker claims none of its newer ones: they go next, over
    the same connection, in order."""
    server = smtp_server()
    held = hold_data(server)
    account = account_for(server)
    first = notify(subject="n0")
    worker = fast_worker(**PATIENT)
    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    try:
        wait_until(lambda: held.waiting == 1)
        later = [notify(subject=f"n{n}", account=account) for n in (1, 2)]
        wait_until(lambda: False, timeout=0.3)  # a few of the worker's polls
        assert [reload(n).status for n in later] == ["queued", "queued"]
        held.release()
        wait_until(lambda: statuses() == {"sent": 3})
    finally:
        held.release()
        worker.stop()
        thread.join(10)
    assert reload(first).status == "sent"
    assert [r.message["Subject"] for r in server.received] == ["n0", "n1", "n2"]
    assert server.connections == 1


def test_hooks_run_while_the_worker_runs_and_their_failures_are_not_fatal(app, caplog):
    calls = []

    def failing():
        calls.append("failing")
        raise RuntimeError("boom")

    worker = fast_worker(poll_seconds=0.01)
    worker.hooks, worker.hook_seconds = [failing, lambda: calls.append("ok")], 0
    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    deadline = time.monotonic() + 5
    while calls.count("ok") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    thread.join(5)
    assert calls.count("ok") >= 2 and calls.count("failing") >= 2
    assert "hook" in caplog.text and "boom" in caplog.text



@pytest.fixture
def recordings(monkeypatch) -> list[int]:
    """How many outcomes each of the worker's recording transactions wrote, in order."""
    sizes = []
    original = Worker._record
    monkeypatch.setattr(Worker, "_record", lambda self, outcomes: sizes.append(len(outcomes)) or
                        original(self, outcomes))
    return sizes


def test_outcomes_are_recorded_together_one_transaction_per_fifty_messages(app, smtp_server, recordings):
    server = smtp_server(pipelining=True)
    account_for(server)
    for n in range(120):
        notify(subject=f"n{n}")

    worker = fast_worker(batch_size=120)
    assert worker.run_once() == 120
    worker.close()

    assert recordings == [50, 50, 20]
    assert statuses() == {"sent": 120} and len(server.received) == 120
    assert DeliveryAttempt.select().where(DeliveryAttempt.ok).count() == 120
    assert Notification.select().where(Notification.lease_owner.is_null(False)
                                       | Notification.headers_sent.is_null()).count() == 0


def test_a_slow_server_gets_each_outcome_recorded_without_waiting_for_the_batch(app, smtp_server, monkeypatch,
                                                                                  recordings):
    monkeypatch.setattr("webapp.outbox.worker.RECORD_SECONDS", 0)  # a message slower than this is recorded at once
    server = smtp_server()
    account_for(server)
    for n in range(3):
        notify(subject=f"n{n}")

    drain()

    assert recordings == [1, 1, 1] and statuses() == {"sent": 3}


@pytest.mark.parametrize("pipelining", [False, True])
def test_a_message_that_cannot_be_composed_fails_alone_and_the_batch_goes_on_in_order(app, smtp_server, pipelining):
    server = smtp_server(pipelining=pipelining)
    account_for(server)
    first, broken, last = (notify(subject=f"n{n}") for n in range(3))
    # Stored before a rule changed, say. With PIPELINING it is composed while n0 is sent, to go with n0's final dot:
    # it cannot, so n0 goes alone, and it fails in its own turn.
    Notification.update(to_addrs='["not an address"]').where(Notification.id == broken.id).execute()

    drain()

    assert [r.message["Subject"] for r in server.received] == ["n0", "n2"]
    broken = Notification.get_by_id(broken.id)
    assert broken.status == "failed" and broken.last_step == "policy"
    assert "could not be composed" in reply_words(broken.last_reply)
    assert {Notification.get_by_id(n.id).status for n in (first, last)} == {"sent"}
