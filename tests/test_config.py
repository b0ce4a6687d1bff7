import os
import stat

from webapp import create_app


def test_first_start_creates_owner_only_keys_in_the_instance_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SMTPDESK_INSTANCE_PATH", str(tmp_path))
    for name in ("SMTPDESK_SECRET_KEY", "SMTPDESK_VAULT_KEYS", "SMTPDESK_DATABASE"):
        monkeypatch.delenv(name, raising=False)
    app = create_app()
    for name in ("secret_key", "vault.key"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    assert app.config["DATABASE"] == str(tmp_path / "smtpdesk.db")
    # A second start reads the same keys.
    again = create_app()
    assert again.config["SECRET_KEY"] == app.config["SECRET_KEY"]
    assert again.config["VAULT_KEYS"] == app.config["VAULT_KEYS"]


def test_keys_from_the_environment_win_and_no_file_is_written(tmp_path, monkeypatch):
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    monkeypatch.setenv("SMTPDESK_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("SMTPDESK_SECRET_KEY", "from-env")
    monkeypatch.setenv("SMTPDESK_VAULT_KEYS", key)
    app = create_app()
    assert app.config["SECRET_KEY"] == "from-env"
    assert app.config["VAULT_KEYS"] == key
    assert not (tmp_path / "secret_key").exists() and not (tmp_path / "vault.key").exists()
