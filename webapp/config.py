"""Configuration defaults and the key files kept in the instance folder."""
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet


class Defaults:
    """Settings every instance starts from; instance/config.py and SMTPDESK_* variables override them."""

    SECRET_KEY = None  # read from instance/secret_key unless given
    VAULT_KEYS = None  # comma-separated Fernet keys, newest first; else instance/vault.key
    DATABASE = None  # instance/smtpdesk.db unless given
    BABEL_DEFAULT_LOCALE = "pt_BR"
    BABEL_DEFAULT_TIMEZONE = "UTC"
    LANGUAGES = {"pt_BR": "Português (Brasil)", "en": "English"}
    PAGE_SIZE = 30
    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the session
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    HOST = "127.0.0.1"
    PORT = 5000


def read_or_create_key(path: Path, make) -> str:
    """Return the key stored at path, creating it with mode 0600 on first use."""
    if path.exists():
        return path.read_text().strip()
    key = make()
    # O_EXCL: two processes starting together must not both write a key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def load_keys(config, instance_path: str) -> None:
    """Fill SECRET_KEY, VAULT_KEYS and DATABASE from the instance folder when not configured."""
    instance = Path(instance_path)
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = read_or_create_key(
            instance / "secret_key", lambda: secrets.token_urlsafe(48)
        )
    if not config.get("VAULT_KEYS"):
        config["VAULT_KEYS"] = read_or_create_key(
            instance / "vault.key", lambda: Fernet.generate_key().decode()
        )
    if not config.get("DATABASE"):
        config["DATABASE"] = str(instance / "smtpdesk.db")
