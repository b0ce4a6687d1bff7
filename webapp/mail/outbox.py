"""The outbox: a notification is stored before any network work, then delivered by workers.

Delivery rules (DESIGN.md "Notifications and delivery"):
- A worker claims due notifications in a `BEGIN IMMEDIATE` transaction: it sets status "sending", its name as
  `lease_owner` and `lease_until`. Only the lease owner sends a notification, and only while at least half of the lease
  (more than one SMTP deadline) is left; it renews the lease otherwise. A worker that dies leaves its claims
  in "sending"; once their lease has expired the next claim takes them back (recording the lost attempt).
- A notification is never lost. The one unavoidable duplicate: when the process dies (or the connection drops) after
  the server accepted the message but before its "250" was recorded, the message is sent again, with the same
  Message-ID (assigned at enqueue, reused on every attempt), so mail clients show it once. Outcomes are recorded
  together, one transaction per RECORD_EVERY messages or RECORD_SECONDS (a write per message cost as much as the
  message): a process killed mid-batch may send up to that many messages twice, never fewer than once.
- Claimed notifications are grouped by account; each group goes over one SmtpSession (one connection for many
  messages), reconnecting once at once when a reused connection was dropped before the message was handed over.
  Failures of the session itself (DNS, connect, proxy, TLS, greeting, STARTTLS, AUTH) apply to the rest of the group,
  so a wrong password costs one login attempt per batch, not one per message.
- 4yz replies, timeouts and lost connections are transient: retried with exponential backoff and jitter, until
  OUTBOX_MAX_ATTEMPTS attempts or OUTBOX_MAX_AGE_SECONDS of age; 5yz replies fail at once. A 535 also marks the
  account: last_test_ok = False with a summary saying that delivery found an authentication problem (the accounts
  report shows it as a failed check).
- Per account (OUTBOX_MAX_CONNECTIONS, OUTBOX_RATE_PER_MINUTE, OUTBOX_ACCOUNT_LIMITS by account name): at most that many
  workers hold notifications of the account at once (each uses one connection for it), and at most that many
  attempts are started in any 60 seconds. Both are checked at claim time, inside the claim's transaction, so they
  hold across threads and processes.
- Graceful stop: the message being sent finishes and is recorded; the rest of the claimed batch goes back to the queue.
"""
import base64
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta
from email.utils import make_msgid

from flask_babel import lazy_gettext as _l
from peewee import IntegrityError, OperationalError, fn
from wtforms.validators import ValidationError

from webapp.config import Defaults
from webapp.db import Prepared, database, insert_row
from webapp.forms import CONTROL_CHARS, check_address
from webapp.mail.compose import (
    Attachment,
    compose_notification,
    envelope_address,
    header_block,
    needs_smtputf8,
    new_message_id,
    notification_bytes,
    resolve_addressing,
)
from webapp.mail.connectors import parse_networks
from webapp.mail.errors import N_, MailError, Step, reply_text
from webapp.mail.transport import SendResult, SmtpSession
from webapp.models import DeliveryAttempt, Notification, Setting, SmtpAccount, utcnow

log = logging.getLogger(__name__)

WAITING = ("queued", "retrying")
ACTIVE = ("queued", "sending", "retrying")
FOOTER_SETTING = "footer_text"

# Bounds on one notification (SECURITY 23): clear errors instead of unbounded memory.
MAX_RECIPIENTS = 100        # to + cc + bcc
MAX_SUBJECT = 998           # one header line (RFC 5322 §2.1.1)
MAX_BODY_BYTES = 5 * 1024 * 1024          # text + HTML, UTF-8
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024   # all attachments together
MAX_IDEMPOTENCY_KEY = 255
MAX_CREATED_BY = 100

# Outcomes are recorded in one transaction per this many messages, or sooner when the first waited this long.
RECORD_EVERY = 50
RECORD_SECONDS = 0.5
# Steps where the session itself failed (not this message): the outcome applies to the rest of the account's group.
SESSION_STEPS = frozenset({Step.DNS, Step.CONNECT, Step.PROXY, Step.TLS, Step.CERTIFICATE, Step.GREETING,
                           Step.STARTTLS, Step.AUTH})
LEASE_EXPIRED = "lease_expired"
LOCK_RETRY_SECONDS = 60     # how long a write waits, in total, for SQLite's lock before giving up


class _WriterTurn:
    """Enqueuers take turns before asking SQLite for its write lock.

    SQLite's busy handler polls with growing sleeps (1, 2, 5, 10... up to 100 ms): writers contending for its lock
    mostly sleep, long after it was released. Threads of one process queue on a lock; processes (the forked
    serving processes of `smtpdesk serve`, the CLI) on an flock() of a file beside the database, which the kernel
    hands to the next waiter the moment it is released, and releases itself if its holder dies. The outbox
    worker's own writes still meet the busy handler: they are few, batched, and nobody waits on them.
    """

    def __init__(self):
        self._threads = threading.Lock()
        self._file: tuple | None = None  # (pid, database path, descriptor): each process opens its own
        self._locked: int | None = None  # the descriptor flock()ed by the thread holding the turn

    def __enter__(self):
        self._threads.acquire()
        try:
            descriptor = self._descriptor()
            if descriptor is not None:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
            self._locked = descriptor
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc_info):
        try:
            if self._locked is not None:
                fcntl.flock(self._locked, fcntl.LOCK_UN)
        finally:
            self._locked = None
            self._threads.release()

    def _descriptor(self) -> int | None:
        path = database.database
        if not path or path == ":memory:" or path.startswith("file:"):
            return None
        if self._file is None or self._file[:2] != (os.getpid(), path):
            # Not the parent's descriptor after a fork: an flock() belongs to the open file, which it shares.
            if self._file is not None and self._file[0] == os.getpid():
                os.close(self._file[2])
            self._file = (os.getpid(), path, os.open(f"{path}-enqueue.lock", os.O_RDWR | os.O_CREAT, 0o600))
        return self._file[2]


_ENQUEUE_TURN = _WriterTurn()


# --- Errors ----------------------------------------------------------------------------------------------------


class NotificationError(ValueError):
    """The notification cannot be queued as given: field_errors maps a field (to, cc, bcc, subject, text, html,
    account, reply_to, return_path, confirmation_email, idempotency_key, attachments, source) to a message (a lazy
    translatable string: str() gives the current locale's text, English outside a request)."""

    def __init__(self, field_errors: dict):
        self.field_errors = field_errors
        super().__init__("invalid notification: " + ", ".join(sorted(field_errors)))


