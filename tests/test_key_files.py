"""The secret key and the vault keys read from files an administrator names (SMTPDESK_SECRET_KEY_FILE,
SMTPDESK_VAULT_KEYS_FILE), as systemd hands them over with LoadCredential=: the same keys on every host, never
written by smtpdesk, and one line naming the file when it cannot serve."""
import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.support import processes
from tests.support.factories import make_credential
from webapp import create_app, db
from webapp.config import ConfigError
from webapp.db import database
from webapp.models import Credential
from webapp.vault import VaultKeyError

SECRET_KEY = "k" * 20 + "-a-secret-key-of-this-host"


@pytest.fixture
def keys(tmp_path) -> Path:
    """A folder holding secret_key and vault.keys, as /etc/smtpdesk (or $CREDENTIALS_DIRECTORY) does."""
    folder = tmp_path / "credentials"
    folder.mkdir()
    (folder / "secret_key").write_text(SECRET_KEY + "\n")
    (folder / "vault.keys").write_text(Fernet.generate_key().decode() + "\n")
    return folder


@pytest.fixture
def env(tmp_path, keys, monkeypatch) -> dict:
    """The variables of a host whose keys are files; set in this process too (create_app reads them)."""
    for name in [name for name in os.environ if name.startswith("SMTPDESK_")]:
        monkeypatch.delenv(name)
    variables = {"SMTPDESK_INSTANCE_PATH": str(tmp_path / "instance"),
                 "SMTPDESK_DATABASE": str(tmp_path / "smtpdesk.db"),
                 "SMTPDESK_SECRET_KEY_FILE": str(keys / "secret_key"),
                 "SMTPDESK_VAULT_KEYS_FILE": str(keys / "vault.keys")}
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return variables


