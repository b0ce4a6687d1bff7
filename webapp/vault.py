"""The credential vault's encryption: Fernet tokens under a key kept outside the database."""
import os
import sqlite3
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from webapp import postgresql

# Every column that holds a vault token: (table, column). `smtpdesk vault` re-encrypts exactly these.
SECRET_COLUMNS = (("credential", "secret_encrypted"), ("connector", "password_encrypted"),
                  ("credential", "client_secret_encrypted"), ("credential", "refresh_token_encrypted"),
                  ("credential", "service_account_key_encrypted"))
FERNET_KEY_LENGTH = 44  # 32 bytes in URL-safe base64


class VaultError(Exception):
    """A secret could not be decrypted with the configured keys."""


class VaultKeyError(VaultError):
    """The configured vault key cannot serve this database: the app refuses to start (message says how to fix)."""


def parse_keys(keys: str | list[str]) -> list[str]:
    """The keys of a "new,old" list, newest first."""
    if not isinstance(keys, (list, tuple)):
        keys = str(keys).split(",")  # from_prefixed_env reads a value that parses as JSON (digits) as a number
    return [k.strip() for k in keys if k and k.strip()]


def key_problem(keys: list[str]) -> str:
    """What is wrong with a list of vault keys, in words that follow the name of where it came from ("" if nothing).
    Never quotes a key: a broken one may still be most of the real one."""
    if not keys:
        return "holds no key"
    for number, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            which = "its key" if len(keys) == 1 else f"its key number {number} (of {len(keys)}, comma-separated)"
            if len(key) != FERNET_KEY_LENGTH:
                return (f"does not hold a vault key: {which} is {len(key)} characters long where a vault key has "
                        f"{FERNET_KEY_LENGTH} (cut short, or not a key smtpdesk wrote)")
            return f"does not hold a vault key: {which} is not URL-safe base64 (not a key smtpdesk wrote)"
    return ""


def write_key_file(path: Path | str, keys: list[str]) -> None:
    """Replace the key file atomically (a temporary file, 0600, then rename): readers see old or new, never half."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(",".join(keys) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


class Vault:
    """Encrypts and decrypts secrets; bound to its keys at start-up like the deferred database.

    Bound to a key file, it rereads the file when it changes, so running processes follow `smtpdesk vault
    rotate-key` without a restart: the new key encrypts, the old ones still decrypt until they are retired.
    """

    def __init__(self):
        self._fernet = None
        self.keys: list[str] = []
        self.key_file: Path | None = None
        self._stamp = None
        self._lock = threading.Lock()

    def init(self, keys: str | list[str], key_file: str | Path | None = None) -> None:
        """Use these keys, newest first: the first encrypts, all of them decrypt (key_file: reread on change)."""
        keys = parse_keys(keys)
        if not keys:
            raise VaultError("no vault key configured")
        try:
            fernet = MultiFernet([Fernet(k) for k in keys])
        except (ValueError, TypeError) as exc:
            raise VaultError("the vault key is not a valid Fernet key") from exc
        self._fernet, self.keys = fernet, keys
        self.key_file = Path(key_file) if key_file else None
        self._stamp = self._file_stamp()

    def _file_stamp(self):
        try:
            st = os.stat(self.key_file) if self.key_file else None
        except OSError:
            return None
        return st and (st.st_mtime_ns, st.st_size, st.st_ino)

    def _reload_if_changed(self) -> bool:
        """Reread the key file if it changed since it was read; whether the keys were replaced."""
        if self.key_file is None:
            return False
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        with self._lock:
            try:
                keys = parse_keys(self.key_file.read_text())
                self._fernet = MultiFernet([Fernet(k) for k in keys])
            except (OSError, ValueError, TypeError):
                return False  # a broken file: keep serving with the keys we have
            self.keys, self._stamp = keys, stamp
        return True

    def encrypt(self, plaintext: str) -> str:
        """Return the ciphertext of a secret, as text safe to store."""
        self._reload_if_changed()
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Return the secret behind a ciphertext made by encrypt()."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except InvalidToken:
            if self._reload_if_changed():
                return self.decrypt(token)
            raise VaultError("a secret cannot be decrypted with the configured vault key") from None

    def rotate(self, token: str) -> str:
        """The same secret encrypted under the newest key (MultiFernet.rotate)."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise VaultError("a secret cannot be decrypted with the configured vault key") from None


def first_stored_token(database_path: str) -> str | None:
    """One stored vault token of this database (None: no database, no tables or no secret yet), read-only. The
    database is a SQLite file's path or a PostgreSQL URL."""
    queries = [f'SELECT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL LIMIT 1'
               for table, column in SECRET_COLUMNS]
    if postgresql.is_url(database_path):
        return postgresql.first_value(database_path, queries)
    if not database_path or database_path == ":memory:" or not os.path.exists(database_path):
        return None
    try:
        connection = sqlite3.connect(f"file:{database_path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        for query in queries:
            try:
                row = connection.execute(query).fetchone()
            except sqlite3.OperationalError:
                continue  # not migrated yet
            if row:
                return row[0]
        return None
    finally:
        connection.close()


def check_keys(database_path: str, source: str) -> None:
    """Refuse to start (VaultKeyError) when the configured keys cannot decrypt a secret stored in the database."""
    token = first_stored_token(database_path)
    if token is None:
        return
    try:
        vault.decrypt(token)
    except VaultError:
        raise VaultKeyError(
            f"The vault key in {source} cannot decrypt the secrets stored in {postgresql.shown(database_path)}. "
            "Put back the key this database was written with (from your key backup), newest first if you keep "
            "several (\"new,old\"), then start again. Do not replace it with a new key: the stored credential "
            "secrets and connector passwords would become unreadable.") from None


vault = Vault()