class NoDefaultAccount(LookupError):
    """No account was named and no enabled default SMTP account exists."""

    def __init__(self):
        super().__init__("no enabled default SMTP account")


class IdempotencyConflict(ValueError):
    """The idempotency key was used before for a different notification (existing_id)."""

    def __init__(self, existing_id: int):
        self.existing_id = existing_id
        super().__init__(f"idempotency key already used by notification {existing_id} with another payload")


# --- Configuration ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OutboxSettings:
    """The worker's knobs; from_config() reads the OUTBOX_* keys (see webapp/config.py Defaults)."""

    batch_size: int = 250                # notifications per claim
    lease_seconds: float = 180           # how long a claim is exclusive; must exceed 2 x (smtp_deadline + 1)
    poll_seconds: float = 1.0            # idle wait between empty claims
    concurrency: int = 4                 # accounts delivered in parallel by one worker (one thread each)
    max_attempts: int = 8                # then a transient failure becomes final
    max_age_seconds: float = 2 * 86400   # ... or when the notification is this old
    backoff_base_seconds: float = 30     # first retry after about this long, then doubling
    backoff_max_seconds: float = 3600    # never waiting longer than this between attempts
    max_connections: int = 4             # per account: workers holding its notifications at once
    rate_per_minute: int = 0             # per account: attempts started in any 60 s (0 = no limit)
    account_limits: dict = dataclasses.field(default_factory=dict)  # {account name: {"max_connections", ...}}
    smtp_timeout: float = 30             # connect and each read
    smtp_deadline: float = 60            # one message's whole dialogue (the opening included)
    session_idle_seconds: float = 15     # close a kept connection unused this long
    # Never connected to (OUTBOUND_BLOCKED_NETWORKS); the same defaults as the app's when built without a config.
    blocked_networks: tuple = Defaults.OUTBOUND_BLOCKED_NETWORKS  # parsed into ip_network objects below

    KEYS = {
        "batch_size": "OUTBOX_BATCH_SIZE", "lease_seconds": "OUTBOX_LEASE_SECONDS",
        "poll_seconds": "OUTBOX_POLL_SECONDS", "concurrency": "OUTBOX_CONCURRENCY",
        "max_attempts": "OUTBOX_MAX_ATTEMPTS", "max_age_seconds": "OUTBOX_MAX_AGE_SECONDS",
        "backoff_base_seconds": "OUTBOX_BACKOFF_BASE_SECONDS", "backoff_max_seconds": "OUTBOX_BACKOFF_MAX_SECONDS",
        "max_connections": "OUTBOX_MAX_CONNECTIONS", "rate_per_minute": "OUTBOX_RATE_PER_MINUTE",
        "account_limits": "OUTBOX_ACCOUNT_LIMITS", "smtp_timeout": "OUTBOX_SMTP_TIMEOUT",
        "smtp_deadline": "OUTBOX_SMTP_DEADLINE", "session_idle_seconds": "OUTBOX_SESSION_IDLE_SECONDS",
        "blocked_networks": "OUTBOUND_BLOCKED_NETWORKS",
    }

    def __post_init__(self):
        object.__setattr__(self, "blocked_networks", parse_networks(self.blocked_networks))
        if self.lease_seconds < 2 * (self.smtp_deadline + 1):
            raise ValueError("OUTBOX_LEASE_SECONDS must be at least 2 x (OUTBOX_SMTP_DEADLINE + 1): a message must "
                             "finish well within its lease")
        if self.batch_size < 1 or self.concurrency < 1 or self.max_attempts < 1 or self.max_connections < 1:
            raise ValueError("OUTBOX_BATCH_SIZE, _CONCURRENCY, _MAX_ATTEMPTS and _MAX_CONNECTIONS must be positive")

    @classmethod
    def from_config(cls, config, **overrides) -> "OutboxSettings":
        """The settings from a Flask config (or any mapping), keys missing there keeping their defaults."""
        values = {name: config[key] for name, key in cls.KEYS.items() if config.get(key) is not None}
        values.update(overrides)
        return cls(**values)

    def limits(self, account_name: str) -> tuple[int, int]:
        """(max connections, messages per minute) for an account: its OUTBOX_ACCOUNT_LIMITS entry or the defaults."""
        own = self.account_limits.get(account_name) or {}
        return (int(own.get("max_connections", self.max_connections)),
                int(own.get("rate_per_minute", self.rate_per_minute)))

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt after `attempts` attempts: exponential, capped, half of it jittered."""
        delay = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** max(0, attempts - 1))
        return delay / 2 + random.uniform(0, delay / 2)


# --- Database helpers ------------------------------------------------------------------------------------------


@contextmanager
def connection():
    """This thread's database connection: opened when needed and closed again only if opened here."""
    opened = database.is_closed()
    if opened:
        database.connect()
    try:
        yield
    finally:
        if opened and not database.is_closed():
            database.close()


def _retry_locked(work):
    """Run work() (one transaction); when SQLite stays locked past its busy timeout, wait a little and try again."""
    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    while True:
        try:
            return work()
        except OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline or database.in_transaction():
                raise
            time.sleep(random.uniform(0.01, 0.1))


# --- Enqueue ---------------------------------------------------------------------------------------------------


