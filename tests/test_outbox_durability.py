"""SECURITY 28 and 29: a worker process killed mid-batch loses nothing and leaves nothing stuck; 1,000 concurrent
enqueue calls give 1,000 notifications, each delivered exactly once (checked at the server by Message-ID)."""
import signal
from concurrent.futures import ThreadPoolExecutor

from tests.support.outbox import account_for, drain, message_ids, statuses
from tests.support.processes import instance_env, start, wait_for
from tests.test_outbox_workers import active, workers
from webapp.models import DeliveryAttempt, Notification
from webapp.outbox import send_notification
from webapp.outbox.settings import RECORD_EVERY

# Leases short enough for the test to see them expire; each message's dialogue well within them.
WORKER_CONFIG = dict(OUTBOX_LEASE_SECONDS=3, OUTBOX_SMTP_TIMEOUT=0.5, OUTBOX_SMTP_DEADLINE=0.5,
                     OUTBOX_BACKOFF_BASE_SECONDS=0.05, OUTBOX_BACKOFF_MAX_SECONDS=0.2, OUTBOX_POLL_SECONDS=0.05)


def test_security_28_a_worker_killed_mid_batch_loses_nothing_and_leaves_nothing_stuck(app, smtp_server, tmp_path):
    server = smtp_server(stall={"DATA": 0.05})  # slow enough for the kill to land in the middle of the batch
    account_for(server)
    for n in range(30):
        send_notification(to=[f"user{n}@example.org"], subject=f"n{n}", text="hello")
    env = instance_env(app, **WORKER_CONFIG)

    first = start(["worker"], env, tmp_path, "first")
    try:
        wait_for(lambda: len(server.received) >= 5, 20, "the first deliveries")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert Notification.select().where(Notification.status == "sending").exists()  # claimed, not finished

    second = start(["worker"], env, tmp_path, "second")
    try:
        wait_for(lambda: active() == 0, 30, "the restarted worker to drain the outbox")
    finally:
        second.send_signal(signal.SIGTERM)  # graceful stop
        assert second.wait(10) == 0

    assert statuses() == {"sent": 30}
    for notification in Notification.select():
        assert notification.lease_owner is None and notification.last_reply
    received = message_ids(server)
    assert set(received) == {n.message_id for n in Notification.select()}
    # At most the messages sent but not yet recorded at the kill arrive twice (the documented window: one
    # recording's worth, RECORD_EVERY messages or RECORD_SECONDS), each with its one Message-ID.
    assert sum(count - 1 for count in received.values()) <= RECORD_EVERY
    lost = DeliveryAttempt.select().where(DeliveryAttempt.step == "lease_expired")
    assert lost.count() >= 1 and all(attempt.transient for attempt in lost)


def test_two_worker_processes_never_send_a_notification_twice(app, smtp_server, tmp_path):
    server = smtp_server(stall={"DATA": 0.01})  # ~2 s of work
    account_for(server)
    # Both processes are up and polling before the work arrives (workers() waits for that), so that both take part;
    # their leases and timeouts are long, so that no message goes twice because a busy machine stalled a dialogue.
    with workers(app, tmp_path, 2, OUTBOX_BATCH_SIZE=10):
        for n in range(200):
            send_notification(to=[f"user{n}@example.org"], subject=f"n{n}", text="hello")
        wait_for(lambda: active() == 0, 60, "two workers to drain the outbox")
    assert statuses() == {"sent": 200}
    received = message_ids(server)
    assert len(received) == 200 and set(received.values()) == {1}
    assert len({attempt.worker for attempt in DeliveryAttempt.select()}) == 2  # both delivered some


def test_security_29_a_thousand_concurrent_enqueue_calls_are_each_delivered_once(app, smtp_server):
    server = smtp_server()
    account_for(server)

    def enqueue(n):
        return send_notification(to=[f"user{n}@example.org"], subject=f"n{n}", text="hello",
                                 idempotency_key=f"key-{n}")

    with ThreadPoolExecutor(max_workers=64) as pool:
        ids = list(pool.map(enqueue, range(1000)))

    assert len(set(ids)) == 1000
    assert Notification.select().count() == 1000
    drain(batch_size=200)
    assert statuses() == {"sent": 1000}
    received = message_ids(server)
    assert set(received.values()) == {1}
    assert set(received) == {n.message_id for n in Notification.select()}
