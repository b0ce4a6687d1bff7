"""`smtpdesk send`, `smtpdesk outbox [--wait]`, `smtpdesk worker` and the worker inside `smtpdesk serve`."""
import signal
import threading
import time

from tests.support.factories import make_account
from tests.support.net import free_port, wait_for_port
from tests.support.outbox import account_for, fast_worker, statuses
from tests.support.processes import instance_env, start, wait_for
from webapp.models import AuditEntry, Notification, WorkerHeartbeat, utcnow
from webapp.outbox import send_notification


def test_send_queues_a_notification_and_prints_its_id(app, runner):
    make_account(is_default=True)
    result = runner.invoke(args=["send", "--to", "ana@example.org", "--to", "Bia <bia@example.org>",
                                 "--cc", "carl@example.org", "--subject", "Disk almost full", "--body", "91% used."])
    assert result.exit_code == 0, result.output
    notification = Notification.get()
    assert f"Queued notification {notification.id}" in result.output
    assert notification.message_id in result.output
    assert notification.to_list == ["ana@example.org", "Bia <bia@example.org>"]
    assert (notification.source, notification.status, notification.body_text) == ("cli", "queued", "91% used.")


def test_send_reads_the_body_from_a_file_or_standard_input(app, runner, tmp_path):
    make_account(is_default=True)
    body = tmp_path / "body.txt"
    body.write_text("Relatório:\n.\nfim\n", encoding="utf-8")
    assert runner.invoke(args=["send", "--to", "a@example.org", "--subject", "s", "--body-file", str(body)]
                         ).exit_code == 0
    assert runner.invoke(args=["send", "--to", "a@example.org", "--subject", "s", "--body-file", "-"],
                         input="from stdin").exit_code == 0
    assert [n.body_text for n in Notification.select().order_by(Notification.id)] == ["Relatório:\n.\nfim\n",
                                                                                      "from stdin"]


def test_send_needs_exactly_one_body(app, runner):
    make_account(is_default=True)
    neither = runner.invoke(args=["send", "--to", "a@example.org", "--subject", "s"])
    both = runner.invoke(args=["send", "--to", "a@example.org", "--subject", "s", "--body", "x", "--body-file", "-"])
    for result in (neither, both):
        assert result.exit_code == 2 and "exactly one of --body and --body-file" in result.output
    assert not Notification.select().exists()


def test_send_explains_bad_fields_a_missing_default_and_unknown_accounts(app, runner):
    result = runner.invoke(args=["send", "--to", "a@example.org", "--subject", "s", "--body", "x"])
    assert result.exit_code == 1 and "No enabled default SMTP account" in result.output
    make_account(name="billing")
    result = runner.invoke(args=["send", "--to", "a@b@c", "--subject", "s\r\nBcc: x@example.org", "--body", "x",
                                 "--account", "billing"])
    assert result.exit_code == 2
    assert "--to: Enter a valid e-mail address" in result.output
    assert "--subject: Line breaks and control characters are not allowed here." in result.output
    result = runner.invoke(args=["send", "--to", "a@example.org", "--subject", "s", "--body", "x",
                                 "--account", "nope"])
    assert result.exit_code == 2 and "--account: No SMTP account has this name or id." in result.output
    assert not Notification.select().exists()


def test_send_with_an_idempotency_key_queues_once(app, runner):
    make_account(is_default=True)
    args = ["send", "--to", "a@example.org", "--subject", "s", "--body", "x", "--idempotency-key", "job-7"]
    assert runner.invoke(args=args).exit_code == 0
    assert runner.invoke(args=args).exit_code == 0
    conflict = runner.invoke(args=args[:-3] + ["other", "--idempotency-key", "job-7"])
    assert conflict.exit_code == 1 and "already used by notification" in conflict.output
    assert Notification.select().count() == 1


def test_outbox_counts_by_status(app, runner):
    make_account(is_default=True)
    for n in range(3):
        send_notification(to="a@example.org", subject=f"s{n}", text="x")
    Notification.update(status="failed").where(Notification.subject == "s0").execute()
    result = runner.invoke(args=["outbox"])
    assert result.exit_code == 0
    assert "queued 2, sending 0, sent 0, retrying 0, failed 1" in result.output


