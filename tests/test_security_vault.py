"""The vault key: `smtpdesk vault rotate-key` with no downtime, and a clear refusal to start on a missing or wrong key.

The vault: MultiFernet with the new key first while old keys still read; rows re-encrypted a few per
transaction; a running process (old key list) keeps reading throughout; startup errors say which key and how to fix.
"""
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken

from tests.support import processes
from tests.support.apps import elsewhere
from tests.support.factories import make_connector, make_credential
from tests.support.net import free_port
from webapp import create_app, db
from webapp.db import database
from webapp.models import Connector, Credential
from webapp.vault import SECRET_COLUMNS, Vault, VaultKeyError, vault


def make_app(instance: Path, **config):
    """An app whose instance folder is `instance` (vault.key and smtpdesk.db there unless configured: a
    DATABASE_URL, say)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SMTPDESK_INSTANCE_PATH", str(instance))
        return create_app({"TESTING": True, "SECRET_KEY": "test-secret-key",
                           "DATABASE": str(instance / "smtpdesk.db"), **config})


@pytest.fixture
def instance(tmp_path) -> Path:
    return tmp_path / "instance"


@pytest.fixture
def file_app(instance, database_config):
    """An app keeping its vault key in instance/vault.key, as a real installation does."""
    app = make_app(instance, **database_config)
    db.upgrade()
    with app.app_context():
        database.connect(reuse_if_open=True)
        yield app
        if not database.is_closed():
            database.close()


def stored_tokens(app) -> dict[tuple[str, int], str]:
    """Every vault token in the database by (table, id), read as another process would."""
    return {(table, row_id): token for table, column in SECRET_COLUMNS
            for row_id, token in elsewhere(app, f'SELECT "id", "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL')}


def database_of(app) -> dict:
    """The settings naming the app's PostgreSQL database (none for SQLite: the instance folder names the file)."""
    return {"DATABASE_URL": app.config["DATABASE_URL"]} if app.config.get("DATABASE_URL") else {}


def database_env(app) -> dict:
    """database_of(app) as environment variables, for an `smtpdesk` process."""
    return {f"SMTPDESK_{name}": value for name, value in database_of(app).items()}


def make_secrets(credentials=60, connectors=10) -> dict[tuple[str, int], str]:
    expected = {}
    for n in range(credentials):
        expected["credential", make_credential(secret=f"cred-secret-{n:03d}-ç").id] = f"cred-secret-{n:03d}-ç"
    for n in range(connectors):
        expected["connector", make_connector(password=f"proxy-pass-{n:03d}").id] = f"proxy-pass-{n:03d}"
    return expected


def key_file_of(app) -> Path:
    return Path(app.config["VAULT_KEY_FILE"])


def keys_in(path: Path) -> list[str]:
    return path.read_text().strip().split(",")


# --- Rotation --------------------------------------------------------------------------------------------------


def test_rotation_keeps_a_second_instance_reading_throughout(file_app, monkeypatch):
    """A process started with the old key list reads every secret before, during and after the rotation."""
    expected = make_secrets()
    key_file = key_file_of(file_app)
    [old_key] = keys_in(key_file)
    other_instance = Vault()
    other_instance.init(keys_in(key_file), key_file)   # what a second `smtpdesk serve` loaded at start
    failures, passes, mixed_passes = [], [], []
    stop, seen_mixed = threading.Event(), threading.Event()

    def keep_reading():
        while not stop.is_set():
            tokens = stored_tokens(file_app)
            under_old = 0
            for where, token in tokens.items():
                try:
                    if other_instance.decrypt(token) != expected[where]:
                        failures.append((where, "wrong value"))
                except Exception as error:  # noqa: BLE001 - any failure to read is what this test is about
                    failures.append((where, repr(error)))
                try:
                    Fernet(old_key).decrypt(token.encode())
                    under_old += 1
                except InvalidToken:
                    pass
            passes.append(len(tokens))
            if 0 < under_old < len(tokens):
                mixed_passes.append(under_old)
                seen_mixed.set()

    rotate = vault.rotate
    rotated = []

    def slow_rotate(token):
        rotated.append(token)
        if len(rotated) == 8:
            # The first batch of 7 is committed: wait until the reader has seen the table half rotated (its passes
            # open connections of their own, slow on a busy machine), as it would in a table of many batches.
            seen_mixed.wait(10)
        time.sleep(0.003)  # a bigger table: the reader gets more passes in while rows are half rotated
        return rotate(token)

    monkeypatch.setattr(vault, "rotate", slow_rotate)
    reader = threading.Thread(target=keep_reading)
    reader.start()
    try:
        result = file_app.test_cli_runner().invoke(args=["vault", "rotate-key", "--batch-size", "7"])
    finally:
        time.sleep(0.05)
        stop.set()
        reader.join(10)
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 70 secrets under the newest key." in result.output
    assert failures == []
    assert mixed_passes, "the reader never saw the table half rotated"
    assert len(passes) > len(mixed_passes) and all(count == len(expected) for count in passes)
    new_key, kept = keys_in(key_file)
    assert kept == old_key and new_key != old_key
    assert other_instance.keys == [new_key, old_key]  # it reread the key file on its own
    assert os.stat(key_file).st_mode & 0o777 == 0o600


