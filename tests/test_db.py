import os
import stat
import threading
from datetime import timedelta

import peewee
import psycopg
import pytest
from cryptography.fernet import Fernet
from peewee import IntegrityError

from tests.support.factories import make_account, make_notification
from webapp import create_app, db
from webapp.db import database
from webapp.models import MODELS, ApiToken, AuditEntry, DeliveryAttempt, User, utcnow
from webapp.outbox import queue


def test_migrations_build_exactly_the_models_schema(app):
    for model in MODELS:
        table = model._meta.table_name
        columns = {c.name for c in database.get_columns(table)}
        assert columns == {f.column_name for f in model._meta.sorted_fields}, table
    assert db.schema_version() == db.latest_version()


def test_upgrade_twice_changes_nothing(app):
    assert db.upgrade() == []


@pytest.mark.sqlite_only("SQLite's own pragmas")
def test_database_is_in_wal_mode_with_foreign_keys(app):
    assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1


@pytest.mark.sqlite_only("the SQLite file's permissions")
def test_the_database_file_upgrade_creates_is_owner_only(tmp_path):
    path = tmp_path / "new.db"
    db.init_database(str(path))
    assert db.upgrade()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_the_database_refuses_a_second_default_account(app):
    make_account(is_default=True)
    with pytest.raises(IntegrityError), database.atomic():
        make_account(is_default=True)


def test_the_database_refuses_a_disabled_default_account(app):
    with pytest.raises(IntegrityError), database.atomic():
        make_account(is_default=True, enabled=False)


def test_smtpdesk_db_upgrade_adds_the_session_generation_keeping_every_reference_to_users(
        tmp_path, monkeypatch, empty_database_config):
    """m0006 adds a NOT NULL column to the user table in place: a rebuilt table would have set the audit log's
    actors and the tokens' owners to NULL on the way."""
    every = db.migrations()
    monkeypatch.setenv("SMTPDESK_INSTANCE_PATH", str(tmp_path))
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret-key", "VAULT_KEYS": Fernet.generate_key().decode(),
                      "DATABASE": str(tmp_path / "release5.db"), **empty_database_config})
    monkeypatch.setattr(db, "migrations", lambda: every[:5])
    assert db.upgrade()[-1] == "m0005_delivery_search"
    with database.connection_context():
        for sql in ('INSERT INTO "user" ("id", "username", "password_hash", "role", "active", "created_at") '
                    "VALUES (1, 'alice', 'x', 'admin', TRUE, '2025-01-01')",
                    'INSERT INTO "audit_entry" ("at", "actor_id", "actor_name", "action", "object_type", '
                    '"object_name", "changes_json", "remote_addr") '
                    "VALUES ('2025-01-01', 1, 'alice', 'login', 'user', 'alice', '{}', '')",
                    'INSERT INTO "api_token" ("name", "token_hash", "prefix", "created_by_id", "created_at") '
                    "VALUES ('ci', 'hash', 'smtpdesk_abcdef', 1, '2025-01-01')"):
            database.execute_sql(sql)
    monkeypatch.setattr(db, "migrations", lambda: every[:6])  # later migrations have tests of their own
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0 and "applied m0006_user_session_generation." in result.output
    with database.connection_context():
        assert AuditEntry.get().actor_id == 1 and ApiToken.get().created_by_id == 1
        assert User.get_by_id(1).session_generation == 0


def test_smtpdesk_db_upgrade_builds_an_empty_database_then_finds_it_up_to_date(tmp_path, empty_database_config):
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret-key", "VAULT_KEYS": Fernet.generate_key().decode(),
                      "DATABASE": str(tmp_path / "new.db"), **empty_database_config})
    first = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert first.exit_code == 0
    newest = db.migrations()[-1].__name__.rsplit(".", 1)[1]
    assert "applied m0001_initial, " in first.output and f"{newest}." in first.output
    again = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert again.exit_code == 0 and f"is up to date (schema {db.latest_version()})" in again.output


