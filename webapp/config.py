"""Configuration defaults and the key files kept in the instance folder."""
import os
import secrets
from datetime import timedelta
from pathlib import Path

from cryptography.fernet import Fernet


class Defaults:
    """Settings every instance starts from; instance/config.py and SMTPDESK_* variables override them."""

    SECRET_KEY = None  # read from instance/secret_key unless given
    VAULT_KEYS = None  # comma-separated Fernet keys, newest first; else instance/vault.key
    # Or the path of a file holding either (SMTPDESK_SECRET_KEY_FILE, SMTPDESK_VAULT_KEYS_FILE), such as a systemd
    # credential (LoadCredential=, $CREDENTIALS_DIRECTORY): read at start-up, never written or created by smtpdesk.
    SECRET_KEY_FILE = None
    VAULT_KEYS_FILE = None
    VAULT_KEY_FILE = None  # set at start-up: the key file the keys came from (None: from VAULT_KEYS)
    DATABASE = None  # instance/smtpdesk.db unless given
    # postgresql://user:password@host:port/name (SMTPDESK_DATABASE_URL): that PostgreSQL database instead of the file.
    DATABASE_URL = None
    BABEL_DEFAULT_LOCALE = "pt_BR"
    BABEL_DEFAULT_TIMEZONE = "UTC"
    LANGUAGES = {"pt_BR": "Português (Brasil)", "en": "English"}
    PAGE_SIZE = 30
    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the session
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    # Sessions are made permanent at sign-in and end this long after their cookie was last signed: Flask signs it
    # again only when the session changes (a flashed confirmation), not on every request.
    PERMANENT_SESSION_LIFETIME = timedelta(hours=8)
    SESSION_REFRESH_EACH_REQUEST = False
    # SMTPDESK_BEHIND_HTTPS=1 behind a TLS reverse proxy: cookies get Secure, and ProxyFix takes the client
    # address, scheme and host from the proxy's X-Forwarded-* headers (trust one proxy hop only).
    BEHIND_HTTPS = False
    # Sign-in lock-out, counted from the audit log's login_failed entries (so every process sees the same counts).
    LOGIN_MAX_FAILURES_PER_USER = 5       # failures for one username within the window
    LOGIN_MAX_FAILURES_PER_ADDRESS = 20   # failures from one client address within the window
    LOGIN_WINDOW_SECONDS = 15 * 60
    HOST = "127.0.0.1"
    PORT = 5000
    # `smtpdesk serve`: waitress threads serving requests (a slow test dialog waits in one, not in line).
    SERVE_THREADS = 8
    # SMTP from a request (test dialog, test connector): seconds for connect and each read, and for the whole dialogue.
    SMTP_TIMEOUT = 10
    SMTP_DEADLINE = 30
    # Bounded memory for any request: a body over 2 MB is refused with 413. Form fields may use the
    # whole of it, so a long test message (100 KB of accented text, percent-encoded) still gets a field error.
    MAX_CONTENT_LENGTH = 2 * 1024 * 1024
    MAX_FORM_MEMORY_SIZE = 2 * 1024 * 1024
    # The outbox worker (webapp/outbox/); each key can be set as SMTPDESK_<KEY> too.
    OUTBOX_IN_SERVER = True            # `smtpdesk serve` runs a worker thread; False: only `smtpdesk worker` delivers
    OUTBOX_BATCH_SIZE = 250            # notifications claimed at once
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
    # Monitoring (README "Monitoring"). Each outbox worker writes a heartbeat this often (and checks the report
    # schedule as often); GET /readyz answers 503 when none was written for READY_HEARTBEAT_MAX_AGE_SECONDS (keep it a
    # few heartbeats long). GET /metrics answers only requests with "Authorization: Bearer <METRICS_TOKEN>"; unset,
    # it answers nobody.
    WORKER_HEARTBEAT_SECONDS = 30
    READY_HEARTBEAT_MAX_AGE_SECONDS = 120
    METRICS_TOKEN = None
    # OAuth 2.0 token and authorization URLs must be https; True also allows plain http to this machine (localhost,
    # 127.0.0.0/8, ::1), for test OAuth servers. SMTPDESK_OAUTH_ALLOW_LOOPBACK=true.
    OAUTH_ALLOW_LOOPBACK = False
    # Networks no SMTP host or connector host may be reached in, checked on every address a name resolves to (test
    # dialog, test these settings, test connector, worker). A list, or one string separated by commas or spaces
    # (SMTPDESK_OUTBOUND_BLOCKED_NETWORKS). Private LAN ranges stay allowed: internal relays are the common case.
    OUTBOUND_BLOCKED_NETWORKS = (
        "169.254.0.0/16",      # IPv4 link-local: the metadata service of AWS, GCP, Azure, OpenStack, Oracle...
        "fe80::/10",           # IPv6 link-local
        "fd00:ec2::254/128",   # AWS instance metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "192.0.0.192/32",      # Oracle Cloud (OCI) legacy metadata
        "168.63.129.16/32",    # Azure WireServer / host agent
    )