def test_after_rotation_every_row_decrypts_with_the_new_key_alone(file_app):
    expected = make_secrets(credentials=12, connectors=3)
    key_file = key_file_of(file_app)
    [old_key] = keys_in(key_file)
    result = file_app.test_cli_runner().invoke(args=["vault", "rotate-key", "--retire-old"])
    assert result.exit_code == 0, result.output
    assert "Old vault keys retired" in result.output
    [new_key] = keys_in(key_file)
    assert new_key != old_key and os.stat(key_file).st_mode & 0o777 == 0o600
    assert not list(key_file.parent.glob(".vault.key.*"))  # no temporary file left behind
    for where, token in stored_tokens(file_app).items():
        assert Fernet(new_key).decrypt(token.encode()).decode() == expected[where]
        with pytest.raises(InvalidToken):
            Fernet(old_key).decrypt(token.encode())
    # The app itself, restarted with the file as it now is, reads them all.
    restarted = make_app(key_file.parent, **database_of(file_app))
    with restarted.app_context(), database.connection_context():
        assert {("credential", c.id): c.reveal_secret() for c in Credential.select()} | {
            ("connector", c.id): c.reveal_secret() for c in Connector.select()} == expected


def test_retiring_in_a_second_step_catches_secrets_written_meanwhile_under_the_old_key(file_app):
    """A process that had not reread the key file yet saves a secret under the old key: retire-old re-encrypts it."""
    make_secrets(credentials=3, connectors=1)
    key_file = key_file_of(file_app)
    [old_key] = keys_in(key_file)
    runner = file_app.test_cli_runner()
    result = runner.invoke(args=["vault", "rotate-key"])
    assert result.exit_code == 0, result.output
    assert "run `smtpdesk vault retire-old`" in result.output
    assert len(keys_in(key_file)) == 2
    late = make_credential(secret="placeholder")
    Credential.update(secret_encrypted=Fernet(old_key).encrypt("written-late-9".encode()).decode()).where(
        Credential.id == late.id).execute()
    result = runner.invoke(args=["vault", "retire-old"])
    assert result.exit_code == 0, result.output
    [new_key] = keys_in(key_file)
    assert Fernet(new_key).decrypt(Credential.get_by_id(late.id).secret_encrypted.encode()) == b"written-late-9"


def test_with_keys_from_the_environment_the_new_list_is_printed_to_set(app, tmp_path):
    """SMTPDESK_VAULT_KEYS cannot be rewritten from here: the command prints the list, re-encrypts in a second step."""
    credential = make_credential(secret="env-secret-123")
    old_key = app.config["VAULT_KEYS"]
    before = Credential.get_by_id(credential.id).secret_encrypted
    result = app.test_cli_runner().invoke(args=["vault", "rotate-key"])
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("SMTPDESK_VAULT_KEYS=")]
    new_key, kept = line.removeprefix("SMTPDESK_VAULT_KEYS=").split(",")
    assert kept == old_key and Fernet(new_key)
    assert Credential.get_by_id(credential.id).secret_encrypted == before  # nothing re-encrypted yet
    assert not list(tmp_path.glob("vault.key*"))

    # Step two, once every process runs with the new list.
    restarted = create_app({"TESTING": True, "SECRET_KEY": "x", "VAULT_KEYS": f"{new_key},{old_key}",
                            "DATABASE": app.config["DATABASE"], **database_of(app)})
    result = restarted.test_cli_runner().invoke(args=["vault", "reencrypt", "--retire-old"])
    assert result.exit_code == 0, result.output
    assert f"SMTPDESK_VAULT_KEYS={new_key}\n" in result.output
    token = Credential.get_by_id(credential.id).secret_encrypted
    assert Fernet(new_key).decrypt(token.encode()) == b"env-secret-123"


