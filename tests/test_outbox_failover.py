"""Failover against two real aiosmtpd servers: a primary relay that refuses sessions (421 at the greeting) or whose
port is closed has its notifications sent through the backup account, composed by the backup's rules, said in the
delivery log and counted in the metrics, and back through the primary after the cool-down; a refused recipient and
a credential that never worked do not fail over, one that worked before does; two worker processes lose nothing."""
from collections import Counter
from datetime import timedelta

import pytest

from tests.support.factories import make_account, make_credential
from tests.support.outbox import FAST, account_for, fast_worker, message_ids, statuses
from tests.support.processes import wait_for
from tests.test_metrics import samples_of, value
from webapp.models import DeliveryAttempt, DeliveryMetric, Notification, Setting, SmtpAccount, utcnow
from webapp.outbox import FOOTER_SETTING, send_notification
from webapp.outbox.message import reply_words
from webapp.outbox.queue import claim
from webapp.outbox.settings import OutboxSettings

pytestmark = pytest.mark.engines("sqlite", "postgresql")

COOLDOWN = 1.5  # seconds: the tests wait for it to end (a condition, never a timed assertion)
FAILOVER = dict(failover_after_failures=2, failover_window_seconds=60, failover_cooldown_seconds=COOLDOWN)
DOWN = "421 4.3.2 Service not available, closing transmission channel"
METRICS_TOKEN = "metrics-token-for-the-failover-tests"
BACKUP_ADDRESSES = dict(sender="Backup relay <noreply@backup.example>", reply_to="replies@backup.example",
                        return_path="bounces@backup.example", confirmation_email="receipts@backup.example")


def deliver(**overrides) -> None:
    """Run a worker with the test timings and the short cool-down until nothing is queued, sending or retrying."""
    worker = fast_worker(**{**FAILOVER, **overrides})
    try:
        worker.run_until_idle(timeout=30)
    finally:
        worker.close()


def with_backup(primary: SmtpAccount, backup_server, **fields) -> SmtpAccount:
    """A backup account on backup_server, with addresses and footer of its own, named by primary as its backup."""
    backup = account_for(backup_server, is_default=False, name="backup", footer_enabled=True,
                         **{**BACKUP_ADDRESSES, **fields})
    primary.backup_account = backup
    primary.save()
    return backup


def notify(count: int, start: int = 0) -> list[int]:
    return [send_notification(to=[f"user{n}@example.org"], subject=f"n{n}", text="hello")
            for n in range(start, start + count)]


def reloaded(account: SmtpAccount) -> SmtpAccount:
    return SmtpAccount.get_by_id(account.id)


def failovers(primary: SmtpAccount, backup: SmtpAccount) -> int:
    row = DeliveryMetric.get_or_none(account=primary.id, name="failovers", label=str(backup.id))
    return row.value if row else 0


def scraped_failovers(app, primary: SmtpAccount, backup: SmtpAccount) -> float | None:
    """smtpdesk_failovers_total of the pair as GET /metrics says it (parsed by prometheus-client)."""
    app.config["METRICS_TOKEN"] = METRICS_TOKEN
    response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    return value(samples_of(response.get_data(as_text=True)), "smtpdesk_failovers_total", account=primary.name,
                 backup=backup.name)


def until_cooled_down(primary: SmtpAccount) -> None:
    until = reloaded(primary).failover_until
    wait_for(lambda: utcnow() > until, 30, "the cool-down to end")


def assert_carried_by_backup(ids: list[int], primary, backup, backup_server, reason: str) -> None:
    """Each notification went out once, through the backup's relay, by the backup's rules, and its log says why."""
    notifications = list(Notification.select().where(Notification.id.in_(ids)))
    assert {n.status for n in notifications} == {"sent"}
    received = message_ids(backup_server)
    assert {n.message_id for n in notifications} <= set(received)
    assert {received[n.message_id] for n in notifications} == {1}
    for got in backup_server.received:
        message = got.message
        assert message["From"] == BACKUP_ADDRESSES["sender"] and message["Reply-To"] == BACKUP_ADDRESSES["reply_to"]
        assert got.mail_from == BACKUP_ADDRESSES["return_path"]
        assert "Sent by the monitoring system." in message.get_body(("plain",)).get_content()
    for notification in notifications:
        assert notification.account_id == primary.id and notification.sent_via_id == backup.id
        words = reply_words(notification.last_reply)
        assert words.startswith("250 ") and "(sent through backup backup after primary failed: " in words, words
        assert reason in words.split("failed: ", 1)[1], words
    carried = DeliveryAttempt.select().where(DeliveryAttempt.notification.in_(ids), DeliveryAttempt.ok == True)  # noqa: E712
    assert {attempt.via_account_id for attempt in carried} == {backup.id}


