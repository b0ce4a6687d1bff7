"""The credential vault, network connectors and SMTP accounts."""
import logging

from peewee import BooleanField, CharField, DatabaseError, DateTimeField, ForeignKeyField, IntegerField, TextField

from webapp import logs
from webapp.mail import oauth
from webapp.mail.access_tokens import TOKENS
from webapp.mail.connectors import Hop
from webapp.mail.errors import N_, MailError, Step
from webapp.mail.transport import SmtpSettings
from webapp.models.base import BaseModel, DefaultFlagMixin, EncryptedSecretMixin, row_id, utcnow

log = logging.getLogger(__name__)


class Credential(EncryptedSecretMixin, BaseModel):
    GRANT_KEY = "credential:"  # its OAuth grant's cache_key: this, then its id
    # The encrypted column each type cannot work without (a refresh token may still have to be obtained).
    NEEDED_SECRET = {oauth.PASSWORD: "secret_encrypted", oauth.CLIENT_CREDENTIALS: "client_secret_encrypted",
                     oauth.REFRESH_TOKEN: "refresh_token_encrypted", oauth.JWT_BEARER: "service_account_key_encrypted"}

    name = CharField(max_length=100, unique=True)
    kind = CharField(max_length=16, default=oauth.PASSWORD)  # webapp.mail.oauth.KINDS
    username = CharField(max_length=254)  # the login; for OAuth 2.0, the mailbox to send as
    secret_encrypted = TextField(null=True)  # the password
    description = TextField(default="")
    allowed_hosts = TextField(default="")  # one host or *.pattern per line; empty = any host
    # OAuth 2.0: columns a type does not use stay empty.
    token_url = CharField(max_length=2048, default="")
    authorization_url = CharField(max_length=2048, default="")
    client_id = CharField(max_length=255, default="")
    scope = CharField(max_length=1000, default="")
    client_secret_encrypted = TextField(null=True)
    refresh_token_encrypted = TextField(null=True)
    service_account_key_encrypted = TextField(null=True)  # the whole JSON key file
    # Shown instead of the key, which is never shown again.
    service_account_email = CharField(max_length=254, default="")
    service_account_key_id = CharField(max_length=200, default="")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    @property
    def is_oauth(self) -> bool:
        return self.kind in oauth.OAUTH_KINDS

    @property
    def secret_stored(self) -> bool:
        """Whether the secret this credential's type needs is stored."""
        return bool(getattr(self, self.NEEDED_SECRET.get(self.kind, self.SECRET_COLUMN)))

    def oauth_grant(self) -> oauth.OAuthGrant:
        """How to obtain this OAuth 2.0 credential's access token, secrets revealed: for the transport only. Its
        cache_key names this credential, so that its tokens are cached apart from every other's."""
        if not self.is_oauth:
            raise ValueError(f"credential {self.name!r} is not an OAuth 2.0 credential")
        key = None
        text = self.reveal_secret("service_account_key_encrypted")
        if text:
            key, _stored = oauth.parse_service_account_key(text)  # it was checked when stored
            logs.remember_secret(key.private_key)
        return oauth.OAuthGrant(
            kind=self.kind, token_url=key.token_uri if key else self.token_url, mailbox=self.username,
            scope=self.scope, client_id=self.client_id or None,
            client_secret=self.reveal_secret("client_secret_encrypted"),
            refresh_token=self.reveal_secret("refresh_token_encrypted"), service_account=key,
            cache_key=f"{self.GRANT_KEY}{self.id}" if self.id else "")

    @classmethod
    def watch_refresh_token_rotation(cls) -> None:
        """From now on, a refresh token a provider rotates while this process obtains access tokens is stored on its
        credential (the process's token cache calls store_rotated_refresh_token)."""
        TOKENS.on_refresh_token = cls.store_rotated_refresh_token

    @classmethod
    def store_rotated_refresh_token(cls, grant: oauth.OAuthGrant, refresh_token: str) -> None:
        """TOKENS.on_refresh_token: store a refresh token the provider rotated, encrypted, on the credential that
        gave the grant (its cache_key), while that credential still holds the refresh token the grant had: one
        quiet update of that column, without an audit entry, since nobody changed a setting. A token an admin
        pasted meanwhile wins; a failed write is logged (never the token), and this process uses the new one anyway.
        """
        key = grant.cache_key
        number = row_id(key.removeprefix(cls.GRANT_KEY)) if key.startswith(cls.GRANT_KEY) else None
        try:
            credential = cls.get_or_none(cls.id == number) if number else None
            if credential is None or credential.kind != oauth.REFRESH_TOKEN \
                    or credential.reveal_secret("refresh_token_encrypted") != grant.refresh_token:
                return
            held = credential.refresh_token_encrypted
            credential.set_secret(refresh_token, "refresh_token_encrypted")
            cls.update(refresh_token_encrypted=credential.refresh_token_encrypted).where(
                cls.id == credential.id, cls.refresh_token_encrypted == held).execute()
        except DatabaseError as error:
            log.warning("credential %s: the refresh token its provider rotated was not stored (%s)", number, error)

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
    # Sending limits (webapp.outbox.queue), all workers together; None: the configured default (OUTBOX_MAX_CONNECTIONS,
    # OUTBOX_RATE_PER_MINUTE). Connections open to the relay at once (>= 1); messages started in any 60 s (0: none).
    max_connections = IntegerField(null=True)
    rate_per_minute = IntegerField(null=True)
    last_test_at = DateTimeField(null=True)
    last_test_ok = BooleanField(null=True)
    last_test_summary = TextField(null=True)
    last_tls_verified = BooleanField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    # Failover (webapp.outbox.failover): the backup account, audited as a setting; the state, kept by the workers.
    backup_account = ForeignKeyField("self", null=True, backref="backing", on_delete="SET NULL")
    failover_failures = IntegerField(default=0)
    failover_since = DateTimeField(null=True)
    failover_until = DateTimeField(null=True)
    failover_reason = TextField(null=True)
    auth_worked_with = CharField(max_length=64, null=True)

    FAILOVER_STATE = ("failover_failures", "failover_since", "failover_until", "failover_reason", "auth_worked_with")
    AUDIT_IGNORED = BaseModel.AUDIT_IGNORED | set(FAILOVER_STATE)

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
        from webapp.models.notifications import attach_last_delivery  # it refers to accounts: imported on use

        return attach_last_delivery(accounts)

    def credential_key(self) -> str | None:
        """Which credential, in which version, this account logs in with (None without one): kept in
        auth_worked_with when a login succeeds, so that a refusal of that same credential later says the relay
        changed, not the credential (an edit of the credential gives it a new key)."""
        if not self.use_auth or not self.credential_id:
            return None
        return f"{self.credential_id}:{self.credential.updated_at.isoformat()}"

    @property
    def failing_over(self) -> bool:
        """Whether its notifications go through its backup now: the cool-down has not ended, and the backup is
        enabled (the claim ignores a disabled one)."""
        return bool(self.backup_account_id and self.failover_until and self.failover_until > utcnow()
                    and self.backup_account.enabled)

    @property
    def backup_disabled(self) -> bool:
        """Whether the backup it names is disabled: the claim ignores that backup, so the account has no failover."""
        return bool(self.backup_account_id) and not self.backup_account.enabled

    def accounts_backed_up(self) -> list:
        """The accounts that name this one as their backup, by name."""
        return list(self.backing.order_by(SmtpAccount.name))

    def effective_connector(self):
        """The connector this account goes through: its own, the system default, or None for direct."""
        if not self.use_connector:
            return None
        return self.connector if self.connector_id else Connector.default()

    def smtp_settings(self, timeout: float, deadline: float, credential=SAVED_CREDENTIAL, blocked_networks=(),
                      oauth_allow_loopback: bool = False):
        """The settings webapp.mail's transport needs; raise MailError(POLICY) when our own rules refuse them.

        credential: whom to log in as; by default the account's own. "Test these settings" passes the one the admin
        chose. blocked_networks: the app's OUTBOUND_BLOCKED_NETWORKS, checked by the transport after name
        resolution; oauth_allow_loopback: its OAUTH_ALLOW_LOOPBACK, for an OAuth credential's token URL. Nothing here
        opens a socket, so a refusal means nothing was sent.
        """
        if credential is SAVED_CREDENTIAL:
            credential = self.credential if self.use_auth and self.credential_id else None
        username = password = grant = None
        if self.use_auth:
            if credential is None:
                raise _refused(N_("Authentication is on, but no credential is chosen."),
                               N_("Choose the credential to log in with."))
            if not credential.allows_host(self.host):
                # A stored secret, or an access token it obtains, goes only to the hosts its credential allows.
                raise _refused(N_("The credential %(credential)s may not be sent to %(host)s: its allowed hosts "
                                  "do not include it."),
                               N_("Choose another credential, or add the host to the credential's allowed hosts."),
                               credential=credential.name, host=self.host)
            if not credential.secret_stored and credential.kind == oauth.REFRESH_TOKEN:
                raise _refused(N_("The credential %(credential)s has no refresh token yet: it is not connected with "
                                  "its provider."),
                               N_("Connect the credential with the provider first: Credentials → Edit → Connect with "
                                  "the provider."), credential=credential.name)
            if not credential.secret_stored:
                raise _refused(N_("The credential %(credential)s has no secret stored."),
                               N_("Enter the secret in the credential vault."), credential=credential.name)
            if credential.is_oauth:
                grant = credential.oauth_grant()
            else:
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
            hop=hop, timeout=timeout, deadline=deadline, blocked_networks=tuple(blocked_networks), oauth=grant,
            oauth_allow_loopback=oauth_allow_loopback,
        )


def _refused(message: str, hint: str, **params) -> MailError:
    """A refusal by our own rules (step POLICY): permanent, explained, and nothing was sent."""
    return MailError(Step.POLICY, False, message, hint, params)