def real_start(env: dict, *args: str):
    """An `smtpdesk` command run to its end with only these variables of smtpdesk's."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("SMTPDESK_")}
    return processes.run(list(args or ["outbox"]), {**clean, **env})


def assert_one_line_refusal(finished, *, says: str) -> str:
    assert finished.returncode == 2, finished.stderr
    [line] = finished.stderr.splitlines()
    assert line.startswith("Error: ") and says in line, line
    return line


def test_both_keys_come_from_their_files_and_nothing_is_written_to_the_instance(env, keys, tmp_path):
    app = create_app()
    assert app.config["SECRET_KEY"] == SECRET_KEY
    assert app.config["VAULT_KEYS"] == (keys / "vault.keys").read_text().strip()
    assert app.config["VAULT_KEYS_SOURCE"] == f"the key file {keys / 'vault.keys'} (SMTPDESK_VAULT_KEYS_FILE)"
    assert app.config["VAULT_KEY_FILE"] is None  # a copy per host: neither reread nor rewritten
    assert sorted(path.name for path in (tmp_path / "instance").iterdir()) == []


def test_secrets_stored_under_the_file_key_read_back_in_another_start(env, keys):
    app = create_app()
    db.upgrade()
    with app.app_context(), database.connection_context():
        stored = make_credential(secret="read-by-every-host").id
    again = create_app()
    with again.app_context(), database.connection_context():
        assert Credential.get_by_id(stored).reveal_secret() == "read-by-every-host"
    (keys / "vault.keys").write_text(Fernet.generate_key().decode())
    with pytest.raises(VaultKeyError) as refused:
        create_app()
    assert str(refused.value).startswith(f"The vault key in the key file {keys / 'vault.keys'} "
                                         "(SMTPDESK_VAULT_KEYS_FILE) cannot decrypt the secrets stored in")


@pytest.mark.parametrize("name, content, says", [
    ("secret_key", None, "The secret key file {path} (SMTPDESK_SECRET_KEY_FILE) does not exist. Write a random "
                         "secret key there, the same on every host"),
    ("secret_key", "", "The secret key file {path} (SMTPDESK_SECRET_KEY_FILE) is empty."),
    ("secret_key", "short-key\n", "(SMTPDESK_SECRET_KEY_FILE) holds 9 characters where a secret key has at least 32."),
    ("secret_key", b"\xff" * 40, "(SMTPDESK_SECRET_KEY_FILE) is not text."),
    ("secret_key", "folder", "(SMTPDESK_SECRET_KEY_FILE) cannot be read (Is a directory): let the user smtpdesk runs "
                             "as read it, or hand it over with systemd's LoadCredential="),
    ("vault.keys", None, "The vault key file {path} (SMTPDESK_VAULT_KEYS_FILE) does not exist. Put the vault key "
                         "this database was written with there (from your key backup)"),
    ("vault.keys", "", "The vault key file {path} (SMTPDESK_VAULT_KEYS_FILE) holds no key."),
    ("vault.keys", "not-a-vault-key", "(SMTPDESK_VAULT_KEYS_FILE) does not hold a vault key: its key is 15 characters "
                                      "long where a vault key has 44"),
    ("vault.keys", b"\xff" * 44, "(SMTPDESK_VAULT_KEYS_FILE) is not text."),
    ("vault.keys", "folder", "(SMTPDESK_VAULT_KEYS_FILE) cannot be read (Is a directory)"),
], ids=["secret-missing", "secret-empty", "secret-short", "secret-binary", "secret-unreadable", "vault-missing",
        "vault-empty", "vault-not-a-key", "vault-binary", "vault-unreadable"])
def test_a_file_that_cannot_serve_stops_every_start_with_one_line_naming_it(env, keys, name, content, says):
    path = keys / name
    path.unlink()
    if content == "folder":
        path.mkdir()  # root reads any file whatever its mode: a folder cannot be read by anyone
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises((ConfigError, VaultKeyError)) as refused:
        create_app()
    assert says.format(path=path) in str(refused.value)

    line = assert_one_line_refusal(real_start(env), says=says.format(path=path))
    if content and content != "folder":
        assert str(content)[:8] not in line  # a broken key may still be most of the real one


def test_a_key_given_both_ways_is_refused(env, monkeypatch):
    monkeypatch.setenv("SMTPDESK_SECRET_KEY", "x" * 40)
    with pytest.raises(ConfigError, match="^Both SMTPDESK_SECRET_KEY and SMTPDESK_SECRET_KEY_FILE are set: keep one"):
        create_app()
    monkeypatch.delenv("SMTPDESK_SECRET_KEY")
    monkeypatch.setenv("SMTPDESK_VAULT_KEYS", Fernet.generate_key().decode())
    with pytest.raises(ConfigError, match="^Both SMTPDESK_VAULT_KEYS and SMTPDESK_VAULT_KEYS_FILE are set: keep one"):
        create_app()


def test_settings_in_instance_config_are_named_as_settings(tmp_path, keys):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.py").write_text(f"SECRET_KEY_FILE = {str(keys / 'missing')!r}\n")
    finished = real_start({"SMTPDESK_INSTANCE_PATH": str(instance),
                           "SMTPDESK_DATABASE": str(tmp_path / "smtpdesk.db")})
    assert_one_line_refusal(finished, says=f"The secret key file {keys / 'missing'} (SECRET_KEY_FILE) does not exist.")


def test_rotation_prints_the_list_to_write_into_the_file_on_every_host(env, keys):
    """Each host holds its own copy, which may not even be writable (a systemd credential): the command writes none."""
    app = create_app()
    db.upgrade()
    with app.app_context(), database.connection_context():
        stored = make_credential(secret="rotated-everywhere").id
    old_key = (keys / "vault.keys").read_text().strip()

    result = app.test_cli_runner().invoke(args=["vault", "rotate-key"])
    assert result.exit_code == 0, result.output
    assert f"The vault keys come from the file {keys / 'vault.keys'}. Write this list" in result.output
    listed = result.output.splitlines()[1]
    new_key, kept = listed.split(",")
    assert kept == old_key and Fernet(new_key)
    assert (keys / "vault.keys").read_text().strip() == old_key

    (keys / "vault.keys").write_text(listed + "\n")  # on every host, then every process restarts
    restarted = create_app()
    result = restarted.test_cli_runner().invoke(args=["vault", "reencrypt", "--retire-old"])
    assert result.exit_code == 0, result.output
    assert f"Write this into {keys / 'vault.keys'} on every host" in result.output
    assert result.output.splitlines()[-1] == new_key
    with restarted.app_context(), database.connection_context():
        token = Credential.get_by_id(stored).secret_encrypted
    assert Fernet(new_key).decrypt(token.encode()) == b"rotated-everywhere"
