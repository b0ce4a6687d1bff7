"""The data: people, the credential vault, network connectors, SMTP accounts and the audit log."""
import hashlib
import json
import secrets
from datetime import datetime, timedelta, timezone

from flask_login import UserMixin
from peewee import (
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
    fn,
)

from webapp import logs
from webapp.db import database
from webapp.mail.connectors import Hop
from webapp.mail.errors import N_, MailError, Step
from webapp.mail.transport import SmtpSettings
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

    def get_id(self) -> str:
        """The session's user id: the row id plus a fingerprint of the password hash (issue 5).

        Changing the password changes the fingerprint, so every session signed in with the old one ends at its
        next request (webapp.web loads users only when both parts match).
        """
        return f"{self.id}.{self.session_fingerprint()}"

    def session_fingerprint(self) -> str:
        """A keyed digest of the password hash: it changes with the password and reveals nothing about it."""
        import hmac

        from flask import current_app

        key = str(current_app.config["SECRET_KEY"]).encode()
        return hmac.new(key, (self.password_hash or "").encode(), hashlib.sha256).hexdigest()[:20]

    ALLOWED = {
        "admin": frozenset({"view", "test", "send", "audit", "admin"}),
        "operator": frozenset({"view", "test", "send"}),
        "auditor": frozenset({"view", "audit"}),
    }

    def can(self, action: str) -> bool:
        """Whether this user's role allows an action: 'view', 'test', 'send', 'audit' or 'admin'."""
        return action in self.ALLOWED.get(self.role, ())

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
        logs.remember_secret(plaintext)
        setattr(self, self.SECRET_COLUMN, vault.encrypt(plaintext) if plaintext else None)

    def reveal_secret(self) -> str | None:
        """The clear secret, for the transport only: never render or log it."""
        token = getattr(self, self.SECRET_COLUMN)
        if not token:
            return None
        secret = vault.decrypt(token)
        logs.remember_secret(secret)  # from now on masked in every log line of this process
        return secret


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

    def accounts_using(self) -> list:
        """The accounts that select this credential, by name (while any does, it cannot be deleted)."""
        return list(self.accounts.order_by(SmtpAccount.name))

    @staticmethod
    def usage() -> dict[int, list]:
        """accounts_using() of every credential at once, by credential id: one query for a list, not one a row."""
        query = (SmtpAccount.select(SmtpAccount.id, SmtpAccount.name, SmtpAccount.credential)
                 .where(SmtpAccount.credential.is_null(False)).order_by(SmtpAccount.name))
        usage = {}
        for account in query:
            usage.setdefault(account.credential_id, []).append(account)
        return usage


class Connector(DefaultFlagMixin, EncryptedSecretMixin, BaseModel):
    KIND_LABELS = {"socks5": "SOCKS5", "socks4": "SOCKS4", "http": "HTTP CONNECT"}
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

    @classmethod
    def relying_on_default(cls) -> list:
        """Accounts that use a connector without naming one: they go through the system default."""
        query = SmtpAccount.select().where(SmtpAccount.use_connector == True,  # noqa: E712
                                           SmtpAccount.connector.is_null())
        return list(query.order_by(SmtpAccount.name))

    @property
    def kind_label(self) -> str:
        return self.KIND_LABELS.get(self.kind, self.kind)

    def accounts_using(self) -> list:
        """Accounts that select this connector (the foreign key keeps it), then those relying on it as default."""
        accounts = list(self.accounts.order_by(SmtpAccount.name))
        return accounts + (self.relying_on_default() if self.is_default else [])

    @classmethod
    def usage(cls) -> dict[int, list]:
        """accounts_using() of every connector at once, by connector id: two queries for a list, not two a row."""
        query = (SmtpAccount.select(SmtpAccount.id, SmtpAccount.name, SmtpAccount.connector)
                 .where(SmtpAccount.connector.is_null(False)
                        | (SmtpAccount.use_connector == True))  # noqa: E712
                 .order_by(SmtpAccount.name))
        usage, relying = {}, []
        for account in query:
            if account.connector_id:
                usage.setdefault(account.connector_id, []).append(account)
            else:
                relying.append(account)
        default = cls.default() if relying else None
        if default is not None:
            usage[default.id] = usage.get(default.id, []) + relying
        return usage

    def hop(self) -> Hop:
        """This connector as the mail transport's plain Hop; the password is revealed for the transport only."""
        return Hop(kind=self.kind, host=self.host, port=self.port, username=self.username or None,
                   password=self.reveal_secret(), remote_dns=self.remote_dns)


