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
    # SMTP from a request (test dialog, test connector): seconds for connect and each read, and for the whole dialogue.
    SMTP_TIMEOUT = 10
    SMTP_DEADLINE = 30
    # Bounded memory for any request (SECURITY 23): a body over 2 MB is refused with 413. Form fields may use the
    # whole of it, so a long test message (100 KB of accented text, percent-encoded) still gets a field error.
    MAX_CONTENT_LENGTH = 2 * 1024 * 1024
    MAX_FORM_MEMORY_SIZE = 2 * 1024 * 1024
    # The outbox worker (webapp/mail/outbox.py); each key can be set as SMTPDESK_<KEY> too.
    OUTBOX_IN_SERVER = True            # `smtpdesk serve` runs a worker thread; False: only `smtpdesk worker` delivers
    OUTBOX_BATCH_SIZE = 50             # notifications claimed at once
    OUTBOX_LEASE_SECONDS = 180         # a claim's exclusivity; a dead worker's claims come back after it
    OUTBOX_POLL_SECONDS = 1.0          # idle wait between empty claims
    OUTBOX_CONCURRENCY = 4             # accounts delivered in parallel by one worker
    OUTBOX_MAX_ATTEMPTS = 8            # transient failures retried until this many attempts...
    OUTBOX_MAX_AGE_SECONDS = 2 * 86400  # ...or this age, then failed
    OUTBOX_BACKOFF_BASE_SECONDS = 30   # first retry after about this long, doubling each time (with jitter)
    OUTBOX_BACKOFF_MAX_SECONDS = 3600
    OUTBOX_MAX_CONNECTIONS = 4         # per account: workers (each one connection) holding its notifications at once
    OUTBOX_RATE_PER_MINUTE = 0         # per account: attempts started in any 60 seconds (0 = no limit)
    OUTBOX_ACCOUNT_LIMITS = {}         # per account name: {"max_connections": 1, "rate_per_minute": 30}
    OUTBOX_SMTP_TIMEOUT = 30           # connect and each read
    OUTBOX_SMTP_DEADLINE = 60          # one message's whole dialogue
    OUTBOX_SESSION_IDLE_SECONDS = 15   # a kept connection unused this long is closed


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