def test_outbox_wait_shows_progress_until_the_queue_drains(app, runner, smtp_server):
    server = smtp_server(stall={"DATA": 0.05})
    account_for(server)
    for n in range(10):
        send_notification(to="a@example.org", subject=f"s{n}", text="x")
    worker = fast_worker(batch_size=2)
    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    try:
        result = runner.invoke(args=["outbox", "--wait", "--interval", "0.05", "--timeout", "20"])
    finally:
        worker.stop()
        thread.join(5)
    assert result.exit_code == 0, result.output
    assert "Delivering" in result.output
    assert "queued 0, sending 0, sent 10, retrying 0, failed 0" in result.output


def test_outbox_wait_gives_up_at_the_timeout(app, runner):
    make_account(is_default=True)
    send_notification(to="a@example.org", subject="s", text="x")
    started = time.monotonic()
    result = runner.invoke(args=["outbox", "--wait", "--interval", "0.05", "--timeout", "0.3"])
    assert result.exit_code == 1 and "did not drain" in result.output
    assert time.monotonic() - started < 3


def test_worker_until_idle_delivers_everything(app, runner, smtp_server):
    server = smtp_server()
    account_for(server)
    for n in range(5):
        send_notification(to="a@example.org", subject=f"s{n}", text="x")
    result = runner.invoke(args=["worker", "--until-idle", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert statuses() == {"sent": 5} and len(server.received) == 5


def test_security_36_ctrl_c_during_worker_until_idle_puts_the_rest_of_the_batch_back(app, smtp_server, tmp_path):
    server = smtp_server(stall={"DATA": 1.5})
    account_for(server)
    for n in range(6):
        send_notification(to="a@example.org", subject=f"s{n}", text="x")
    process = start(["worker", "--until-idle"], instance_env(app, OUTBOX_POLL_SECONDS=0.05), tmp_path, "worker")
    try:
        wait_for(lambda: server.handler.data_with_more_buffered, 15, "the first message's content")
        process.send_signal(signal.SIGINT)  # what a terminal's Ctrl+C does
        process.wait(30)  # generous: "stops", not speed
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # The message in flight finished; the rest of the batch went back to the queue instead of being delivered.
    assert statuses() == {"sent": 1, "queued": 5}
    assert len(server.received) == 1


def test_serve_runs_the_worker_and_stops_it_gracefully(app, smtp_server, tmp_path):
    server = smtp_server()
    account_for(server)
    port = free_port()
    env = instance_env(app, OUTBOX_POLL_SECONDS=0.05, OUTBOX_SMTP_DEADLINE=2, OUTBOX_LEASE_SECONDS=6)
    process = start(["serve", "--port", str(port)], env, tmp_path, "serve")
    try:
        wait_for_port(port)
        send_notification(to="a@example.org", subject="from the server's worker", text="x")
        wait_for(lambda: statuses() == {"sent": 1}, 15, "the server's worker to deliver")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    assert server.received[0].message["Subject"] == "from the server's worker"
    output = (tmp_path / "serve.log").read_text()
    assert "Stopping the outbox worker" in output and "stopped" in output


def test_the_worker_runs_the_report_schedule_in_an_app_context_and_the_retention(app):
    from webapp.cli import _make_worker

    worker = _make_worker(app)
    heartbeat, run_schedules, prune_when_due = worker.hooks
    assert [hook.__name__ for hook in worker.hooks] == ["heartbeat", "run_schedules", "prune_when_due"]
    run_schedules()  # no schedule is due: nothing happens, and nothing fails
    prune_when_due()  # nothing is old: nothing happens, and nothing fails
    assert not Notification.select().exists() and not AuditEntry.select().exists()  # no entry for deleting nothing
    heartbeat()  # GET /readyz's: the worker is alive, under its own name
    assert [(beat.name, beat.beat_at <= utcnow()) for beat in WorkerHeartbeat.select()] == [(worker.name, True)]
    assert worker.hook_seconds == app.config["WORKER_HEARTBEAT_SECONDS"] == 30

