"""Retention: sent and failed notifications last changed longer ago than the period set under Settings go, with their
delivery attempts and search keys (the counts by status stay right), and so do old audit entries; queued, sending and
retrying notifications never do, however old. The worker prunes at most once an hour whichever of its processes gets
there first; `smtpdesk outbox prune` does the same by hand."""
import signal
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from peewee import SqliteDatabase

from tests.support.factories import make_account, make_notification
from tests.support.processes import instance_env, start, wait_for
from tests.test_deliveries_search import counted_by_scan
from webapp import db
from webapp.db import database
from webapp.models import AuditEntry, DeliveryAttempt, Notification, Setting, utcnow
from webapp.outbox import ACTIVE, connection, outbox_counts, retention

pytestmark = pytest.mark.engines("sqlite", "postgresql")


def aged(notification, days: float, status: str | None = None):
    """The notification as if it was created and last changed `days` ago (in `status`, if given)."""
    when = utcnow() - timedelta(days=days)
    values = dict(created_at=when, updated_at=when, **({"status": status} if status else {}))
    Notification.update(**values).where(Notification.id == notification.id).execute()
    return notification


def attempt(notification, count: int = 1):
    for _ in range(count):
        DeliveryAttempt.create(notification=notification, ok=notification.status == "sent", worker="w")


def audit_entry(days: float) -> AuditEntry:
    entry = AuditEntry.record("login", object_type="user", object_name="ana")
    AuditEntry.update(at=utcnow() - timedelta(days=days)).where(AuditEntry.id == entry.id).execute()
    return entry


def left() -> set[int]:
    return {n.id for n in Notification.select(Notification.id)}


def search_keys_of_missing_notifications() -> int:
    return db.execute('SELECT COUNT(*) FROM "notification_search" WHERE "notification_id" NOT IN '
                      '(SELECT "id" FROM "notification")').fetchone()[0]


@pytest.fixture
def account(app):
    return make_account(is_default=True)


def test_every_status_is_either_never_pruned_or_final():
    assert set(ACTIVE) | set(retention.FINAL) == set(Notification.STATUSES)
    assert not set(ACTIVE) & set(retention.FINAL)


def test_old_sent_and_failed_go_with_their_attempts_and_search_keys_and_the_counts_stay_right(account):
    old_sent = aged(make_notification("sent", to="Ana Velha <ana.velha@example.com>"), 91)
    old_failed = aged(make_notification("failed", to="bia@example.com"), 200)
    recent = aged(make_notification("sent", to="carla@example.com"), 89)
    for notification in (old_sent, old_failed, recent):
        attempt(notification, 2)
    pruned = retention.prune(90, 365)
    assert (pruned.notifications, pruned.attempts, pruned.finished) == (2, 4, True)
    assert left() == {recent.id}
    assert DeliveryAttempt.select().count() == 2
    assert search_keys_of_missing_notifications() == 0
    assert db.execute('SELECT COUNT(*) FROM "notification_search" WHERE "notification_id" = ?',
                      (recent.id,)).fetchone()[0] > 0
    assert outbox_counts() == counted_by_scan() == {**dict.fromkeys(Notification.STATUSES, 0), "sent": 1}


@pytest.mark.parametrize("status", ["queued", "sending", "retrying"])
def test_queued_sending_and_retrying_are_never_pruned_however_old(account, status):
    waiting = aged(make_notification(status), 3650 * 2)
    attempt(waiting)
    pruned = retention.prune(1, 1)
    assert pruned.notifications == 0 and left() == {waiting.id}
    assert DeliveryAttempt.select().count() == 1
    assert outbox_counts()[status] == 1


def test_the_age_is_counted_from_the_last_change_not_the_creation(account):
    # Created long ago, failed only yesterday (after its retries): kept.
    notification = aged(make_notification("failed"), 400)
    Notification.update(updated_at=utcnow() - timedelta(days=1)).where(Notification.id == notification.id).execute()
    assert retention.prune(90, 365).notifications == 0
    assert left() == {notification.id}


def test_audit_entries_older_than_the_audit_period_go(app):
    old, kept = audit_entry(366), audit_entry(364)
    assert retention.prune(90, 365).audit_entries == 1
    assert [entry.id for entry in AuditEntry.select()] == [kept.id]
    assert old.id != kept.id


