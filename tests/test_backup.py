"""`smtpdesk backup PATH`: a consistent copy of the live database (SQLite online backup), owner-only.

The backup: taken while the app writes; says how to restore; the vault key is not in it.
"""
import os
import sqlite3
import threading

import pytest
from cryptography.fernet import Fernet

from tests.support.factories import make_credential
from webapp import create_app
from webapp.db import database
from webapp.models import Credential
from webapp.vault import VaultKeyError

pytestmark = pytest.mark.sqlite_only("`smtpdesk backup` copies the SQLite file; on PostgreSQL it points to pg_dump "
                                     "(tests/test_postgresql.py)")


def test_a_backup_taken_while_another_thread_writes_is_consistent_and_owner_only(app, runner, tmp_path):
    for n in range(50):
        make_credential(name=f"before-{n}", secret=f"secret-before-{n}")
    written, stop = [], threading.Event()

    def keep_writing():
        with database.connection_context():
            n = 0
            while not stop.is_set() or n < 20:
                written.append(make_credential(name=f"during-{n}", secret=f"secret-during-{n}").id)
                n += 1

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        while len(written) < 5:  # the writer is busy before the backup starts
            threading.Event().wait(0.005)
        target = tmp_path / "backups" / "smtpdesk-copy.db"
        target.parent.mkdir()
        result = runner.invoke(args=["backup", str(target)])
    finally:
        stop.set()
        writer.join(30)
    assert result.exit_code == 0, result.output
    assert os.stat(target).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["smtpdesk-copy.db"]  # no -wal, no temporary

    copy = sqlite3.connect(target)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one self-contained file
        names = [name for (name,) in copy.execute("SELECT name FROM credential ORDER BY id")]
    finally:
        copy.close()
    # Every row committed before the copy, then a prefix of the concurrent ones: a moment's state, nothing torn.
    assert names[:50] == [f"before-{n}" for n in range(50)]
    during = names[50:]
    assert during == [f"during-{n}" for n in range(len(during))]
    assert Credential.select().count() == 50 + len(written) >= len(names)


def test_the_command_says_how_to_restore_and_that_the_vault_key_is_not_in_it(app, runner, tmp_path):
    make_credential(secret="in-the-backup-encrypted")
    target = tmp_path / "copy.db"
    result = runner.invoke(args=["backup", str(target)])
    assert result.exit_code == 0, result.output
    source = app.config["DATABASE"]
    assert f"written to {target} (mode 0600" in result.output
    assert f"stop smtpdesk (serve and every worker); copy the backup over {source}" in result.output
    assert "start smtpdesk again" in result.output
    assert "The vault key is NOT in this backup" in result.output and "separately" in result.output
    assert app.config["VAULT_KEYS"] not in target.read_bytes().decode("latin-1")
    assert b"in-the-backup-encrypted" not in target.read_bytes()


def test_a_restored_backup_reads_its_secrets_with_the_same_key_and_not_without_it(app, runner, tmp_path):
    credential = make_credential(secret="restored-secret-1")
    target = tmp_path / "restore" / "smtpdesk.db"
    target.parent.mkdir()
    assert runner.invoke(args=["backup", str(target)]).exit_code == 0
    restored = create_app({"TESTING": True, "SECRET_KEY": "x", "VAULT_KEYS": app.config["VAULT_KEYS"],
                           "DATABASE": str(target)})
    with restored.app_context(), database.connection_context():
        assert Credential.get_by_id(credential.id).reveal_secret() == "restored-secret-1"
    with pytest.raises(VaultKeyError, match="cannot decrypt the secrets stored in"):  # the copy alone reveals none
        create_app({"TESTING": True, "SECRET_KEY": "x", "VAULT_KEYS": Fernet.generate_key().decode(),
                    "DATABASE": str(target)})


def test_an_existing_file_is_kept_unless_forced_and_the_live_database_is_refused(app, runner, tmp_path):
    target = tmp_path / "copy.db"
    target.write_text("keep me")
    result = runner.invoke(args=["backup", str(target)])
    assert result.exit_code == 2 and "give --force to replace it" in result.output
    assert target.read_text() == "keep me"
    assert runner.invoke(args=["backup", "--force", str(target)]).exit_code == 0
    assert os.stat(target).st_mode & 0o777 == 0o600
    result = runner.invoke(args=["backup", "--force", app.config["DATABASE"]])
    assert result.exit_code == 2 and "the live database itself" in result.output