# smtp_settings()'s default: the account's own credential (None would mean "no credential").
SAVED_CREDENTIAL = object()


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
    ca_cert = TextField(null=True)  # a PEM CA certificate trusted in addition to the system store
    helo_name = CharField(max_length=255, null=True)  # the EHLO/HELO name; empty = this machine's name
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

    @property
    def last_delivery(self):
        """The newest notification this account finished (sent or failed), or None: the report's delivery health."""
        if "_last_delivery" not in self.__dict__:
            SmtpAccount.attach_last_delivery([self])
        return self.__dict__["_last_delivery"]

    @staticmethod
    def attach_last_delivery(accounts: list) -> list:
        """Fetch last_delivery for many accounts in one query (a report page), instead of one query per row."""
        found = {}
        for notification in _last_deliveries([account.id for account in accounts]) if accounts else ():
            newest = found.get(notification.account_id)
            if newest is None or notification.id > newest.id:
                found[notification.account_id] = notification
        for account in accounts:
            account.__dict__["_last_delivery"] = found.get(account.id)
        return accounts

    def effective_connector(self):
        """The connector this account goes through: its own, the system default, or None for direct."""
        if not self.use_connector:
            return None
        return self.connector if self.connector_id else Connector.default()

    def smtp_settings(self, timeout: float, deadline: float, credential=SAVED_CREDENTIAL, blocked_networks=()):
        """The settings webapp.mail's transport needs; raise MailError(POLICY) when our own rules refuse them.

        credential: whom to log in as; by default the account's own. "Test these settings" passes the one the admin
        chose. blocked_networks: the app's OUTBOUND_BLOCKED_NETWORKS, checked by the transport after name
        resolution. Nothing here opens a socket, so a refusal means nothing was sent.
        """
        if credential is SAVED_CREDENTIAL:
            credential = self.credential if self.use_auth and self.credential_id else None
        username = password = None
        if self.use_auth:
            if credential is None:
                raise _refused(N_("Authentication is on, but no credential is chosen."),
                               N_("Choose the credential to log in with."))
            if not credential.allows_host(self.host):
                # SECURITY 7: a stored secret goes only to the hosts its credential allows.
                raise _refused(N_("The credential %(credential)s may not be sent to %(host)s: its allowed hosts "
                                  "do not include it."),
                               N_("Choose another credential, or add the host to the credential's allowed hosts."),
                               credential=credential.name, host=self.host)
            if not credential.has_secret:
                raise _refused(N_("The credential %(credential)s has no secret stored."),
                               N_("Enter the secret in the credential vault."), credential=credential.name)
            username, password = credential.username, credential.reveal_secret()
        hop = None
        if self.use_connector:
            connector = self.effective_connector()
            if connector is None:
                raise _refused(N_("This account goes through a network connector, but it names none and no system "
                                  "default connector is set."),
                               N_("Choose a connector for the account, or make one the system default under Network "
                                  "connectors. Nothing is ever sent directly instead."))
            hop = connector.hop()
        return SmtpSettings(
            host=self.host, port=self.effective_port, mode=self.mode, username=username, password=password,
            verify_tls=not self.ignore_cert_errors, ca_pem=self.ca_cert or None, helo_name=self.helo_name or None,
            hop=hop, timeout=timeout, deadline=deadline, blocked_networks=tuple(blocked_networks),
        )


def _refused(message: str, hint: str, **params) -> MailError:
    """A refusal by our own rules (step POLICY): permanent, explained, and nothing was sent."""
    return MailError(Step.POLICY, False, message, hint, params)


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


class Setting(BaseModel):
    """An admin setting as key/value text (e.g. "footer_text", the system footer)."""

    key = CharField(max_length=64, unique=True)
    value = TextField(default="")

    @classmethod
    def get_value(cls, key: str, default: str = "") -> str:
        """The stored value of key, or default when it was never set."""
        row = cls.get_or_none(cls.key == key)
        return row.value if row is not None else default

    @classmethod
    def set_value(cls, key: str, value: str) -> None:
        """Store value under key (insert or replace)."""
        cls.insert(key=key, value=value or "").on_conflict(
            conflict_target=[cls.key], update={cls.value: value or ""}).execute()


class Notification(BaseModel):
    """One e-mail in the outbox: what to send, through which account, and where its delivery stands."""

    STATUSES = ("queued", "sending", "sent", "retrying", "failed")
    SOURCES = ("python", "api", "cli", "schedule")

    account = ForeignKeyField(SmtpAccount, backref="notifications", on_delete="RESTRICT")
    status = CharField(max_length=16, default="queued")
    to_addrs = TextField(default="[]")  # JSON lists of addresses
    cc_addrs = TextField(default="[]")
    bcc_addrs = TextField(default="[]")  # envelope only, never a header
    subject = TextField(default="")
    body_text = TextField(default="")
    body_html = TextField(null=True)
    attachments = TextField(null=True)  # JSON [{"filename", "mimetype", "data" (base64)}], or NULL
    reply_to = CharField(max_length=320, null=True)  # per-message overrides (NULL = the account's)
    return_path = CharField(max_length=320, null=True)
    confirmation_email = CharField(max_length=320, null=True)
    overrides_ignored = BooleanField(default=False)  # the account forces its settings and overrides were given
    message_id = CharField(max_length=255, unique=True)  # assigned at enqueue, the same on every retry
    idempotency_key = CharField(max_length=255, null=True, unique=True)
    request_fingerprint = CharField(max_length=64, null=True)  # sha256 of the normalised payload
    attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField(default=utcnow)
    lease_owner = CharField(max_length=100, null=True)
    lease_until = DateTimeField(null=True)
    last_code = IntegerField(null=True)
    last_reply = TextField(null=True)
    last_step = CharField(max_length=32, null=True)
    headers_sent = TextField(null=True)  # the header block actually sent, for the detail view
    source = CharField(max_length=16, default="python")
    created_by = CharField(max_length=100, default="")
    created_at = DateTimeField(default=utcnow, index=True)
    updated_at = DateTimeField(default=utcnow)
    sent_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("status", "next_attempt_at"), False),)

    @property
    def to_list(self) -> list[str]:
        return json.loads(self.to_addrs or "[]")

    @property
    def cc_list(self) -> list[str]:
        return json.loads(self.cc_addrs or "[]")

    @property
    def bcc_list(self) -> list[str]:
        return json.loads(self.bcc_addrs or "[]")