def test_batches_and_a_deadline_split_the_work_between_passes(account):
    notifications = [aged(make_notification("sent"), 100) for _ in range(5)]
    entries = [audit_entry(400) for _ in range(3)]
    first = retention.prune(90, 365, batch_size=2, deadline=0)  # past already: one batch, then stop
    assert (first.notifications, first.audit_entries, first.finished) == (2, 0, False)
    rest = retention.prune(90, 365, batch_size=2)
    assert (rest.notifications, rest.audit_entries, rest.finished) == (3, 3, True)
    assert not left() and not AuditEntry.select().exists()
    assert len(notifications) == 5 and len(entries) == 3


def test_a_dry_run_counts_without_deleting(account):
    for days in (100, 120, 10):
        attempt(aged(make_notification("sent"), days))
    aged(make_notification("retrying"), 500)
    audit_entry(400)
    found = retention.count(90, 365)
    assert (found.notifications, found.attempts, found.audit_entries) == (2, 2, 1)
    assert len(left()) == 4 and AuditEntry.select().count() == 1


def test_the_periods_come_from_settings_else_from_config(app):
    assert (retention.Retention.from_config(app.config).delivery_days,
            retention.Retention.from_config(app.config).audit_days) == (90, 365)
    Setting.set_value(retention.DELIVERY_DAYS, "30")
    Setting.set_value(retention.AUDIT_DAYS, "not a number")  # never saved so by the form: the default holds
    kept = retention.Retention.from_config(app.config)
    assert (kept.delivery_days, kept.audit_days) == (30, 365)


# --- The worker's hook: at most once an hour, whichever worker gets there first ------------------------------------


def test_the_worker_prunes_at_most_once_an_interval(app, account):
    aged(make_notification("sent"), 100)
    now = utcnow()
    assert retention.run_if_due(app.config, now=now).notifications == 1
    aged(make_notification("sent"), 100)
    assert retention.run_if_due(app.config, now=now + timedelta(minutes=59)) is None
    assert len(left()) == 1
    assert retention.run_if_due(app.config, now=now + timedelta(minutes=61)).notifications == 1
    assert not left()


def test_a_worker_pass_that_deleted_something_is_audited_as_the_system_and_one_that_did_not_is_not(app, account):
    from flask_babel import force_locale

    from webapp.audit.labels import action_label, actor_label, object_type_label

    aged(make_notification("sent"), app.config["RETENTION_DELIVERY_DAYS"] + 1)
    audit_entry(app.config["RETENTION_AUDIT_DAYS"] + 1)  # a sign-in, old enough to go
    now = utcnow()
    retention.run_if_due(app.config, now=now)
    [entry] = AuditEntry.select()
    assert (entry.action, entry.object_type, entry.actor_id, entry.actor_name, entry.remote_addr) == \
        ("prune", "retention", None, "", "")
    assert entry.changes == {"notifications": 1, "delivery_days": app.config["RETENTION_DELIVERY_DAYS"],
                             "audit_entries": 1, "audit_days": app.config["RETENTION_AUDIT_DAYS"]}
    # As the audit log shows it (in English here): as `smtpdesk outbox prune`'s, by the system.
    with app.test_request_context(), force_locale("en"):
        assert [actor_label(entry), action_label(entry.action), object_type_label(entry.object_type)] == \
            ["system", "pruned", "retention"]
    # The hourly passes after it delete nothing: no entry, not one an hour.
    for hours in (1, 2):
        assert retention.run_if_due(app.config, now=now + timedelta(hours=hours, minutes=1)) is not None
    assert [e.id for e in AuditEntry.select()] == [entry.id]


def test_a_pass_that_runs_out_of_time_leaves_the_rest_due_at_once(app, account):
    for _ in range(3):
        aged(make_notification("sent"), 100)
    app.config.update(RETENTION_BATCH_SIZE=1, RETENTION_PASS_SECONDS=0)
    first = retention.run_if_due(app.config)
    assert (first.notifications, first.finished) == (1, False)
    second = retention.run_if_due(app.config)  # due again at once: the backlog goes on
    assert second.notifications == 1
    app.config.update(RETENTION_BATCH_SIZE=500, RETENTION_PASS_SECONDS=2.0)
    assert retention.run_if_due(app.config).finished
    assert not left()
    assert retention.run_if_due(app.config) is None  # then not before the interval


def test_of_workers_calling_together_one_prunes(app, account):
    for _ in range(4):
        aged(make_notification("sent"), 100)
    results, start_together = [], threading.Barrier(4)

    def worker():
        with connection():
            start_together.wait()
            results.append(retention.run_if_due(app.config))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 4
    assert [r.notifications for r in results if r is not None] == [4]


