"""Several `smtpdesk worker` processes on one outbox: each notification is sent once, an account's connection and rate
limits, set on its form, hold for all of them together (counted at the SMTP server), and an expired lease is taken
back by one of them."""
import signal
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta

import pytest

from tests.support.factories import edit_form
from tests.support.outbox import account_for, message_ids, statuses
from tests.support.processes import instance_env, start, wait_for
from webapp.db import database
from webapp.models import DeliveryAttempt, Notification, SmtpAccount, utcnow
from webapp.outbox import send_notification
from webapp.outbox.queue import claim
from webapp.outbox.settings import LEASE_EXPIRED, OutboxSettings

pytestmark = pytest.mark.engines("sqlite", "postgresql")

# Leases far longer than a message takes, even on a busy machine: a lease that ran out would send a message twice
# (the documented window), which these tests would count as a fault.
CONFIG = dict(OUTBOX_LEASE_SECONDS=60, OUTBOX_SMTP_TIMEOUT=5, OUTBOX_SMTP_DEADLINE=10, OUTBOX_POLL_SECONDS=0.05,
              OUTBOX_BACKOFF_BASE_SECONDS=0.05, OUTBOX_BACKOFF_MAX_SECONDS=0.2)


def active() -> int:
    return Notification.select().where(Notification.status.in_(("queued", "sending", "retrying"))).count()


@contextmanager
def workers(app, tmp_path, count: int, **config):
    """`count` worker processes, each delivering (their start-up done) when the block begins; stopped gracefully
    at its end."""
    env = instance_env(app, **CONFIG, **config)
    processes = [start(["worker"], env, tmp_path, f"worker{n}") for n in range(count)]
    try:
        for n in range(count):
            log = tmp_path / f"worker{n}.log"
            wait_for(lambda: "delivering" in log.read_text(), 60, f"worker {n} to start")
        yield processes
    except BaseException:
        for process in processes:
            process.kill()
            process.wait()
        raise
    for process in processes:
        process.send_signal(signal.SIGTERM)
    assert [process.wait(30) for process in processes] == [0] * count


def notify(n: int, account=None) -> int:
    return send_notification(to=[f"user{n}@example.org"], subject=f"n{n}", text="hello", account=account)


def set_limits(admin, account, **limits) -> None:
    """Save the account's sending limits on its form, as an administrator does."""
    response = admin.post(f"/accounts/{account.id}/edit", data=edit_form(account, **limits))
    assert response.status_code == 303
    saved = SmtpAccount.get_by_id(account.id)
    assert {name: str(getattr(saved, name)) for name in limits} == limits


def sent_once(*servers) -> None:
    """Every notification reached its server exactly once (by Message-ID)."""
    received = Counter()
    for server in servers:
        received.update(message_ids(server))
    assert set(received) == {n.message_id for n in Notification.select()}
    assert set(received.values()) == {1}


def test_three_worker_processes_drain_one_queue_sending_each_notification_once(app, smtp_server, tmp_path):
    servers = [smtp_server(stall={"DATA": 0.005}), smtp_server(stall={"DATA": 0.005})]
    accounts = [account_for(servers[0]), account_for(servers[1], is_default=False, name="second")]
    with workers(app, tmp_path, 3, OUTBOX_BATCH_SIZE=10):
        for n in range(300):
            notify(n, accounts[n % 2])
        wait_for(lambda: active() == 0, 120, "three workers to drain the outbox")
    assert statuses() == {"sent": 300}
    sent_once(*servers)
    assert len({attempt.worker for attempt in DeliveryAttempt.select()}) >= 2  # they shared the work


def test_an_account_limited_to_one_connection_never_has_two_open_across_worker_processes(app, admin, smtp_server,
                                                                                          tmp_path):
    server = smtp_server(stall={"DATA": 0.005})
    set_limits(admin, account_for(server), max_connections="1")  # the default (OUTBOX_MAX_CONNECTIONS) is 4
    with workers(app, tmp_path, 2, OUTBOX_BATCH_SIZE=5):
        for wave in range(4):
            # Each wave's batches end before the next is queued: the connection that sent them stays open, kept for
            # the next batch, and the other worker must not open one of its own meanwhile.
            for n in range(10):
                notify(wave * 10 + n)
            wait_for(lambda: active() == 0, 60, f"wave {wave} to be delivered")
    assert statuses() == {"sent": 40}
    sent_once(server)
    assert server.handler.most_open == 1


def test_a_rate_per_minute_holds_across_worker_processes(app, admin, smtp_server, tmp_path):
    limited_server, other_server = smtp_server(), smtp_server()
    limited = account_for(limited_server)
    other = account_for(other_server, is_default=False, name="unlimited")
    set_limits(admin, limited, rate_per_minute="5")  # the default (OUTBOX_RATE_PER_MINUTE) is none
    with workers(app, tmp_path, 2, OUTBOX_BATCH_SIZE=3):
        with database.atomic("IMMEDIATE"):  # all at once: both workers find them due together
            for n in range(12):
                notify(n, limited)
            later = [notify(100 + n, other) for n in range(30)]
        # The limited account's are older: every claim looks at them first, before the other account's.
        wait_for(lambda: Notification.select().where(Notification.id.in_(later), Notification.status == "sent")
                 .count() == 30, 60, "the other account's notifications")
    started = sorted(attempt.started_at for attempt in DeliveryAttempt.select().join(Notification)
                     .where(Notification.account == limited.id))
    assert started and len(started) == len(limited_server.received)
    for first in started:  # in no 60 seconds more than 5 attempts started, whichever worker started them
        assert len([at for at in started if first <= at < first + timedelta(seconds=60)]) <= 5
    assert set(message_ids(limited_server).values()) == {1} and len(message_ids(other_server)) == 30


def test_an_expired_lease_is_taken_back_by_exactly_one_of_two_worker_processes(app, smtp_server, tmp_path):
    server = smtp_server()
    account_for(server)
    for n in range(20):
        notify(n)
    assert len(claim("dead-worker", OutboxSettings(batch_size=20, lease_seconds=60, smtp_deadline=10))) == 20
    with workers(app, tmp_path, 2):
        # The dead worker's leases end while both workers are claiming.
        Notification.update(lease_until=utcnow() - timedelta(seconds=1)).execute()
        wait_for(lambda: active() == 0, 60, "the two workers to take the notifications back and send them")
    lost = DeliveryAttempt.select().where(DeliveryAttempt.step == LEASE_EXPIRED)
    assert sorted(attempt.notification_id for attempt in lost) == [n.id for n in Notification.select()
                                                                   .order_by(Notification.id)]
    assert {attempt.worker for attempt in lost} == {"dead-worker"}
    assert {(n.status, n.attempts) for n in Notification.select()} == {("sent", 2)}
    sent_once(server)