# --- Refusing to start -----------------------------------------------------------------------------------------


def test_a_wrong_key_file_is_a_clear_startup_error(file_app):
    make_credential(secret="kept-safe-77")
    key_file = key_file_of(file_app)
    key_file.write_text(Fernet.generate_key().decode() + "\n")
    with pytest.raises(VaultKeyError) as refused:
        make_app(key_file.parent, **database_of(file_app))
    message = str(refused.value)
    assert f"The vault key in the key file {key_file} cannot decrypt the secrets stored in" in message
    assert "Put back the key this database was written with" in message
    assert key_file.read_text().strip() not in message and "kept-safe-77" not in message


def test_a_wrong_key_in_the_environment_names_the_variable_and_smtpdesk_exits_without_a_traceback(file_app):
    make_connector(password="proxy-kept-safe")
    environment = {**os.environ, "SMTPDESK_INSTANCE_PATH": str(key_file_of(file_app).parent),
                   "SMTPDESK_VAULT_KEYS": Fernet.generate_key().decode(), **database_env(file_app)}
    finished = processes.run(["outbox"], environment)
    assert finished.returncode == 2
    assert "Error: The vault key in the SMTPDESK_VAULT_KEYS variable cannot decrypt" in finished.stderr
    assert "Traceback" not in finished.stderr and "proxy-kept-safe" not in finished.stderr


def test_a_missing_key_file_with_stored_secrets_refuses_to_start_and_writes_no_new_key(file_app):
    make_credential(secret="would-be-lost-1")
    key_file = key_file_of(file_app)
    key_file.unlink()
    with pytest.raises(VaultKeyError) as refused:
        make_app(key_file.parent, **database_of(file_app))
    assert f"The vault key file {key_file} is missing" in str(refused.value)
    assert "no new key was written" in str(refused.value)
    assert not key_file.exists()

    environment = {**os.environ, "SMTPDESK_INSTANCE_PATH": str(key_file.parent), **database_env(file_app)}
    environment.pop("SMTPDESK_VAULT_KEYS", None)
    finished = processes.run(["serve", "--port", "1"], environment)
    assert finished.returncode == 2
    assert f"Error: The vault key file {key_file} is missing" in finished.stderr
    assert "Traceback" not in finished.stderr
    assert not key_file.exists()


def test_a_first_start_without_secrets_still_creates_the_key(instance, database_config):
    make_app(instance, **database_config)
    assert len(keys_in(instance / "vault.key")) == 1
    assert os.stat(instance / "vault.key").st_mode & 0o777 == 0o600


# --- SECURITY 40: a key that cannot work stops every command with one line --------------------------------------


def bad_key(kind: str, good_key: str) -> bytes:
    """The content of a vault.key that cannot be used, by kind."""
    return {"empty": b"",
            "text": b"correct horse battery staple\n",
            "random": b"\xff" + os.urandom(31),  # 0xff never occurs in UTF-8: not text
            "truncated": good_key[:30].encode() + b"\n"}[kind]


WHAT_IS_WRONG = {"empty": "holds no key.",
                 "text": "does not hold a vault key: its key is 28 characters long where a vault key has 44",
                 "random": "does not hold a vault key: it is not text",
                 "truncated": "does not hold a vault key: its key is 30 characters long where a vault key has 44"}