def test_a_full_disk_is_recognised_on_either_engine():
    """The 503 "storage full" of every route (tests/test_security_errors.py fills SQLite's file) rests on this:
    PostgreSQL's disk_full, as peewee wraps it, is recognised too."""

    def as_peewee_raises(error):
        try:
            with peewee.__exception_wrapper__:
                raise error
        except peewee.PeeweeException as wrapped:
            return wrapped

    assert db.storage_full(as_peewee_raises(psycopg.errors.DiskFull("could not extend file")))
    assert not db.storage_full(as_peewee_raises(psycopg.errors.QueryCanceled("canceling statement")))


def test_a_deadlock_in_a_statement_run_for_many_rows_is_run_again(app, engine, caplog):
    """Two outbox transactions that lock the same rows in opposite orders: PostgreSQL ends one of them with a
    deadlock, and retry_locked() runs it again, also when execute_many() (the outcomes' executemany) hit it, and
    says so in the log."""
    if engine == "sqlite":
        pytest.skip("SQLite has one writer at a time: its transactions cannot deadlock")
    first, second = (User.create(username=name, password_hash="-").id for name in ("first", "second"))
    both_hold_one = threading.Barrier(2, timeout=10)
    runs, errors = [], []

    def update(mine: int, theirs: int):
        def work():
            with db.row_locking():
                runs.append(mine)
                db.execute('UPDATE "user" SET "locale" = ? WHERE "id" = ?', ("pt-BR", mine))
                if runs.count(mine) == 1:
                    both_hold_one.wait()
                db.execute_many('UPDATE "user" SET "locale" = ? WHERE "id" = ?', [("en", theirs)])

        try:
            with queue.connection():
                queue.retry_locked(work)
        except Exception as error:  # the test's thread reports it below
            errors.append(error)

    threads = [threading.Thread(target=update, args=pair) for pair in ((first, second), (second, first))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and len(runs) == 3  # one of the two ran twice
    assert [r.getMessage() for r in caplog.records if r.name == "webapp.outbox.queue"] == [
        "outbox transaction ran into another (deadlock detected): running it again"]
    # The one run again came last: its own row is the one it "held", the other's it "took".
    assert sorted(user.locale for user in User.select()) == ["en", "pt-BR"]


def test_m0015_gives_the_last_hours_attempts_their_relay_and_leaves_older_ones_alone(
        tmp_path, monkeypatch, empty_database_config):
    """The rate limit counts a relay's attempts of the last 60 s by relay_account_id: those of the hour before the
    upgrade get it (the notification's account, or the backup that carried them); older ones stay NULL."""
    every = db.migrations()
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret-key", "VAULT_KEYS": Fernet.generate_key().decode(),
                      "DATABASE": str(tmp_path / "release14.db"), **empty_database_config})
    monkeypatch.setattr(db, "migrations", lambda: [m for m in every if m.__name__ < "webapp.migrations.m0015"])
    db.upgrade()
    with database.connection_context():
        own, backup = make_account(is_default=True), make_account()
        notification = make_notification(account=own)
        now = utcnow()
        for started, via in ((now - timedelta(minutes=1), None), (now - timedelta(minutes=2), backup.id),
                             (now - timedelta(hours=2), None)):
            db.execute('INSERT INTO "delivery_attempt" ("notification_id", "started_at", "duration_ms", "ok", '
                       '"transient", "worker", "via_account_id") VALUES (?, ?, 0, ?, ?, \'w\', ?)',
                       (notification.id, started, False, True, via))
    monkeypatch.setattr(db, "migrations", lambda: every)
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0 and "applied m0015_attempt_relay." in result.output
    with database.connection_context():
        relays = [a.relay_account_id for a in DeliveryAttempt.select().order_by(DeliveryAttempt.started_at.desc())]
    assert relays == [own.id, backup.id, None]