# A secret key read from a file must be at least this long: the instance's own is 64 characters.
MIN_SECRET_KEY_LENGTH = 32
METRICS_TOKEN_MIN_LENGTH = 24


class ConfigError(Exception):
    """A setting that cannot work: the app refuses to start and says which one (no traceback)."""


def check_settings(config) -> None:
    """Refuse at start-up what would otherwise fail only at the first send."""
    from webapp import postgresql
    from webapp.mail.connectors import parse_networks

    url = config.get("DATABASE_URL")
    if url and not postgresql.is_url(url):
        raise ConfigError("DATABASE_URL must be a PostgreSQL URL, postgresql://user:password@host:port/name; leave "
                          "it unset for the SQLite file (DATABASE).")
    token = config.get("METRICS_TOKEN")
    if token and len(str(token)) < METRICS_TOKEN_MIN_LENGTH:
        raise ConfigError(f"METRICS_TOKEN must be at least {METRICS_TOKEN_MIN_LENGTH} characters long; make one with "
                          "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'.")
    try:
        parse_networks(config["OUTBOUND_BLOCKED_NETWORKS"])
    except ValueError as error:
        raise ConfigError(str(error)) from None


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
    """Fill SECRET_KEY, VAULT_KEYS and DATABASE from the files named, else the instance folder, when not configured."""
    instance = Path(instance_path)
    if config.get("SECRET_KEY_FILE"):
        config["SECRET_KEY"] = read_secret_key_file(config)
    elif not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = read_or_create_key(
            instance / "secret_key", lambda: secrets.token_urlsafe(48)
        )
    if not config.get("DATABASE"):
        config["DATABASE"] = str(instance / "smtpdesk.db")
    if config.get("VAULT_KEYS_FILE"):
        load_named_vault_keys(config)
        return
    if not config.get("VAULT_KEYS"):
        load_vault_key_file(config, instance / "vault.key")
        return
    from webapp.vault import VaultKeyError, key_problem, parse_keys

    variable = os.environ.get("SMTPDESK_VAULT_KEYS")
    config["VAULT_KEY_FILE"] = None
    config["VAULT_KEYS_SOURCE"] = "the SMTPDESK_VAULT_KEYS variable" if variable else "the VAULT_KEYS setting"
    problem = key_problem(parse_keys(config["VAULT_KEYS"]))
    if problem:
        where = "The SMTPDESK_VAULT_KEYS variable" if variable else "The VAULT_KEYS setting"
        raise VaultKeyError(f"{where} {problem}. Set it to the vault key this database was written with (from "
                            "your key backup), newest first if you keep several (\"new,old\"), then start again.")


def _named(key: str) -> str:
    """How a message names a setting: the variable it came from, else the setting (instance/config.py)."""
    return f"SMTPDESK_{key}" if os.environ.get(f"SMTPDESK_{key}") else key


def _read_named_file(config, key: str, given: str, what: str, fix: str) -> tuple[Path, str]:
    """The path a *_FILE setting names and the text in it, stripped. ConfigError, one line naming the file and what
    is wrong (then fix), when the setting it stands for (given) is set too or the file cannot be read as text."""
    path = Path(str(config[key]))
    if config.get(given):
        raise ConfigError(f"Both {_named(given)} and {_named(key)} are set: keep one of them.")
    try:
        return path, path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        problem = "is not text"
    except FileNotFoundError:
        problem = "does not exist"
    except OSError as error:
        problem = (f"cannot be read ({error.strerror}): let the user smtpdesk runs as read it, or hand it over with "
                   "systemd's LoadCredential=")
    raise ConfigError(f"The {what} {path} ({_named(key)}) {problem}. {fix}")