def test_a_primary_refusing_sessions_with_421_fails_over_to_the_backup_then_comes_back(app, smtp_server):
    Setting.set_value(FOOTER_SETTING, "Sent by the monitoring system.")
    primary_server, backup_server = smtp_server(), smtp_server()
    primary = account_for(primary_server, name="primary", sender="Alerts <alerts@primary.example>")
    backup = with_backup(primary, backup_server)
    primary_server.go_down(DOWN)

    first = notify(20)
    deliver()
    assert_carried_by_backup(first, primary, backup, backup_server, DOWN)
    assert primary_server.received == []
    assert failovers(primary, backup) == 20 and scraped_failovers(app, primary, backup) == 20
    state = reloaded(primary)
    assert state.failing_over and state.failover_failures == 2 and state.failover_until > utcnow()
    # Each session refused costs the notifications one attempt each; then they went at once, not after a backoff.
    assert max(n.attempts for n in Notification.select()) <= 3

    primary_server.come_back()
    until_cooled_down(primary)
    later = notify(10, start=100)
    deliver()
    assert set(message_ids(primary_server)) == {Notification.get_by_id(i).message_id for i in later}
    assert {Notification.get_by_id(i).sent_via_id for i in later} == {None}
    assert all(got.message["From"] == "Alerts <alerts@primary.example>" for got in primary_server.received)
    state = reloaded(primary)
    assert not state.failing_over and state.failover_failures == 0 and state.failover_until is None
    assert failovers(primary, backup) == 20 and len(backup_server.received) == 20


def test_a_primary_whose_port_is_closed_fails_over_and_comes_back_when_it_listens_again(app, smtp_server,
                                                                                         closed_port):
    Setting.set_value(FOOTER_SETTING, "Sent by the monitoring system.")
    backup_server = smtp_server()
    primary = make_account(name="primary", host="127.0.0.1", port=closed_port, is_default=True)
    backup = with_backup(primary, backup_server)

    first = notify(5)
    deliver()
    assert_carried_by_backup(first, primary, backup, backup_server, "refused the connection")
    assert failovers(primary, backup) == 5

    primary_server = smtp_server(port=closed_port)
    until_cooled_down(primary)
    later = notify(5, start=100)
    deliver()
    assert set(message_ids(primary_server)) == {Notification.get_by_id(i).message_id for i in later}
    assert reloaded(primary).failover_until is None and len(backup_server.received) == 5


def test_a_lone_batch_fails_over_within_seconds_whatever_the_backoff(app, smtp_server):
    """Nothing else on its way: the relay failures that start the failover do not wait for the backoff (ten
    minutes here), so the batch goes through the backup within this one run."""
    primary_server, backup_server = smtp_server(), smtp_server()
    primary = account_for(primary_server, name="primary")
    with_backup(primary, backup_server)
    primary_server.go_down(DOWN)
    notify(5)
    deliver(backoff_base_seconds=600, backoff_max_seconds=3600)
    assert statuses() == {"sent": 5} and len(backup_server.received) == 5


def test_a_refused_recipient_never_fails_over(app, smtp_server):
    primary_server = smtp_server(replies={"RCPT": "550 5.1.1 No such user"})
    backup_server = smtp_server()
    primary = account_for(primary_server, name="primary")
    with_backup(primary, backup_server)
    notify(6)
    deliver()
    assert statuses() == {"failed": 6}
    assert backup_server.connections == 0 and backup_server.received == []
    state = reloaded(primary)
    assert state.failover_failures == 0 and state.failover_until is None
    assert {n.sent_via_id for n in Notification.select()} == {None}


def test_a_login_refused_fails_over_only_when_that_credential_worked_before(app, smtp_server):
    users = {"mailer": "right"}
    primary_server, backup_server = smtp_server(users=users), smtp_server()
    credential = make_credential(username="mailer", secret="wrong")
    primary = account_for(primary_server, name="primary", use_auth=True, credential=credential)
    backup = with_backup(primary, backup_server)

    # Never logged in with it: a wrong password, the admin's to mend. It fails, as without a backup.
    notify(3)
    deliver()
    assert statuses() == {"failed": 3} and backup_server.received == []
    assert reloaded(primary).failover_until is None and reloaded(primary).auth_worked_with is None

    # Mended, it works: the login that worked is remembered.
    credential = reloaded(primary).credential
    credential.set_secret("right")
    credential.save()
    sent = notify(2, start=10)
    deliver()
    assert {Notification.get_by_id(i).status for i in sent} == {"sent"}
    assert reloaded(primary).auth_worked_with == reloaded(primary).credential_key()

    # Then the relay refuses that same login (its password changed there): the relay, not the credential, changed.
    users["mailer"] = "rotated-at-the-relay"
    carried = notify(4, start=20)
    deliver()
    assert {Notification.get_by_id(i).status for i in carried} == {"sent"}
    assert {Notification.get_by_id(i).sent_via_id for i in carried} == {backup.id}
    assert len(backup_server.received) == 4 and reloaded(primary).failing_over
    assert "535" in reply_words(Notification.get_by_id(carried[0]).last_reply)


