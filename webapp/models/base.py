"""What every model shares: the database, the audit snapshot, the default flag and encrypted secrets."""
from datetime import datetime, timezone

from peewee import Model, make_snake_case
from playhouse.shortcuts import model_to_dict

from webapp import logs
from webapp.db import database
from webapp.vault import vault

# SQLite's largest INTEGER: no row has a larger id, and sqlite3 cannot even bind one (OverflowError).
MAX_ROW_ID = 2 ** 63 - 1


def row_id(value) -> int | None:
    """value as a row id when it can be one (an int, or a string of digits, from 1 to MAX_ROW_ID), else None."""
    if isinstance(value, str):
        value = value.strip()
        # Its length first: int() refuses over 4,300 digits (ValueError), and a row id never needs more than 19.
        if not (value.isascii() and value.isdigit() and len(value) <= len(str(MAX_ROW_ID))):
            return None
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 1 <= value <= MAX_ROW_ID else None


def utcnow() -> datetime:
    """The current time in UTC, without tzinfo, as stored in the database."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class BaseModel(Model):
    # Columns the audit log does not follow: bookkeeping, not settings.
    AUDIT_IGNORED = frozenset({"id", "created_at", "updated_at", "last_login_at"})
    # Columns holding Fernet tokens: the audit log says only "changed".
    AUDIT_SECRETS = frozenset({"secret_encrypted", "password_encrypted", "password_hash", "client_secret_encrypted",
                               "refresh_token_encrypted", "service_account_key_encrypted"})

    class Meta:
        database = database
        legacy_table_names = False

    def audit_snapshot(self) -> dict:
        """The row's audited values by column name (foreign keys as ids), for AuditEntry.diff()."""
        values = model_to_dict(self, recurse=False)
        return {name: value for name, value in values.items() if name not in self.AUDIT_IGNORED}

    def save_assigned(self) -> int:
        """save(); of a row read from the database, only the columns assigned since (peewee's dirty fields). A column
        another process writes meanwhile (a worker's failover state or test outcome, a rotated refresh token) then
        keeps its value instead of getting back the one read here."""
        return self.save(only=self.dirty_fields if self.get_id() is not None else None)

    @classmethod
    def by_id(cls, value):
        """The row whose id is value (an int or a string of digits), or None, also for a number no row can have."""
        number = row_id(value)
        return None if number is None else cls.get_or_none(cls.id == number)

    @classmethod
    def audit_type(cls) -> str:
        """How the audit log names this kind of row: its table's name ("smtp_account")."""
        return make_snake_case(cls.__name__)


class DefaultFlagMixin:
    """Exactly-one-default behaviour shared by accounts and connectors (a partial unique index backs it)."""

    @classmethod
    def default(cls):
        """The default row, or None."""
        return cls.get_or_none(cls.is_default == True)  # noqa: E712

    def make_default(self) -> "BaseModel | None":
        """Make this row the default and un-default the previous one, atomically; return the previous one."""
        cls = type(self)
        with database.atomic("IMMEDIATE"):
            previous = cls.default()
            if previous is not None and previous.id == self.id:
                return None
            cls.update(is_default=False).where(cls.is_default == True).execute()  # noqa: E712
            cls.update(is_default=True, updated_at=utcnow()).where(cls.id == self.id).execute()
            self.is_default = True
            return previous


class EncryptedSecretMixin:
    """Write-only secrets stored as Fernet tokens; the clear text leaves only through reveal_secret().

    SECRET_COLUMN holds the secret; a row with several (a credential's OAuth secrets) names the column.
    """

    SECRET_COLUMN = "secret_encrypted"

    @property
    def has_secret(self) -> bool:
        return bool(getattr(self, self.SECRET_COLUMN))

    def set_secret(self, plaintext: str | None, column: str | None = None) -> None:
        """Store a new secret (None or '' clears it)."""
        logs.remember_secret(plaintext)
        setattr(self, column or self.SECRET_COLUMN, vault.encrypt(plaintext) if plaintext else None)

    def reveal_secret(self, column: str | None = None) -> str | None:
        """The clear secret, for the transport only: never render or log it."""
        token = getattr(self, column or self.SECRET_COLUMN)
        if not token:
            return None
        secret = vault.decrypt(token)
        logs.remember_secret(secret)  # from now on masked in every log line of this process
        return secret