SECRET_KEY_FIX = ("Write a random secret key there, the same on every host, for example the output of: "
                  "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'")
VAULT_KEYS_FIX = ("Put the vault key this database was written with there (from your key backup), newest first if "
                  "you keep several (\"new,old\"), then start again.")


def read_secret_key_file(config) -> str:
    """SECRET_KEY from the file SECRET_KEY_FILE names: at least MIN_SECRET_KEY_LENGTH characters."""
    path, key = _read_named_file(config, "SECRET_KEY_FILE", "SECRET_KEY", "secret key file", SECRET_KEY_FIX)
    if len(key) < MIN_SECRET_KEY_LENGTH:
        held = "is empty" if not key else f"holds {len(key)} characters where a secret key has at least " \
                                          f"{MIN_SECRET_KEY_LENGTH}"
        raise ConfigError(f"The secret key file {path} ({_named('SECRET_KEY_FILE')}) {held}. {SECRET_KEY_FIX}")
    return key


def load_named_vault_keys(config) -> None:
    """VAULT_KEYS from the file VAULT_KEYS_FILE names, in VAULT_KEYS' form ("new,old"). Only read, at start-up: each
    host holds a copy, so `smtpdesk vault rotate-key` prints the list to write into it on every host."""
    from webapp.vault import VaultKeyError, key_problem, parse_keys

    path, keys = _read_named_file(config, "VAULT_KEYS_FILE", "VAULT_KEYS", "vault key file", VAULT_KEYS_FIX)
    problem = key_problem(parse_keys(keys))
    if problem:
        raise VaultKeyError(f"The vault key file {path} ({_named('VAULT_KEYS_FILE')}) {problem}. {VAULT_KEYS_FIX}")
    config["VAULT_KEYS"] = keys
    config["VAULT_KEY_FILE"] = None  # neither reread nor rewritten, as keys from the variable
    config["VAULT_KEYS_SOURCE"] = f"the key file {path} ({_named('VAULT_KEYS_FILE')})"


def load_vault_key_file(config, path: Path) -> None:
    """VAULT_KEYS from the instance's vault.key, created on first use only while no secret is stored."""
    from webapp.db import location
    from webapp.postgresql import shown
    from webapp.vault import VaultKeyError, first_stored_token, key_problem, parse_keys

    database = location(config)
    if not path.exists() and first_stored_token(database) is not None:
        # A new key would silently make every stored secret unreadable: refuse instead.
        raise VaultKeyError(
            f"The vault key file {path} is missing, but {shown(database)} holds encrypted secrets. "
            f"Restore {path} from your key backup (or set SMTPDESK_VAULT_KEYS) and start again; "
            "no new key was written.")
    try:
        keys = read_or_create_key(path, lambda: Fernet.generate_key().decode())
    except UnicodeDecodeError:
        problem = "does not hold a vault key: it is not text (a vault key is 44 characters of URL-safe base64)"
    except OSError as error:
        problem = f"cannot be read ({error.strerror})"
    else:
        problem = key_problem(parse_keys(keys))
    if problem:
        if first_stored_token(database) is None:
            fix = ("No secret is stored yet: put back the key from your key backup, or delete the file and smtpdesk "
                   "writes a new key at its next start.")
        else:
            fix = (f"Put back the key {shown(database)} was written with, from your key backup, then start "
                   "again; a new key would leave its stored secrets unreadable.")
        raise VaultKeyError(f"The vault key file {path} {problem}. {fix}")
    config["VAULT_KEYS"] = keys
    config["VAULT_KEY_FILE"] = str(path)
    config["VAULT_KEYS_SOURCE"] = f"the key file {path}"


def apply_reverse_proxy(app) -> None:
    """When BEHIND_HTTPS: Secure cookies, and the client address and scheme read from the reverse proxy."""
    if not app.config.get("BEHIND_HTTPS"):
        return
    from werkzeug.middleware.proxy_fix import ProxyFix

    app.config["SESSION_COOKIE_SECURE"] = True
    app.config["REMEMBER_COOKIE_SECURE"] = True
    # One proxy hop: X-Forwarded-* set by anything further out could be forged by the client.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)
