"""The data: people, the credential vault, network connectors, SMTP accounts and the audit log."""
import json
from datetime import datetime, timezone

from flask_login import UserMixin
from peewee import (
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from webapp.db import database
from webapp.vault import vault


def utcnow() -> datetime:
    """The current time in UTC, without tzinfo, as stored in the database."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class BaseModel(Model):
    # Columns the audit log does not follow: bookkeeping, not settings.
    AUDIT_IGNORED = frozenset({"id", "created_at", "updated_at", "last_login_at"})
    # Columns holding Fernet tokens: the audit log says only "changed".
    AUDIT_SECRETS = frozenset({"secret_encrypted", "password_encrypted", "password_hash"})

    class Meta:
        database = database
        legacy_table_names = False

    def audit_snapshot(self) -> dict:
        """The row's audited values by column name (foreign keys as ids), for AuditEntry.diff()."""
        return {
            name: self.__data__.get(name)
            for name in self._meta.fields
            if name not in self.AUDIT_IGNORED
        }


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


class User(UserMixin, BaseModel):
    ROLES = ("admin", "operator", "auditor")

    username = CharField(max_length=64, unique=True)
    password_hash = CharField()
    role = CharField(max_length=16, default="operator")
    locale = CharField(max_length=8, null=True)
    active = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)
    last_login_at = DateTimeField(null=True)

    @property
    def is_active(self) -> bool:
        return self.active

    def can(self, action: str) -> bool:
        """Whether this user's role allows an action: 'view', 'test', 'send', 'audit' or 'admin'."""
        allowed = {
            "admin": {"view", "test", "send", "audit", "admin"},
            "operator": {"view", "test", "send"},
            "auditor": {"view", "audit"},
        }
        return action in allowed.get(self.role, set())

    @classmethod
    def count_admins(cls) -> int:
        return cls.select().where(cls.role == "admin", cls.active == True).count()  # noqa: E712

    def other_active_admin_exists(self) -> bool:
        """Whether an active admin other than this user exists (so this one may stop being one)."""
        others = User.select().where(User.role == "admin", User.active == True, User.id != self.id)  # noqa: E712
        return others.exists()

    def leaves_an_admin(self) -> bool:
        """Whether saving this row's (unsaved) role and active flag still leaves an active admin.

        Call inside database.atomic("IMMEDIATE") so two admins cannot demote each other at once.
        """
        return (self.role == "admin" and self.active) or self.other_active_admin_exists()


class EncryptedSecretMixin:
    """A write-only secret stored as a Fernet token; the clear text leaves only through reveal_secret()."""

    SECRET_COLUMN = "secret_encrypted"

    @property
    def has_secret(self) -> bool:
        return bool(getattr(self, self.SECRET_COLUMN))

    def set_secret(self, plaintext: str | None) -> None:
        """Store a new secret (None or '' clears it)."""
        setattr(self, self.SECRET_COLUMN, vault.encrypt(plaintext) if plaintext else None)

    def reveal_secret(self) -> str | None:
        """The clear secret, for the transport only: never render or log it."""
        token = getattr(self, self.SECRET_COLUMN)
        return vault.decrypt(token) if token else None


class Credential(EncryptedSecretMixin, BaseModel):
    name = CharField(max_length=100, unique=True)
    username = CharField(max_length=254)
    secret_encrypted = TextField(null=True)
    description = TextField(default="")
    allowed_hosts = TextField(default="")  # one host or *.pattern per line; empty = any host
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    @property
    def host_list(self) -> list[str]:
        return [h.strip().lower() for h in self.allowed_hosts.splitlines() if h.strip()]

    def allows_host(self, host: str) -> bool:
        """Whether this credential may be sent to host (an empty list allows every host)."""
        hosts = self.host_list
        if not hosts:
            return True
        host = (host or "").strip().lower().strip("[]").rstrip(".")
        for allowed in hosts:
            if allowed.startswith("*."):
                if host.endswith(allowed[1:]) and host != allowed[2:]:
                    return True
            elif host == allowed.strip("[]").rstrip("."):
                return True
        return False

    def in_use(self) -> bool:
        return SmtpAccount.select().where(SmtpAccount.credential == self).exists()

    def accounts_using(self) -> list:
        """The accounts that select this credential, by name (while any does, it cannot be deleted)."""
        return list(self.accounts.order_by(SmtpAccount.name))