def send_notification(*, to, subject: str, text: str, html: str | None = None, cc=(), bcc=(), account=None,
                      reply_to: str | None = None, return_path: str | None = None,
                      confirmation_email: str | None = None, idempotency_key: str | None = None,
                      attachments=(), source: str = "python", created_by: str = "") -> int:
    """Queue a notification and return its id; no network work happens here (a worker delivers it).

    to / cc / bcc: an address or a list of them ("Name <a@example.com>" allowed; bcc goes in the envelope only).
    account: an SmtpAccount, its id or its name; None means the enabled default account.
    reply_to / return_path / confirmation_email: per-message overrides, ignored (and recorded as such) when the
    account forces its settings. attachments: [(filename, mimetype, bytes)].
    idempotency_key: a repeated call with the same key and payload returns the first notification's id.
    Raises NotificationError (field_errors), NoDefaultAccount, IdempotencyConflict.
    """
    errors = {}
    to_list = _address_list("to", to, errors, required=True)
    cc_list = _address_list("cc", cc, errors)
    bcc_list = _address_list("bcc", bcc, errors)
    if "to" not in errors and "cc" not in errors and "bcc" not in errors and \
            len(to_list) + len(cc_list) + len(bcc_list) > MAX_RECIPIENTS:
        errors["to"] = _l("Send to at most %(max)d recipients (to, cc and bcc together).", max=MAX_RECIPIENTS)
    subject = _text_field("subject", subject, errors, required=True, single_line=True, limit=MAX_SUBJECT)
    text = _text_field("text", text, errors, required=True)
    html = _text_field("html", html, errors)
    if "text" not in errors and "html" not in errors and \
            len(text.encode("utf-8", "replace")) + len((html or "").encode("utf-8", "replace")) > MAX_BODY_BYTES:
        errors["text"] = _l("The message is too large (at most %(max)d MB).", max=MAX_BODY_BYTES // 2 ** 20)
    overrides = {name: _optional_address(name, value, errors) for name, value in
                 (("reply_to", reply_to), ("return_path", return_path), ("confirmation_email", confirmation_email))}
    key = _text_field("idempotency_key", idempotency_key, errors, single_line=True, limit=MAX_IDEMPOTENCY_KEY)
    files = _attachments(attachments, errors)
    if source not in Notification.SOURCES:
        errors["source"] = _l("Unknown source.")
    created_by = str(created_by or "")[:MAX_CREATED_BY]
    if errors:
        raise NotificationError(errors)

    payload = {"to": to_list, "cc": cc_list, "bcc": bcc_list, "subject": subject, "text": text, "html": html,
               "account": _account_label(account), **overrides,
               "attachments": [[f.filename, f.mimetype, hashlib.sha256(f.data).hexdigest()] for f in files]}
    fingerprint = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def enqueue() -> int:
        with database.atomic("IMMEDIATE"):
            if key:
                earlier = (Notification.select(Notification.id, Notification.request_fingerprint)
                           .where(Notification.idempotency_key == key).first())
                if earlier is not None:
                    if earlier.request_fingerprint != fingerprint:
                        raise IdempotencyConflict(earlier.id)
                    return earlier.id
            chosen = _resolve_account(account)
            rules = resolve_addressing(
                reply_to=chosen.reply_to, return_path=chosen.return_path,
                confirmation_email=chosen.confirmation_email, read_confirmation=chosen.read_confirmation,
                force_settings=chosen.force_settings, override_reply_to=overrides["reply_to"],
                override_return_path=overrides["return_path"],
                override_confirmation=overrides["confirmation_email"])
            now = utcnow()
            notification = Notification(
                account=chosen, status="queued", to_addrs=_json(to_list), cc_addrs=_json(cc_list),
                bcc_addrs=_json(bcc_list), subject=subject, body_text=text, body_html=html,
                attachments=_json([{"filename": f.filename, "mimetype": f.mimetype,
                                    "data": base64.b64encode(f.data).decode("ascii")} for f in files]) if files
                else None,
                overrides_ignored=rules.overrides_ignored, message_id=_message_id(chosen.sender),
                idempotency_key=key or None, request_fingerprint=fingerprint, next_attempt_at=now,
                source=source, created_by=created_by, created_at=now, updated_at=now, **overrides)
            return insert_row(notification)  # Notification.create(), its SQL built once

    def enqueue_in_turn() -> int:
        # Inside the caller's transaction this connection may already hold SQLite's write lock: no turn-taking then.
        with nullcontext() if database.in_transaction() else _ENQUEUE_TURN:
            return enqueue()

    with connection():
        try:
            notification_id = _retry_locked(enqueue_in_turn)
        except IntegrityError:
            # The same idempotency key inserted by a concurrent call (another process) just before this one.
            if not key:
                raise
            earlier = Notification.get(Notification.idempotency_key == key)
            if earlier.request_fingerprint != fingerprint:
                raise IdempotencyConflict(earlier.id) from None
            notification_id = earlier.id
    log.info("notification %s queued (source %s)", notification_id, source)
    return notification_id


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def _address_list(name: str, value, errors: dict, required: bool = False) -> list[str]:
    if value is None:
        value = []
    elif isinstance(value, str):
        value = [value] if value.strip() else []
    else:
        value = list(value)
    if required and not value:
        errors[name] = _l("Give at least one recipient.")
        return []
    if len(value) > MAX_RECIPIENTS:
        errors[name] = _l("Send to at most %(max)d recipients (to, cc and bcc together).", max=MAX_RECIPIENTS)
        return []
    addresses = []
    for item in value:
        if not isinstance(item, str):
            errors[name] = _l("Enter a valid e-mail address, such as ops@example.com or Ops <ops@example.com>.")
            return []
        try:
            addresses.append(check_address(item.strip()))
        except ValidationError as error:
            errors[name] = error.args[0] if error.args else str(error)
            return []
    return addresses


def _optional_address(name: str, value, errors: dict) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        errors[name] = _l("Enter a valid e-mail address, such as ops@example.com or Ops <ops@example.com>.")
        return None
    try:
        return check_address(value.strip())
    except ValidationError as error:
        errors[name] = error.args[0] if error.args else str(error)
        return None


def _text_field(name: str, value, errors: dict, required: bool = False, single_line: bool = False,
                limit: int | None = None) -> str | None:
    if value is None or (isinstance(value, str) and required and not value.strip()):
        if required:
            errors[name] = _l("This field is required.")
        return None if value is None else value
    if not isinstance(value, str):
        errors[name] = _l("This must be text.")
        return None
    if single_line:
        value = value.strip()
        # SECURITY 19: a line break would start a new header.
        if CONTROL_CHARS.search(value):
            errors[name] = _l("Line breaks and control characters are not allowed here.")
            return None
    if limit is not None and len(value) > limit:
        errors[name] = _l("Use at most %(max)d characters.", max=limit)
        return None
    return value


def _attachments(value, errors: dict) -> list[Attachment]:
    files, total = [], 0
    for item in value or ():
        try:
            filename, mimetype, data = item
        except (TypeError, ValueError):
            errors["attachments"] = _l("Give each attachment as (file name, MIME type, bytes).")
            return []
        maintype, slash, subtype = str(mimetype).partition("/")
        if not (isinstance(filename, str) and filename.strip() and isinstance(data, bytes) and slash and maintype
                and subtype and not CONTROL_CHARS.search(filename + mimetype)):
            errors["attachments"] = _l("Give each attachment as (file name, MIME type, bytes).")
            return []
        total += len(data)
        files.append(Attachment(filename.strip(), mimetype, data))
    if total > MAX_ATTACHMENT_BYTES:
        errors["attachments"] = _l("The attachments are too large (at most %(max)d MB).",
                                   max=MAX_ATTACHMENT_BYTES // 2 ** 20)
        return []
    return files


def _account_label(account):
    """How the caller named the account, for the idempotency fingerprint (None: the default, whichever it is)."""
    if account is None:
        return None
    return account.id if isinstance(account, SmtpAccount) else account


# Every enqueue reads its account: peewee would build the SQL of a 30-column select each time (~0.3 ms).
_DEFAULT_ACCOUNT = Prepared(lambda default, enabled: SmtpAccount.select().where(SmtpAccount.is_default == default,
                                                                               SmtpAccount.enabled == enabled))
_ACCOUNT_BY_ID = Prepared(lambda account_id: SmtpAccount.select().where(SmtpAccount.id == account_id))
_ACCOUNT_BY_NAME = Prepared(lambda name: SmtpAccount.select().where(SmtpAccount.name == name))


def _resolve_account(account) -> SmtpAccount:
    if account is None:
        found = _DEFAULT_ACCOUNT.first(True, True)
        if found is None:
            raise NoDefaultAccount()
        return found
    if isinstance(account, SmtpAccount):
        found = _ACCOUNT_BY_ID.first(account.id)
    elif isinstance(account, int) and not isinstance(account, bool):
        found = _ACCOUNT_BY_ID.first(account)
    elif isinstance(account, str):
        found = _ACCOUNT_BY_NAME.first(account.strip())
    else:
        found = None
    if found is None:
        raise NotificationError({"account": _l("No SMTP account has this name or id.")})
    if not found.enabled:
        raise NotificationError({"account": _l("This SMTP account is disabled.")})
    return found


def _message_id(sender: str) -> str:
    try:
        return new_message_id(sender)
    except ValueError:  # the account's sender is validated by its form; this is a last resort
        return make_msgid(domain="smtpdesk.invalid")


# --- Retry of a failed notification (the deliveries screen) --------------------------------------------------------


def retry_notification(notification_id: int) -> bool:
    """Queue a failed notification again (same Message-ID, attempts kept); False if it is not failed."""
    with connection():
        return bool(_retry_locked(lambda: Notification.update(
            status="queued", next_attempt_at=utcnow(), updated_at=utcnow(), lease_owner=None, lease_until=None,
        ).where(Notification.id == notification_id, Notification.status == "failed").execute()))


def outbox_counts() -> dict:
    """{status: count} for every status (zeros included)."""
    counts = dict.fromkeys(Notification.STATUSES, 0)
    with connection():
        # Kept by triggers (migration m0005): counting a million notifications by status took 70 ms.
        for status, total in database.execute_sql('SELECT "status", "total" FROM "notification_tally"'):
            counts[status] = total
    return counts


# --- Claim -----------------------------------------------------------------------------------------------------


def claim(owner: str, settings: OutboxSettings, now: datetime | None = None) -> list[Notification]:
    """Lease up to batch_size due notifications to `owner`, atomically (BEGIN IMMEDIATE), respecting each account's
    connection and rate limits; expired leases of dead workers come back first. Returns them in sending order."""

    def work() -> list[int]:
        current = now or utcnow()
        with database.atomic("IMMEDIATE"):
            _reclaim_expired(current, settings)
            ids = _due_ids(owner, current, settings)
            if ids:
                Notification.update(status="sending", lease_owner=owner,
                                    lease_until=current + timedelta(seconds=settings.lease_seconds),
                                    updated_at=current).where(Notification.id.in_(ids)).execute()
            return ids

    ids = _retry_locked(work)
    if not ids:
        return []
    # The account is loaded once per group by the worker, not repeated on every row.
    query = (Notification.select().where(Notification.id.in_(ids))
             .order_by(Notification.next_attempt_at, Notification.id))
    return list(query)


def _reclaim_expired(now: datetime, settings: OutboxSettings) -> None:
    """Notifications left in "sending" by a worker that died: record the lost attempt and make them due again."""
    expired = Notification.select().where(Notification.status == "sending", Notification.lease_until < now)
    for notification in expired:
        reply = N_("The worker sending it stopped before recording the result; the message may have been sent.")
        DeliveryAttempt.create(notification=notification, started_at=notification.updated_at or now,
                               duration_ms=0, ok=False, code=None, reply=reply, step=LEASE_EXPIRED, transient=True,
                               worker=notification.lease_owner or "")
        attempts = notification.attempts + 1
        values = dict(attempts=attempts, lease_owner=None, lease_until=None, updated_at=now, last_code=None,
                      last_reply=reply, last_step=LEASE_EXPIRED)
        give_up = _give_up_reason(notification, attempts, now, settings)
        if give_up:
            values.update(status="failed", last_reply=f"{reply} {give_up}")
        else:
            values.update(status="retrying", next_attempt_at=now)
        Notification.update(**values).where(Notification.id == notification.id).execute()
        log.warning("notification %s: lease of %s expired; %s", notification.id, notification.lease_owner,
                    "failed" if give_up else "queued again")


# The oldest due notifications, each waiting status walked in order on its (status, next_attempt_at) index and
# stopping at the limit: the cost of a claim no longer grows with the length of the queue.
_OLDEST_DUE = (
    'SELECT "n"."id", "n"."account_id", "a"."name" FROM ('
    + " UNION ALL ".join(
        'SELECT * FROM (SELECT "id", "account_id", "next_attempt_at" FROM "notification" '
        f'WHERE "status" = \'{status}\' AND "next_attempt_at" <= ? ORDER BY "next_attempt_at", "id" LIMIT ?)'
        for status in WAITING)
    + ') AS "n" JOIN "smtp_account" AS "a" ON "a"."id" = "n"."account_id" '
    'ORDER BY "n"."next_attempt_at", "n"."id" LIMIT ?')


def _due_ids(owner: str, now: datetime, settings: OutboxSettings) -> list[int]:
    """Up to batch_size due notifications, oldest first, of accounts whose limits allow them."""
    looked_at = settings.batch_size * 2
    rows = database.execute_sql(_OLDEST_DUE, (now, looked_at) * len(WAITING) + (looked_at,)).fetchall()
    ids: list[int] = []
    allowance: dict[int, int] = {}
    for notification_id, account_id, name in rows:
        if account_id not in allowance:
            allowance[account_id] = _allowance(account_id, name, owner, now, settings)
        if allowance[account_id] <= 0:
            # The oldest belong to an account at its limits: look past it, account by account (the slow way).
            return _due_ids_by_account(owner, now, settings)
        allowance[account_id] -= 1
        ids.append(notification_id)
        if len(ids) == settings.batch_size:
            break
    return ids


def _due_ids_by_account(owner: str, now: datetime, settings: OutboxSettings) -> list[int]:
    """Accounts by their oldest due notification, each taking what its limits allow (a scan of the queue)."""
    due = (Notification.status.in_(WAITING)) & (Notification.next_attempt_at <= now)
    accounts = (Notification.select(Notification.account, SmtpAccount.name,
                                    fn.MIN(Notification.next_attempt_at).alias("first"))
                .join(SmtpAccount).where(due).group_by(Notification.account)
                .order_by(fn.MIN(Notification.next_attempt_at)))
    ids: list[int] = []
    for row in accounts.objects():
        room = settings.batch_size - len(ids)
        if room <= 0:
            break
        allowed = _allowance(row.account_id, row.name, owner, now, settings)
        if allowed <= 0:
            continue
        query = (Notification.select(Notification.id)
                 .where(due & (Notification.account == row.account_id))
                 .order_by(Notification.next_attempt_at, Notification.id).limit(min(room, allowed)))
        ids.extend(n.id for n in query)
    return ids


def _allowance(account_id: int, name: str, owner: str, now: datetime, settings: OutboxSettings) -> int:
    """How many notifications of this account the owner may claim now (connection and rate limits)."""
    max_connections, per_minute = settings.limits(name)
    holding = (Notification.select(Notification.lease_owner).distinct()
               .where(Notification.account == account_id, Notification.status == "sending",
                      Notification.lease_until >= now, Notification.lease_owner != owner))
    if holding.count() >= max_connections:
        return 0
    if per_minute <= 0:
        return settings.batch_size
    started = (DeliveryAttempt.select().join(Notification)
               .where(Notification.account == account_id,
                      DeliveryAttempt.started_at >= now - timedelta(seconds=60),
                      DeliveryAttempt.step.is_null() | (DeliveryAttempt.step != LEASE_EXPIRED)).count())
    in_flight = Notification.select().where(Notification.account == account_id,
                                            Notification.status == "sending").count()
    return per_minute - started - in_flight


def _give_up_reason(notification: Notification, attempts: int, now: datetime, settings: OutboxSettings) -> str:
    """Why a transient failure is now final ("" while retries remain)."""
    if attempts >= settings.max_attempts:
        return f"(Gave up after {attempts} attempts.)"
    if (now - notification.created_at).total_seconds() >= settings.max_age_seconds:
        return f"(Gave up: not delivered within {settings.max_age_seconds:g} seconds.)"
    return ""


# --- The worker ------------------------------------------------------------------------------------------------


def worker_name() -> str:
    """host:pid:random — unique per Worker, readable in the delivery log."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclasses.dataclass
class _KeptSession:
    session: SmtpSession
    last_used: float


class Worker:
    """Claims due notifications and delivers them: run_once() for one batch, run_forever(stop_event) until stopped.

    Worker(settings=None, *, name=None, hooks=(), **overrides): overrides replace OutboxSettings fields, e.g.
    Worker(batch_size=10, lease_seconds=5, smtp_deadline=1). hooks: callables run every hook_seconds while running
    forever (the report schedule); their exceptions are logged, never fatal.
    """

    def __init__(self, settings: OutboxSettings | None = None, *, name: str | None = None, hooks=(),
                 hook_seconds: float = 30.0, **overrides):
        settings = settings or OutboxSettings()
        self.settings = dataclasses.replace(settings, **overrides) if overrides else settings
        self.name = name or worker_name()
        self.hooks = list(hooks)
        self.hook_seconds = hook_seconds
        self.stop_event = threading.Event()
        self._sessions: dict[int, _KeptSession] = {}
        self._sessions_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._next_hooks = 0.0

    # -- running --

    def run_forever(self, stop_event: threading.Event | None = None) -> None:
        """Deliver until stop_event (or self.stop()) is set; then finish the message in flight, put the rest of the
        batch back, close the connections."""
        if stop_event is not None:
            self.stop_event = stop_event
        log.info("outbox worker %s started", self.name)
        try:
            while not self.stop_event.is_set():
                self._run_hooks()
                try:
                    delivered = self.run_once()
                except Exception:  # a database hiccup must not end the worker: log, wait, go on
                    log.exception("outbox worker %s: batch failed", self.name)
                    delivered = 0
                self.close_idle_sessions()
                if not delivered:
                    self.stop_event.wait(self.settings.poll_seconds)
        finally:
            self.close()
            log.info("outbox worker %s stopped", self.name)

    def stop(self) -> None:
        """Ask run_forever() to stop after the messages in flight."""
        self.stop_event.set()

    def run_once(self) -> int:
        """Claim one batch and deliver it (accounts in parallel, up to `concurrency`); return how many were claimed."""
        with connection():
            batch = claim(self.name, self.settings)
        if not batch:
            return 0
        groups: OrderedDict[int, list[Notification]] = OrderedDict()
        for notification in batch:
            groups.setdefault(notification.account_id, []).append(notification)
        if len(groups) == 1 or self.settings.concurrency == 1:
            for notifications in groups.values():
                self._deliver_group(notifications)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="outbox")
            for future in [self._pool.submit(self._deliver_group, group) for group in groups.values()]:
                future.result()
        return len(batch)

    def run_until_idle(self, timeout: float = 30.0) -> None:
        """Deliver until nothing is queued, sending or retrying (tests, `smtpdesk worker --until-idle`)."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.run_once():
                counts = outbox_counts()
                if not any(counts[status] for status in ACTIVE):
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"outbox not drained after {timeout}s: {counts}")
                time.sleep(min(0.05, self.settings.poll_seconds))

    def close(self) -> None:
        """Close every kept connection and the thread pool."""
        with self._sessions_lock:
            kept, self._sessions = list(self._sessions.values()), {}
        for entry in kept:
            entry.session.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def close_idle_sessions(self) -> None:
        """Close connections unused for session_idle_seconds (servers drop idle clients anyway)."""
        limit = time.monotonic() - self.settings.session_idle_seconds
        with self._sessions_lock:
            idle = [key for key, entry in self._sessions.items() if entry.last_used < limit]
            closing = [self._sessions.pop(key) for key in idle]
        for entry in closing:
            entry.session.close()

    def _run_hooks(self) -> None:
        if not self.hooks or time.monotonic() < self._next_hooks:
            return
        self._next_hooks = time.monotonic() + self.hook_seconds
        for hook in self.hooks:
            try:
                hook()
            except Exception:
                log.exception("outbox worker %s: hook %r failed", self.name, hook)

    # -- one account's notifications over one connection --

    def _deliver_group(self, notifications: list[Notification]) -> None:
        with connection():
            account = SmtpAccount.get_or_none(SmtpAccount.id == notifications[0].account_id)
            if account is None:  # RESTRICT makes this impossible; kept so that a claim is never left behind
                self._release(notifications)
                return
            session, shared = None, None
            if not account.enabled:  # disabled after these were queued: nothing goes out through it
                shared = SendResult.refusal(MailError(Step.POLICY, False, N_("The account %(account)s is disabled."),
                                            N_("Enable the account, then retry the notification."),
                                            {"account": account.name}))
            else:
                try:
                    session = self._session(account)
                except MailError as error:  # our own rules refuse the account (credential host, no connector)
                    shared = SendResult.refusal(error)
            try:
                self._deliver_over(session, account, list(notifications), shared, footer_for(account) or "")
            finally:
                self._keep(account.id, session)

    def _deliver_over(self, session: SmtpSession | None, account: SmtpAccount, pending: list[Notification],
                      shared: SendResult | None, footer: str) -> None:
        """Send the pending notifications in order; once the session itself failed, the rest share that outcome."""
        group = _Leased(self, pending)
        composer = _Composer(account, footer)
        try:
            while group.pending:
                if self.stop_event.is_set():
                    self._release(group.pending)
                    return
                if not group.holds_next():
                    continue
                notification = group.pending[0]
                if shared is not None:
                    self._finish(group, notification, account, shared, started=utcnow())
                else:
                    result = self._send(session, account, notification, group, composer)
                    if not result.ok and result.error is not None and _session_failed(result):
                        shared = result
                group.done(notification)
        except Exception:
            log.exception("outbox worker %s: delivery through %s failed", self.name, account.name)
            # The one in flight counts a transient attempt, so backoff and the attempt limit apply: a fault that
            # repeats cannot spin. Unrecorded by the server, it may go out again (the documented window).
            in_flight, rest = group.pending[:1], group.pending[1:]
            self._release(rest)
            for notification in in_flight:
                self._finish(group, notification, account, SendResult.refusal(MailError(
                    Step.INTERNAL, True, N_("An unexpected error interrupted this delivery."),
                    N_("It will be retried; if it repeats, look at the server log."))), started=utcnow())
        finally:
            group.flush()

    def _release(self, notifications: list[Notification]) -> None:
        """Give claimed, unsent notifications back to the queue (graceful stop)."""
        ids = [n.id for n in notifications]
        if not ids:
            return

        def release():
            with database.atomic("IMMEDIATE"):
                Notification.update(
                    status=fn.IIF(Notification.attempts > 0, "retrying", "queued"),
                    lease_owner=None, lease_until=None, updated_at=utcnow(),
                ).where(Notification.id.in_(ids), Notification.lease_owner == self.name,
                        Notification.status == "sending").execute()

        _retry_locked(release)
        log.info("outbox worker %s put %d notifications back in the queue", self.name, len(ids))

    def _session(self, account: SmtpAccount) -> SmtpSession:
        settings = account.smtp_settings(self.settings.smtp_timeout, self.settings.smtp_deadline,
                                         blocked_networks=self.settings.blocked_networks)
        with self._sessions_lock:
            entry = self._sessions.pop(account.id, None)
        if entry is not None and entry.session.settings == settings:
            return entry.session
        if entry is not None:  # the account's settings changed: a new connection
            entry.session.close()
        return SmtpSession(settings)

    def _keep(self, account_id: int, session: SmtpSession | None) -> None:
        if session is None:
            return
        with self._sessions_lock:
            self._sessions[account_id] = _KeptSession(session, time.monotonic())

    def _renew(self, notifications: list[Notification]) -> tuple[set[int], datetime]:
        """Extend the lease of the notifications still ours; (their ids, the new lease end)."""
        now = utcnow()
        renewed_until = now + timedelta(seconds=self.settings.lease_seconds)
        ids = [n.id for n in notifications]

        def renew():
            with database.atomic("IMMEDIATE"):
                # Still ours unless a claim took it back after it expired (that clears or changes the owner).
                mine = (Notification.id.in_(ids) & (Notification.lease_owner == self.name)
                        & (Notification.status == "sending"))
                Notification.update(lease_until=renewed_until).where(mine).execute()
                return {n.id for n in Notification.select(Notification.id).where(mine)}

        held = _retry_locked(renew)
        lost = [i for i in ids if i not in held]
        if lost:
            log.warning("outbox worker %s lost the lease of %s; another worker has them", self.name, lost)
        return held, renewed_until

    def _send(self, session: SmtpSession, account: SmtpAccount, notification: Notification,
              group: "_Leased", composer: "_Composer") -> SendResult:
        started = utcnow()
        try:
            message, envelope_from, recipients = composer.message_for(notification)
        except ValueError as exc:
            result = SendResult.refusal(MailError(Step.POLICY, False,
                                        N_("The message could not be composed (%(reason)s)."),
                                        N_("Check the account's addresses and the notification's recipients."),
                                        {"reason": str(exc)}))
            self._finish(group, notification, account, result, started=started)
            return result
        # The header block shown in the detail view: from the very bytes that go after DATA.
        headers = header_block(message)
        # The next message's envelope goes with this one's final dot, unless a stop is asked for. Its content goes
        # only in its own turn, after holds_next() (the transport drops the connection if that turn never comes).
        then = None if self.stop_event.is_set() or len(group.pending) < 2 else composer.ready(group.pending[1])
        result = session.send(message, envelope_from=envelope_from, recipients=recipients, then=then)
        if _reconnectable(result) and group.holds_next():
            # The server closed a kept connection before taking the message: record that, and try once more at
            # once on a new connection (nothing was handed over, so this cannot duplicate the message).
            self._finish(group, notification, account, result, started=started, headers=headers, final=False)
            started = utcnow()
            result = session.send(message, envelope_from=envelope_from, recipients=recipients, then=then)
        self._finish(group, notification, account, result, started=started, headers=headers)
        return result

    def _finish(self, group: "_Leased", notification: Notification, account: SmtpAccount, result: SendResult, *,
                started: datetime, headers: str | None = None, final: bool = True) -> None:
        """Note one attempt's outcome; the group records its outcomes together (see _Leased.note)."""
        group.note(_Outcome(notification, account, result, started, headers, final))

    def _record(self, outcomes: list["_Outcome"]) -> None:
        """Record attempts and the notifications' new states, all in one transaction: a row in delivery_attempt
        each, and the notification updated under our lease (plain SQL with executemany: building each statement
        with the ORM cost more than the SMTP dialogue)."""
        now = utcnow()
        rows, earlier = [], Counter()
        for outcome in outcomes:
            # A reconnected message has two outcomes here (the lost try, then the real one): both count.
            rows.append((outcome, self._new_values(outcome, now, earlier[outcome.notification.id])))
            earlier[outcome.notification.id] += 1

        def record():
            # IMMEDIATE: the write lock first (waiting for it), since a read that later wants to write can only fail.
            with database.atomic("IMMEDIATE"):
                ids = [outcome.notification.id for outcome, _ in rows]
                held = {row[0] for row in database.execute_sql(
                    f'SELECT "id" FROM "notification" WHERE "id" IN ({", ".join("?" * len(ids))}) '
                    f'AND "lease_owner" = ?', (*ids, self.name))}
                database.cursor().executemany(_INSERT_ATTEMPT, [
                    (o.notification.id, o.started, int(o.result.elapsed * 1000), o.result.ok, o.result.code,
                     values["last_reply_attempt"], values["last_step"], o.transient, self.name)
                    for o, values in rows])
                database.cursor().executemany(_UPDATE_LEASED, [
                    (values["attempts"], values["last_code"], values["last_reply"], values["last_step"], now,
                     values.get("headers_sent"), values.get("status"), values.get("sent_at"),
                     values.get("next_attempt_at"), o.final, o.final, o.notification.id, self.name)
                    for o, values in rows if o.notification.id in held])
                for o, values in rows:
                    if o.notification.id not in held:
                        # Outside the lease rules (this worker stalled past its lease and another took the row): the
                        # attempt stays in the log; the row is the new owner's, except that a delivery is a fact.
                        log.warning("notification %s: recording after losing its lease", o.notification.id)
                        if o.result.ok and o.final:
                            update = {k: v for k, v in values.items() if k != "last_reply_attempt"}
                            Notification.update(**update, updated_at=now, lease_owner=None, lease_until=None).where(
                                Notification.id == o.notification.id, Notification.status != "sent").execute()
                    error = o.result.error
                    if not o.result.ok and error is not None and error.step is Step.AUTH and o.result.code == 535:
                        _flag_authentication(o.account, values["last_reply_attempt"], now)

        _retry_locked(record)
        for outcome, values in rows:  # after the commit: record() may run again when SQLite stays locked
            outcome.notification.attempts += 1
            name, number = outcome.account.name, outcome.notification.id
            if outcome.result.ok:
                log.info("notification %s sent via %s (%s)", number, name, outcome.result.code)
            else:
                log.warning("notification %s via %s: %s (%s)", number, name, values["last_reply"],
                            values.get("status", "sending"))

    def _new_values(self, outcome: "_Outcome", now: datetime, earlier: int) -> dict:
        """The notification's columns after this attempt (status only when final); earlier: its attempts recorded
        before this one in the same transaction."""
        result, notification = outcome.result, outcome.notification
        reply = _describe(result)
        attempts = notification.attempts + earlier + 1
        values = dict(attempts=attempts, last_code=result.code, last_reply=reply, last_reply_attempt=reply,
                      last_step=None if result.ok else (result.error.step.value if result.error else None))
        if outcome.headers is not None:
            values["headers_sent"] = outcome.headers
        if outcome.final:
            give_up = "" if result.ok or not outcome.transient else _give_up_reason(notification, attempts, now,
                                                                                     self.settings)
            if result.ok:
                values.update(status="sent", sent_at=now)
            elif outcome.transient and not give_up:
                values.update(status="retrying",
                              next_attempt_at=now + timedelta(seconds=self.settings.backoff(attempts)))
            else:
                values.update(status="failed", last_reply=f"{reply} {give_up}".strip())
        return values


_INSERT_ATTEMPT = ('INSERT INTO "delivery_attempt" ("notification_id", "started_at", "duration_ms", "ok", "code", '
                   '"reply", "step", "transient", "worker") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
# One statement for every outcome: NULL parameters keep the column (headers, status, sent_at, next attempt), and a
# final attempt ends the lease. Only rows still leased to this worker (the last parameter) are touched.
_UPDATE_LEASED = (
    'UPDATE "notification" SET "attempts" = ?, "last_code" = ?, "last_reply" = ?, "last_step" = ?, "updated_at" = ?, '
    '"headers_sent" = COALESCE(?, "headers_sent"), "status" = COALESCE(?, "status"), '
    '"sent_at" = COALESCE(?, "sent_at"), "next_attempt_at" = COALESCE(?, "next_attempt_at"), '
    '"lease_owner" = CASE WHEN ? THEN NULL ELSE "lease_owner" END, '
    '"lease_until" = CASE WHEN ? THEN NULL ELSE "lease_until" END '
    'WHERE "id" = ? AND "lease_owner" = ?')


@dataclasses.dataclass
class _Outcome:
    """One attempt, sent or refused, waiting to be recorded with the others of its group."""

    notification: Notification
    account: SmtpAccount
    result: SendResult
    started: datetime
    headers: str | None
    final: bool

    @property
    def transient(self) -> bool:
        return bool(self.result.error is not None and self.result.error.transient)


class _Composer:
    """Builds each message of a group once: the next one when its envelope goes out with the current one's final
    dot (ready()), then sent in its turn (message_for()). Reads only the notification and account objects it is
    given; no database work. (A thread composed ahead while the sender waited on the network; once a message took
    one round trip, it mostly fought the sending thread for the GIL: without it, drains over implicit TLS went
    from about 1,850 to 2,250 msg/s, and to smtp-sink from 1,850 to 2,330.)"""

    def __init__(self, account: SmtpAccount, footer: str):
        self.account, self.footer = account, footer
        self.made: dict[int, tuple] = {}

    def message_for(self, notification: Notification):
        """build_wire(notification), its ValueError included."""
        made = self.made.pop(notification.id, None)
        return made if made is not None else build_wire(notification, self.account, self.footer)

    def ready(self, notification: Notification):
        """build_wire(notification), kept for its turn; None if it cannot be composed (its turn explains why)."""
        if notification.id not in self.made:
            try:
                self.made[notification.id] = build_wire(notification, self.account, self.footer)
            except ValueError:
                return None
        return self.made[notification.id]


class _Leased:
    """One account's claimed notifications and their lease: a message is sent only while more than half of the
    lease (at least one SMTP deadline and a second) is left, renewing it for the whole group otherwise."""

    def __init__(self, worker: Worker, notifications: list[Notification]):
        self.worker = worker
        self.pending = list(notifications)
        self.lease_until = min((n.lease_until for n in self.pending if n.lease_until), default=utcnow())
        self.outcomes: list[_Outcome] = []
        self._first_noted = 0.0

    def note(self, outcome: "_Outcome") -> None:
        """Keep an outcome to record; recorded every RECORD_EVERY outcomes or RECORD_SECONDS, and at the group's end.
        Until then a sent message is still "sending" under our lease: if the process dies now, the lease expires
        and the message goes again with the same Message-ID (the window DESIGN.md accepts, a few messages wide)."""
        if not self.outcomes:
            self._first_noted = time.monotonic()
        self.outcomes.append(outcome)
        if len(self.outcomes) >= RECORD_EVERY or time.monotonic() - self._first_noted >= RECORD_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Record the outcomes noted so far (one transaction)."""
        outcomes, self.outcomes = self.outcomes, []
        if outcomes:
            self.worker._record(outcomes)

    def holds_next(self) -> bool:
        """Whether the first pending notification may be sent now (renewing if needed; lost ones are dropped)."""
        left = (self.lease_until - utcnow()).total_seconds()
        if left <= self.worker.settings.lease_seconds / 2:
            held, self.lease_until = self.worker._renew(self.pending)
            first = self.pending[0] if self.pending else None
            self.pending = [n for n in self.pending if n.id in held]
            return bool(self.pending) and self.pending[0] is first
        return bool(self.pending)

    def done(self, notification: Notification) -> None:
        # Always the head (sent in order); by identity: a model's == compares by query, slow over a long batch.
        if self.pending and self.pending[0] is notification:
            del self.pending[0]


def footer_for(account: SmtpAccount) -> str | None:
    """The system footer when the account appends it (read once per group of messages by the worker)."""
    return Setting.get_value(FOOTER_SETTING, "") if account.footer_enabled else None


def build_message(notification: Notification, account: SmtpAccount, footer: str | None = None):
    """(EmailMessage, envelope sender, envelope recipients) for a notification by its account's current rules
    (footer: footer_for(account), read here when not given). Raises ValueError for an address that cannot be used."""
    fields, envelope_from, recipients = _message_fields(notification, account, footer)
    return compose_notification(**fields), envelope_from, recipients


def build_wire(notification: Notification, account: SmtpAccount, footer: str | None = None):
    """build_message() as the bytes that go after DATA (notification_bytes): what the worker sends."""
    fields, envelope_from, recipients = _message_fields(notification, account, footer)
    data = notification_bytes(smtputf8=needs_smtputf8(envelope_from, recipients), **fields)
    return data, envelope_from, recipients


def _message_fields(notification: Notification, account: SmtpAccount, footer: str | None):
    rules = resolve_addressing(
        reply_to=account.reply_to, return_path=account.return_path, confirmation_email=account.confirmation_email,
        read_confirmation=account.read_confirmation, force_settings=account.force_settings,
        override_reply_to=notification.reply_to, override_return_path=notification.return_path,
        override_confirmation=notification.confirmation_email)
    if footer is None:
        footer = footer_for(account)
    attachments = [Attachment(a["filename"], a["mimetype"], base64.b64decode(a["data"]))
                   for a in json.loads(notification.attachments or "[]")]
    fields = dict(
        sender=account.sender, to=notification.to_list, cc=notification.cc_list, subject=notification.subject,
        text=notification.body_text, html=notification.body_html, message_id=notification.message_id,
        reply_to=rules.reply_to, confirmation_email=rules.confirmation_email, footer=footer,
        date=notification.created_at, attachments=attachments)
    envelope_from = envelope_address(rules.return_path or account.sender)
    recipients = list(dict.fromkeys(envelope_address(a) for a in
                                    notification.to_list + notification.cc_list + notification.bcc_list))
    return fields, envelope_from, recipients


def _describe(result: SendResult) -> str:
    """The attempt's reply for the log: the server's reply, or our explanation when the server said nothing."""
    if result.ok:
        text = f"{result.code} {result.reply or ''}".strip()
        if result.refused:
            refused = "; ".join(f"{rcpt}: {code} {reply_text(reply) or ''}"
                                for rcpt, (code, reply) in result.refused.items())
            text += f" (refused: {refused})"
        return text
    error = result.error
    explanation = error.message % error.params if error is not None else "unknown failure"
    if result.code is not None:
        return f"{result.code} {result.reply or ''}".strip() + f" — {explanation}"
    return explanation


def _fresh_connection(result: SendResult) -> bool:
    return any(line.startswith("*: connected to") for line in result.transcript)


def _message_handed_over(result: SendResult) -> bool:
    return any(line.startswith("C: <message") for line in result.transcript)


def _reconnectable(result: SendResult) -> bool:
    """A kept connection that the server closed (or answered 421) before the message went over: reconnect now."""
    error = result.error
    return (not result.ok and error is not None and error.transient and not _fresh_connection(result)
            and not _message_handed_over(result)
            and (error.step in (Step.CONNECTION_LOST, Step.TIMEOUT) or result.code == 421))


def _session_failed(result: SendResult) -> bool:
    """Whether the failure is the session's (the rest of the account's group would fail the same way)."""
    error = result.error
    if error.step in SESSION_STEPS:
        return True
    # smtplib writes "mail FROM:<...>": compare without case.
    mail_said = any(line[:7].upper() == "C: MAIL" for line in result.transcript)
    return error.step in (Step.CONNECTION_LOST, Step.TIMEOUT) and not mail_said


def _flag_authentication(account: SmtpAccount, reply: str, now: datetime) -> None:
    """SECURITY 16: a 535 during delivery shows on the account as a failed check (the accounts report's status)."""
    SmtpAccount.update(last_test_at=now, last_test_ok=False,
                       last_test_summary=f"Delivery failed: authentication refused ({reply})"[:1000]).where(
        SmtpAccount.id == account.id).execute()


# --- Running inside another process (smtpdesk serve) ---------------------------------------------------------------


class WorkerThread:
    """A Worker on a daemon thread: start() and stop(timeout) (graceful: in-flight messages finish)."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self.thread = threading.Thread(target=worker.run_forever, name="outbox-worker", daemon=True)

    def start(self) -> "WorkerThread":
        self.thread.start()
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Stop and wait; True when the thread ended within timeout."""
        self.worker.stop()
        self.thread.join(timeout)
        return not self.thread.is_alive()


__all__ = [
    "send_notification", "NotificationError", "NoDefaultAccount", "IdempotencyConflict", "OutboxSettings",
    "Worker", "WorkerThread", "claim", "retry_notification", "outbox_counts", "build_message", "connection",
    "ACTIVE", "WAITING", "FOOTER_SETTING", "LEASE_EXPIRED",
]