def _last_deliveries(account_ids: list[int]):
    """The newest sent and the newest failed notification of each of these accounts (the report shows the newer)."""

    def newest(status):
        # One seek in the (account_id, status, id) index per account and status.
        other = Notification.alias()
        return other.select(fn.MAX(other.id)).where(other.account == SmtpAccount.id, other.status == status)

    of_these = SmtpAccount.id.in_(account_ids)
    candidates = (SmtpAccount.select(newest("sent")).where(of_these)
                  | SmtpAccount.select(newest("failed")).where(of_these))
    # Only the columns shown: a whole notification holds its body.
    return (Notification.select(Notification.id, Notification.account, Notification.status, Notification.updated_at,
                                Notification.last_reply)
            .where(Notification.id.in_(candidates)))


class DeliveryAttempt(BaseModel):
    """One try at delivering a notification: when, how long, and the server's answer."""

    notification = ForeignKeyField(Notification, backref="delivery_attempts", on_delete="CASCADE")
    started_at = DateTimeField(default=utcnow)
    duration_ms = IntegerField(default=0)
    ok = BooleanField(default=False)
    code = IntegerField(null=True)
    reply = TextField(null=True)
    step = CharField(max_length=32, null=True)
    transient = BooleanField(default=False)
    worker = CharField(max_length=100, default="")


class ApiToken(BaseModel):
    """A bearer token for the HTTP API, stored as its sha256; the clear token is shown once."""

    name = CharField(max_length=100)
    token_hash = CharField(max_length=64, unique=True)
    prefix = CharField(max_length=16)  # the first characters, for display
    created_by = ForeignKeyField(User, null=True, backref="api_tokens", on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)
    last_used_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)

    # Recognisable in logs and secret scanners; the rest is 256 random bits.
    TOKEN_PREFIX = "smtpdesk_"
    # last_used_at is rewritten at most this often: a busy client must not turn every call into a write.
    TOUCH_EVERY = timedelta(minutes=1)

    @staticmethod
    def hash_token(token: str) -> str:
        """The stored form of a token: sha256 hex (a random 256-bit token needs no slow hash)."""
        return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()

    @classmethod
    def issue(cls, name: str, created_by=None) -> tuple["ApiToken", str]:
        """Create a token; return the row and the clear token, which is never stored and shown only once."""
        token = cls.TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = cls.create(name=name, token_hash=cls.hash_token(token), prefix=token[:len(cls.TOKEN_PREFIX) + 6],
                         created_by=created_by)
        return row, token

    @classmethod
    def authenticate(cls, token: str) -> "ApiToken | None":
        """The unrevoked token with this clear text, or None; records when it was last used."""
        row = cls.get_or_none(cls.token_hash == cls.hash_token(token))
        if row is None or row.revoked_at is not None:
            return None
        now = utcnow()
        if row.last_used_at is None or now - row.last_used_at > cls.TOUCH_EVERY:
            cls.update(last_used_at=now).where(cls.id == row.id).execute()
            row.last_used_at = now
        return row

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class ScheduledReport(BaseModel):
    """The accounts report e-mailed as CSV to chosen recipients, daily, weekly or monthly."""

    FREQUENCIES = ("daily", "weekly", "monthly")

    recipients = TextField(default="")  # one address per line
    frequency = CharField(max_length=8, default="daily")
    filters = TextField(default="")  # the report's query string
    next_run_at = DateTimeField(default=utcnow, index=True)
    last_run_at = DateTimeField(null=True)
    last_result = TextField(null=True)
    created_by = ForeignKeyField(User, null=True, backref="scheduled_reports", on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)

    @property
    def recipient_list(self) -> list[str]:
        return [line.strip() for line in self.recipients.splitlines() if line.strip()]


MODELS = [User, Credential, Connector, SmtpAccount, AuditEntry, Setting, Notification, DeliveryAttempt,
          ApiToken, ScheduledReport]