class Connector(DefaultFlagMixin, EncryptedSecretMixin, BaseModel):
    KINDS = ("socks5", "socks4", "http")
    SECRET_COLUMN = "password_encrypted"

    name = CharField(max_length=100, unique=True)
    kind = CharField(max_length=8, default="socks5")
    host = CharField(max_length=255)
    port = IntegerField()
    username = CharField(max_length=255, default="")
    password_encrypted = TextField(null=True)
    remote_dns = BooleanField(default=True)
    is_default = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    def in_use(self) -> bool:
        """Used by an account explicitly, or as the system default by an account that names none."""
        uses = SmtpAccount.select().where(SmtpAccount.use_connector == True)  # noqa: E712
        if uses.where(SmtpAccount.connector == self).exists():
            return True
        return self.is_default and uses.where(SmtpAccount.connector.is_null()).exists()

    @classmethod
    def relying_on_default(cls) -> list:
        """Accounts that use a connector without naming one: they go through the system default."""
        query = SmtpAccount.select().where(SmtpAccount.use_connector == True,  # noqa: E712
                                           SmtpAccount.connector.is_null())
        return list(query.order_by(SmtpAccount.name))

    def accounts_using(self) -> list:
        """Accounts that select this connector (the foreign key keeps it), then those relying on it as default."""
        accounts = list(self.accounts.order_by(SmtpAccount.name))
        return accounts + (self.relying_on_default() if self.is_default else [])


class SmtpAccount(DefaultFlagMixin, BaseModel):
    DEFAULT_PORTS = {"plain": 25, "tls": 587, "ssl": 465}

    name = CharField(max_length=100, unique=True)
    enabled = BooleanField(default=True)
    sender = CharField(max_length=320)
    reply_to = CharField(max_length=320)
    return_path = CharField(max_length=320)
    confirmation_email = CharField(max_length=320)
    is_default = BooleanField(default=False)
    read_confirmation = BooleanField(default=False)
    force_settings = BooleanField(default=False)
    footer_enabled = BooleanField(default=False)
    host = CharField(max_length=255)
    port = IntegerField(null=True)
    secure = BooleanField(default=False)
    secure_type = CharField(max_length=3, null=True)  # "ssl" (implicit TLS) or "tls" (STARTTLS)
    use_auth = BooleanField(default=False)
    credential = ForeignKeyField(Credential, null=True, backref="accounts", on_delete="RESTRICT")
    ignore_cert_errors = BooleanField(default=False)
    use_connector = BooleanField(default=False)
    connector = ForeignKeyField(Connector, null=True, backref="accounts", on_delete="RESTRICT")
    last_test_at = DateTimeField(null=True)
    last_test_ok = BooleanField(null=True)
    last_test_summary = TextField(null=True)
    last_tls_verified = BooleanField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    @property
    def mode(self) -> str:
        """'plain', 'tls' (STARTTLS) or 'ssl' (implicit TLS)."""
        return self.secure_type if self.secure and self.secure_type else "plain"

    @property
    def effective_port(self) -> int:
        return self.port or self.DEFAULT_PORTS[self.mode]

    @property
    def tls_unverified(self) -> bool:
        """Encrypted without checking the certificate: the report flags it."""
        return self.secure and self.ignore_cert_errors

    def effective_connector(self):
        """The connector this account goes through: its own, the system default, or None for direct."""
        if not self.use_connector:
            return None
        return self.connector if self.connector_id else Connector.default()


class AuditEntry(BaseModel):
    at = DateTimeField(default=utcnow, index=True)
    actor = ForeignKeyField(User, null=True, backref="audit_entries", on_delete="SET NULL")
    actor_name = CharField(max_length=64, default="")
    action = CharField(max_length=32, index=True)  # create, update, delete, login, login_failed, logout, ...
    object_type = CharField(max_length=32, default="", index=True)
    object_id = IntegerField(null=True)
    object_name = CharField(max_length=255, default="")
    changes_json = TextField(default="{}")
    remote_addr = CharField(max_length=64, default="")

    CHANGED = "changed"

    @property
    def changes(self) -> dict:
        """{field: [old, new]} or {field: "changed"} for secrets."""
        return json.loads(self.changes_json or "{}")

    @classmethod
    def diff(cls, before: dict | None, after: dict | None) -> dict:
        """What differs between two audit snapshots; secrets appear only as "changed"."""
        before, after = before or {}, after or {}
        changes = {}
        for name in sorted(set(before) | set(after)):
            old, new = before.get(name), after.get(name)
            if old == new:
                continue
            if name in BaseModel.AUDIT_SECRETS:
                changes[name] = cls.CHANGED
            else:
                changes[name] = [_jsonable(old), _jsonable(new)]
        return changes

    @classmethod
    def record(cls, action: str, *, actor=None, remote_addr: str = "", obj=None, object_type: str = "",
               object_name: str = "", changes: dict | None = None) -> "AuditEntry":
        """Write one audit line; call it inside the transaction that made the change."""
        if obj is not None:
            object_type = object_type or obj._meta.table_name
            object_name = object_name or str(getattr(obj, "name", None) or getattr(obj, "username", ""))
        return cls.create(
            actor=actor if actor is not None and getattr(actor, "id", None) else None,
            actor_name=getattr(actor, "username", "") or "",
            action=action,
            object_type=object_type,
            object_id=getattr(obj, "id", None),
            object_name=object_name[:255],
            changes_json=json.dumps(changes or {}, ensure_ascii=False),
            remote_addr=(remote_addr or "")[:64],
        )


def _jsonable(value):
    return value.isoformat(sep=" ", timespec="seconds") if isinstance(value, datetime) else value


MODELS = [User, Credential, Connector, SmtpAccount, AuditEntry]