def test_the_worker_runs_the_retention_as_a_hook(app, account):
    from webapp.cli import _make_worker

    aged(make_notification("sent"), 100)
    for hook in _make_worker(app).hooks:
        hook()
    assert not left()
    assert [(e.action, e.remote_addr, e.changes["notifications"]) for e in AuditEntry.select()] == [("prune", "", 1)]


def test_two_worker_processes_prune_once(app, account, tmp_path):
    for _ in range(3):
        attempt(aged(make_notification("sent"), 100))
    env = instance_env(app, OUTBOX_POLL_SECONDS=0.05)
    workers = [start(["worker"], env, tmp_path, f"worker{n}") for n in range(2)]
    try:
        wait_for(lambda: not left(), 30, "a worker to prune")
        # Both ran their hooks at start; the one that did not prune found the next run claimed.
        wait_for(lambda: all("started" in (tmp_path / f"worker{n}.log").read_text() for n in range(2)), 30,
                 "both workers to start")
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            process.wait(30)
    logs = [(tmp_path / f"worker{n}.log").read_text() for n in range(2)]
    assert sum("retention: deleted 3 notifications (3 delivery attempts)" in log for log in logs) == 1, logs
    assert Setting.get_value(retention.NEXT_RUN) > utcnow().isoformat()


# --- By hand: smtpdesk outbox prune ---------------------------------------------------------------------------------