def test_a_login_that_worked_in_a_test_is_one_that_worked_before(app, smtp_server, admin):
    users = {"mailer": "right"}
    primary_server, backup_server = smtp_server(users=users), smtp_server()
    primary = account_for(primary_server, name="primary", users=users)
    backup = with_backup(primary, backup_server)
    response = admin.post(f"/accounts/{primary.id}/test", data={"to": "ops@example.org", "subject": "Test",
                                                                 "body": "Test"})
    assert response.status_code == 200 and len(primary_server.received) == 1
    assert reloaded(primary).auth_worked_with == reloaded(primary).credential_key()
    users["mailer"] = "rotated-at-the-relay"
    carried = notify(3)
    deliver()
    assert {Notification.get_by_id(i).sent_via_id for i in carried} == {backup.id}
    assert len(backup_server.received) == 3


def test_the_backup_limits_and_lane_carry_the_primary_notifications(app, smtp_server):
    """While failing over, the primary's notifications are claimed for the backup: one lane with the backup's own,
    over its one connection, counted against its connection limit."""
    primary_server, backup_server = smtp_server(), smtp_server()
    primary = account_for(primary_server, name="primary")
    backup = with_backup(primary, backup_server)
    SmtpAccount.update(failover_until=utcnow() + timedelta(minutes=5)).where(SmtpAccount.id == primary.id).execute()
    own = send_notification(to=["b@example.org"], subject="backup's own", text="x", account=backup.name)
    carried = notify(3)
    settings = OutboxSettings(**{**FAST, **FAILOVER})
    batch = claim("w1", settings)
    assert sorted(n.id for n in batch) == sorted([own, *carried])
    assert {n.id: n.sent_via_id for n in batch} == {own: None, **dict.fromkeys(carried, backup.id)}
    # Another worker may not open a second connection to the backup (OUTBOX_MAX_CONNECTIONS=1) for more of them.
    notify(2, start=10)
    assert claim("w2", OutboxSettings(**{**FAST, **FAILOVER, "max_connections": 1})) == []
    # A disabled backup carries nothing: the next claim leaves them to their own relay.
    SmtpAccount.update(enabled=False).where(SmtpAccount.id == backup.id).execute()
    assert {n.sent_via_id for n in claim("w3", settings)} == {None}


def test_two_worker_processes_lose_nothing_when_the_primary_goes_down_mid_flow(app, smtp_server, tmp_path):
    from tests.test_outbox_workers import workers

    primary_server, backup_server = smtp_server(stall={"DATA": 0.005}), smtp_server(stall={"DATA": 0.005})
    primary = account_for(primary_server, name="primary")
    backup = with_backup(primary, backup_server)
    config = dict(FAILOVER_AFTER_FAILURES=2, FAILOVER_WINDOW_SECONDS=60, FAILOVER_COOLDOWN_SECONDS=COOLDOWN,
                  OUTBOX_BATCH_SIZE=10)
    with workers(app, tmp_path, 2, **config):
        for wave in range(30):
            notify(10, start=wave * 10)
            if wave == 10:
                wait_for(lambda: len(primary_server.received) > 0, 60, "the primary to deliver some")
                primary_server.go_down(DOWN)
            if wave == 20:
                wait_for(lambda: len(backup_server.received) > 0, 60, "the backup to take over")
        wait_for(lambda: not Notification.select().where(
            Notification.status.in_(("queued", "sending", "retrying"))).exists(), 120, "the outbox to drain")
        assert statuses() == {"sent": 300}
        received = Counter(message_ids(primary_server)) + Counter(message_ids(backup_server))
        assert set(received) == {n.message_id for n in Notification.select()} and set(received.values()) == {1}
        carried = Notification.select().where(Notification.sent_via == backup.id).count()
        assert carried == len(backup_server.received) == failovers(primary, backup) > 0

        primary_server.come_back()
        until_cooled_down(primary)
        before = len(primary_server.received)
        later = notify(20, start=1000)
        wait_for(lambda: Notification.select().where(Notification.id.in_(later), Notification.status == "sent")
                 .count() == 20, 60, "the last ones, through the primary")
    assert len(primary_server.received) == before + 20
    assert {Notification.get_by_id(i).sent_via_id for i in later} == {None}
