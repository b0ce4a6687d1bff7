"""The outbox's rows: notifications and every attempt at delivering them."""
import json

from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField, fn

from webapp.models.accounts import SmtpAccount
from webapp.models.base import BaseModel, utcnow


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
    # The backup account whose relay carries it (webapp.outbox.failover); NULL: its own account's.
    sent_via = ForeignKeyField(SmtpAccount, null=True, backref="carried", on_delete="SET NULL")

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


def attach_last_delivery(accounts: list) -> list:
    """Give each account its last_delivery (SmtpAccount.last_delivery), read for all of them in one query."""
    found = {}
    for notification in _last_deliveries([account.id for account in accounts]) if accounts else ():
        newest = found.get(notification.account_id)
        if newest is None or notification.id > newest.id:
            found[notification.account_id] = notification
    for account in accounts:
        account.__dict__["_last_delivery"] = found.get(account.id)
    return accounts


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
    via_account = ForeignKeyField(SmtpAccount, null=True, backref="carried_attempts", on_delete="SET NULL")
    # The account whose relay took it: the notification's own, or via_account (m0015; NULL before an hour before it).
    relay_account = ForeignKeyField(SmtpAccount, null=True, backref="relayed_attempts", on_delete="SET NULL")