def test_outbox_prune_deletes_by_the_periods_given_and_says_what_it_did(account, runner):
    for days in (40, 20):
        attempt(aged(make_notification("sent"), days))
    aged(make_notification("queued"), 40)
    audit_entry(40)
    result = runner.invoke(args=["outbox", "prune", "--older-than", "30d", "--audit-older-than", "35d"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Deleted:\n  notifications sent or failed, last changed over 30 days ago: 1\n"
                                    "  their delivery attempts: 1\n  audit entries over 35 days old: 1\n")
    assert {n.status for n in Notification.select()} == {"sent", "queued"}
    entry = AuditEntry.get()
    assert (entry.action, entry.object_type, entry.remote_addr) == ("prune", "retention", "cli")
    assert entry.changes == {"notifications": 1, "delivery_days": 30, "audit_entries": 1, "audit_days": 35}


def test_outbox_prune_defaults_to_the_settings(account, runner):
    Setting.set_value(retention.DELIVERY_DAYS, "10")
    aged(make_notification("failed"), 11)
    aged(make_notification("failed"), 9)
    result = runner.invoke(args=["outbox", "prune"])
    assert result.exit_code == 0 and "last changed over 10 days ago: 1\n" in result.output
    assert "audit entries over 365 days old: 0\n" in result.output


def test_outbox_prune_dry_run_deletes_nothing(account, runner):
    aged(make_notification("sent"), 100)
    result = runner.invoke(args=["outbox", "prune", "--older-than", "90", "--dry-run"])
    assert result.exit_code == 0 and result.output.startswith("Would delete:\n")
    assert "over 90 days ago: 1\n  their delivery attempts: 0\n" in result.output
    assert len(left()) == 1 and not AuditEntry.select().exists()


@pytest.mark.parametrize("value", ["0d", "3651d", "90x", "-5d", "1.5d", "d", "90 days"])
def test_outbox_prune_refuses_what_is_no_number_of_days(account, runner, value):
    aged(make_notification("sent"), 5000)
    result = runner.invoke(args=["outbox", "prune", "--older-than", value])
    assert result.exit_code == 2 and "is not a number of days from 1d to 3650d" in result.output
    assert len(left()) == 1


def test_outbox_alone_still_shows_the_counts(account, runner):
    make_notification("queued")
    result = runner.invoke(args=["outbox"])
    assert result.exit_code == 0 and "queued 1, sending 0, sent 0, retrying 0, failed 0" in result.output
    assert "prune" in runner.invoke(args=["outbox", "--help"]).output


# --- SQLite's file stops growing once retention holds ---------------------------------------------------------------

ROUND = 3000  # notifications per round, each about 2 KB of text and one delivery attempt


def insert_round(account, round_number: int) -> None:
    """ROUND sent notifications stored now, with one attempt each, inserted in bulk (the triggers keep their search
    keys and the counts)."""
    now = utcnow()
    rows = [dict(account=account.id, status="sent", to_addrs=f'["Pessoa {n} <pessoa{round_number}.{n}@example.com>"]',
                 subject=f"Fatura {round_number}-{n}", body_text=f"Olá, {n}! " + "Relatório mensal. " * 110,
                 message_id=f"<{round_number}.{n}@test>", attempts=1, created_at=now, updated_at=now, sent_at=now)
            for n in range(ROUND)]
    with database.atomic():
        for chunk in range(0, ROUND, 500):
            Notification.insert_many(rows[chunk:chunk + 500]).execute()
        db.execute('INSERT INTO "delivery_attempt" ("notification_id", "started_at", "duration_ms", "ok", "code", '
                   '"reply", "transient", "worker") SELECT "id", "created_at", 120, 1, 250, \'250 2.0.0 Ok\', 0, '
                   '\'test\' FROM "notification" WHERE "message_id" LIKE ?', (f"<{round_number}.%",))


def file_size(app) -> int:
    """The database file's size once the WAL is written back into it (and emptied)."""
    database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = Path(app.config["DATABASE"] + "-wal")
    return Path(app.config["DATABASE"]).stat().st_size + (wal.stat().st_size if wal.exists() else 0)


@pytest.mark.engines("sqlite")
def test_the_sqlite_file_stops_growing_once_retention_holds(app, account):
    assert database.execute_sql("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL, from the file's creation
    full, after_prune = [], []
    for round_number in range(3):
        insert_round(account, round_number)
        full.append(file_size(app))
        # Time passes: everything stored so far is 100 days old, and goes.
        long_ago = utcnow() - timedelta(days=100)
        Notification.update(created_at=long_ago, updated_at=long_ago).execute()
        pruned = retention.prune(90, 365)
        assert (pruned.notifications, pruned.attempts, pruned.finished) == (ROUND, ROUND, True)
        after_prune.append(file_size(app))
    print(f"\nfile after each round's {ROUND} inserts: {full}; after each prune: {after_prune}")
    assert database.execute_sql("PRAGMA freelist_count").fetchone()[0] == 0
    assert all(pruned < full[0] / 2 for pruned in after_prune)  # the freed pages went back to the file system
    assert max(full[1:]) <= full[0] * 1.05  # each round takes the same room again, not more
    assert outbox_counts() == dict.fromkeys(Notification.STATUSES, 0) and search_keys_of_missing_notifications() == 0


@pytest.mark.engines("sqlite")
def test_db_upgrade_switches_a_file_made_before_incremental_vacuum_once(app, runner):
    database.execute_sql("PRAGMA auto_vacuum = NONE")
    database.execute_sql("VACUUM")  # as files made before this release are
    assert database.execute_sql("PRAGMA auto_vacuum").fetchone()[0] == 0
    first = runner.invoke(args=["db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert "switching to auto_vacuum = INCREMENTAL" in first.output and "Done." in first.output
    assert database.execute_sql("PRAGMA auto_vacuum").fetchone()[0] == 2
    again = runner.invoke(args=["db", "upgrade"])
    assert again.exit_code == 0 and "switching" not in again.output


@pytest.mark.engines("sqlite")
def test_a_new_connection_writes_nothing(app):
    """auto_vacuum is set when the file is made, not on every connection: setting it on a file that has it writes
    the header again, and every deferred transaction reading then writing elsewhere would fail ("locked")."""
    watcher = sqlite3.connect(app.config["DATABASE"])
    try:
        before = watcher.execute("PRAGMA data_version").fetchone()
        other = SqliteDatabase(app.config["DATABASE"], pragmas=db.PRAGMAS)
        other.connect()
        other.close()
        assert watcher.execute("PRAGMA data_version").fetchone() == before
    finally:
        watcher.close()


def test_db_upgrade_of_a_current_database_vacuums_nothing(app, runner):
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0 and "is up to date" in result.output and "switching" not in result.output


@pytest.mark.parametrize("setting, value", [("RETENTION_DELIVERY_DAYS", 0), ("RETENTION_AUDIT_DAYS", "365"),
                                            ("RETENTION_AUDIT_DAYS", 5000), ("RETENTION_BATCH_SIZE", 0)])
def test_an_unusable_retention_default_stops_start_up_with_its_name(tmp_path, setting, value):
    from cryptography.fernet import Fernet

    from webapp import create_app
    from webapp.config import ConfigError

    with pytest.raises(ConfigError, match=setting):
        create_app({"TESTING": True, "SECRET_KEY": "x", "DATABASE": str(tmp_path / "x.db"),
                    "VAULT_KEYS": Fernet.generate_key().decode(), setting: value})