def instance_only_env(instance: Path, **variables) -> dict:
    """The environment of a real start on this instance folder: nothing configured but the folder."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("SMTPDESK_")}
    return {**env, "SMTPDESK_INSTANCE_PATH": str(instance), **variables}


def assert_one_line_refusal(finished, *, starts: str, says: str, never: str | None = None) -> None:
    assert finished.returncode == 2, finished.stderr
    assert finished.stdout == ""
    [line] = finished.stderr.splitlines()
    assert line.startswith(starts) and says in line, line
    assert never is None or never not in line


@pytest.mark.parametrize("kind", WHAT_IS_WRONG)
def test_security_40_a_bad_key_file_stops_smtpdesk_with_one_line_naming_the_file(file_app, kind):
    make_credential(secret="kept-safe-40")
    key_file = key_file_of(file_app)
    [good_key] = keys_in(key_file)
    key_file.write_bytes(bad_key(kind, good_key))

    finished = processes.run(["serve", "--port", "1"], instance_only_env(key_file.parent, **database_env(file_app)))

    assert_one_line_refusal(finished, starts=f"Error: The vault key file {key_file} ", says=WHAT_IS_WRONG[kind],
                            never=good_key[:30])
    assert "Put back the key" in finished.stderr and "from your key backup" in finished.stderr
    assert "correct horse" not in finished.stderr and "kept-safe-40" not in finished.stderr


def test_security_40_every_command_stops_the_same_way_and_changes_nothing(file_app, tmp_path):
    make_credential(secret="kept-safe-40")
    key_file = key_file_of(file_app)
    key_file.write_text(keys_in(key_file)[0][:30] + "\n")
    broken = key_file.read_bytes()
    env = instance_only_env(key_file.parent, **database_env(file_app))
    password = "a-long-enough-password"
    commands = [["--help"], ["db", "upgrade"], ["serve", "--port", "1"], ["worker"], ["worker", "--until-idle"],
                ["users", "create", "bob", "--password", password],
                ["users", "set-password", "bob", "--password", password],
                ["send", "--to", "ops@example.com", "--subject", "s", "--body", "b"], ["outbox"],
                ["vault", "rotate-key"], ["vault", "reencrypt"], ["vault", "retire-old"],
                ["backup", str(tmp_path / "copy.db")]]
    for command in commands:
        finished = processes.run(command, env)
        assert_one_line_refusal(finished, starts=f"Error: The vault key file {key_file} ",
                                says=WHAT_IS_WRONG["truncated"])
        assert "Put back the key" in finished.stderr, command
    assert key_file.read_bytes() == broken  # not replaced, not rotated
    assert not (tmp_path / "copy.db").exists()


@pytest.mark.parametrize("keys, says", [
    (" , ", "holds no key."),
    ("not-a-vault-key", "its key is 15 characters long where a vault key has 44"),
    ("GOOD,GOOD_CUT", "its key number 2 (of 2, comma-separated) is 20 characters long"),
], ids=["no-key", "text", "second-key-truncated"])
def test_security_40_a_bad_key_in_the_environment_names_the_variable(instance, keys, says):
    good = Fernet.generate_key().decode()
    keys = keys.replace("GOOD_CUT", good[:20]).replace("GOOD", good)
    finished = processes.run(["worker"], instance_only_env(instance, SMTPDESK_VAULT_KEYS=keys))
    assert_one_line_refusal(finished, starts="Error: The SMTPDESK_VAULT_KEYS variable ", says=says,
                            never=good[:20])
    assert not (instance / "vault.key").exists()


def test_security_40_gunicorn_stops_with_the_same_line(file_app):
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    key_file = key_file_of(file_app)
    key_file.write_text("")
    # The command of the README: with --preload the app is made once, before gunicorn starts its workers.
    finished = subprocess.run(
        [gunicorn, "--preload", "--workers", "2", "--bind", f"127.0.0.1:{free_port()}", "webapp:create_app_or_exit()"],
        env={**instance_only_env(key_file.parent, **database_env(file_app)), "PYTHONPATH": processes.CHECKOUT},
        capture_output=True, text=True, timeout=60)
    assert_one_line_refusal(finished, starts=f"Error: The vault key file {key_file} ", says="holds no key.")
    assert "No secret is stored yet" in finished.stderr and "delete the file" in finished.stderr
