"""The queue in the database: claims under a lease, per-account limits, releases and renewals, recorded outcomes.

- A worker claims due notifications in a `BEGIN IMMEDIATE` transaction: it sets status "sending", its name as
  `lease_owner` and `lease_until`. Only the lease owner records a notification's attempts. A worker that dies leaves its
  claims in "sending"; once their lease has expired the next claim takes them back (recording the lost attempt).
- Per account (OUTBOX_MAX_CONNECTIONS, OUTBOX_RATE_PER_MINUTE, OUTBOX_ACCOUNT_LIMITS by account name): at most that many
  workers hold notifications of the account at once (each uses one connection for it), and at most that many
  attempts are started in any 60 seconds. Both are checked at claim time, inside the claim's transaction, so they
  hold across threads and processes.
- 4yz replies, timeouts and lost connections are transient: retried with exponential backoff and jitter, until
  OUTBOX_MAX_ATTEMPTS attempts or OUTBOX_MAX_AGE_SECONDS of age; 5yz replies fail at once. So do an OAuth 2.0 token
  endpoint's refusals (its timeouts, 5xx and temporarily_unavailable are transient). A 535, or a token endpoint
  refusing the credential itself (invalid_client, invalid_grant, unauthorized_client, invalid_scope), also marks the
  account: last_test_ok = False with a summary saying that delivery found an authentication problem (the accounts
  report shows it as a failed check).
"""
import dataclasses
import json
import logging
import random
import time
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timedelta

from peewee import Case, OperationalError, fn

from webapp import db, metrics
from webapp.db import database
from webapp.mail.errors import N_, Step
from webapp.mail.oauth_errors import credential_refused
from webapp.mail.transport import SendResult
from webapp.models import DeliveryAttempt, Notification, SmtpAccount, utcnow
from webapp.outbox.message import reply_facts, reply_words
from webapp.outbox.settings import LEASE_EXPIRED, LOCK_RETRY_SECONDS, WAITING, OutboxSettings

log = logging.getLogger(__name__)


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


def retry_locked(work):
    """Run work() (one transaction); when it fails on contention (SQLite locked past its busy timeout, a PostgreSQL
    deadlock), wait a little and try again."""
    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    while True:
        try:
            return work()
        except OperationalError as error:
            if not db.contention(error) or time.monotonic() > deadline or database.in_transaction():
                raise
            time.sleep(random.uniform(0.01, 0.1))


def retry_notification(notification_id: int) -> bool:
    """Queue a failed notification again (same Message-ID, attempts kept); False if it is not failed."""
    with connection():
        return bool(retry_locked(lambda: Notification.update(
            status="queued", next_attempt_at=utcnow(), updated_at=utcnow(), lease_owner=None, lease_until=None,
        ).where(Notification.id == notification_id, Notification.status == "failed").execute()))


def outbox_counts() -> dict:
    """{status: count} for every status (zeros included)."""
    counts = dict.fromkeys(Notification.STATUSES, 0)
    with connection():
        # Kept by triggers (migration m0005): counting a large outbox by status would read every row.
        for status, total in db.execute('SELECT "status", "total" FROM "notification_tally"'):
            counts[status] = total
    return counts


# --- Claims ----------------------------------------------------------------------------------------------------


def claim(owner: str, settings: OutboxSettings, now: datetime | None = None, *, busy=frozenset(),
          accounts: int | None = None) -> list[Notification]:
    """Lease up to batch_size due notifications to `owner`, atomically (BEGIN IMMEDIATE), respecting each account's
    connection and rate limits; expired leases of dead workers come back first. Returns them in sending order.

    busy: ids of accounts the owner is delivering already (none of theirs is taken); accounts: take the
    notifications of at most this many accounts (the owner's free delivery threads)."""

    def work() -> list[int]:
        current = now or utcnow()
        with database.atomic("IMMEDIATE"):
            _reclaim_expired(current, settings)
            ids = _due_ids(owner, current, settings, busy, accounts or settings.batch_size)
            if ids:
                Notification.update(status="sending", lease_owner=owner,
                                    lease_until=current + timedelta(seconds=settings.lease_seconds),
                                    updated_at=current).where(Notification.id.in_(ids)).execute()
            return ids

    ids = retry_locked(work)
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
        facts = {"ok": False, "step": LEASE_EXPIRED, "code": None, "reply": None, "params": {}, "message": N_(
            "The worker sending it stopped before recording the result; the message may have been sent.")}
        reply = json.dumps(facts)
        DeliveryAttempt.create(notification=notification, started_at=notification.updated_at or now,
                               duration_ms=0, ok=False, code=None, reply=reply, step=LEASE_EXPIRED, transient=True,
                               worker=notification.lease_owner or "")
        attempts = notification.attempts + 1
        values = dict(attempts=attempts, lease_owner=None, lease_until=None, updated_at=now, last_code=None,
                      last_reply=reply, last_step=LEASE_EXPIRED)
        give_up = give_up_reason(notification, attempts, now, settings)
        if give_up:
            values.update(status="failed", last_reply=json.dumps({**facts, "gave_up": give_up}))
        else:
            values.update(status="retrying", next_attempt_at=now)
        Notification.update(**values).where(Notification.id == notification.id).execute()
        log.warning("notification %s: lease of %s expired; %s", notification.id, notification.lease_owner,
                    "failed" if give_up else "queued again")


# The oldest due notifications, each waiting status walked in order on its (status, next_attempt_at) index and
# stopping at the limit: the cost of a claim does not grow with the length of the queue.
_OLDEST_DUE = (
    'SELECT "n"."id", "n"."account_id", "a"."name" FROM ('
    + " UNION ALL ".join(
        'SELECT * FROM (SELECT "id", "account_id", "next_attempt_at" FROM "notification" '
        f'WHERE "status" = \'{status}\' AND "next_attempt_at" <= ? ORDER BY "next_attempt_at", "id" LIMIT ?) '
        f'AS "{status}"' for status in WAITING)
    + ') AS "n" JOIN "smtp_account" AS "a" ON "a"."id" = "n"."account_id" '
    'ORDER BY "n"."next_attempt_at", "n"."id" LIMIT ?')


def _due_ids(owner: str, now: datetime, settings: OutboxSettings, busy, accounts: int) -> list[int]:
    """Up to batch_size due notifications, oldest first, of at most `accounts` accounts, none busy, whose limits
    allow them."""
    looked_at = settings.batch_size * 2
    rows = db.execute(_OLDEST_DUE, (now, looked_at) * len(WAITING) + (looked_at,)).fetchall()
    ids: list[int] = []
    allowance: dict[int, int] = {}
    for notification_id, account_id, name in rows:
        if account_id in busy or (account_id not in allowance and len(allowance) == accounts):
            continue
        if account_id not in allowance:
            allowance[account_id] = _allowance(account_id, name, owner, now, settings)
        if allowance[account_id] <= 0:
            # The oldest belong to an account at its limits: look past it, account by account (the slow way).
            return _due_ids_by_account(owner, now, settings, busy, accounts)
        allowance[account_id] -= 1
        ids.append(notification_id)
        if len(ids) == settings.batch_size:
            return ids
    if len(rows) == looked_at:
        # Every row looked at was passed over or taken, and the batch is not full: later ones may be another's.
        return _due_ids_by_account(owner, now, settings, busy, accounts)
    return ids


def _due_ids_by_account(owner: str, now: datetime, settings: OutboxSettings, busy, accounts: int) -> list[int]:
    """Accounts by their oldest due notification, each taking what its limits allow (a scan of the queue)."""
    due = (Notification.status.in_(WAITING)) & (Notification.next_attempt_at <= now)
    oldest_first = (Notification.select(Notification.account, SmtpAccount.name,
                                        fn.MIN(Notification.next_attempt_at).alias("first"))
                    .join(SmtpAccount).where(due).group_by(Notification.account, SmtpAccount.name)
                    .order_by(fn.MIN(Notification.next_attempt_at)))
    ids: list[int] = []
    for row in oldest_first.objects():
        room = settings.batch_size - len(ids)
        if room <= 0 or accounts == 0:
            break
        allowed = 0 if row.account_id in busy else _allowance(row.account_id, row.name, owner, now, settings)
        if allowed <= 0:
            continue
        query = (Notification.select(Notification.id)
                 .where(due & (Notification.account == row.account_id))
                 .order_by(Notification.next_attempt_at, Notification.id).limit(min(room, allowed)))
        ids.extend(n.id for n in query)
        accounts -= 1
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


def give_up_reason(notification: Notification, attempts: int, now: datetime, settings: OutboxSettings) -> dict | None:
    """Why a transient failure is now final, as facts for the delivery log (None while retries remain)."""
    if attempts >= settings.max_attempts:
        # A limit, not a count of attempts: no plural to get wrong at OUTBOX_MAX_ATTEMPTS=1.
        return {"message": N_("Gave up: the attempt limit (%(attempts)d) was reached."),
                "params": {"attempts": attempts}}
    if (now - notification.created_at).total_seconds() >= settings.max_age_seconds:
        return {"message": N_("Gave up: not delivered within %(seconds)g seconds."),
                "params": {"seconds": settings.max_age_seconds}}
    return None


# --- Leases ----------------------------------------------------------------------------------------------------


def release(owner: str, notifications: list[Notification], due: datetime | None = None) -> None:
    """Give claimed, unsent notifications back to the queue (graceful stop; due: not before then)."""
    ids = [n.id for n in notifications]
    if not ids:
        return
    values = dict(status=Case(None, [(Notification.attempts > 0, "retrying")], "queued"), lease_owner=None,
                  lease_until=None, updated_at=utcnow())
    if due is not None:
        values["next_attempt_at"] = due

    def work():
        with database.atomic("IMMEDIATE"):
            Notification.update(**values).where(Notification.id.in_(ids), Notification.lease_owner == owner,
                    Notification.status == "sending").execute()

    retry_locked(work)
    log.info("outbox worker %s put %d notifications back in the queue", owner, len(ids))


def renew(owner: str, notifications: list[Notification], lease_seconds: float) -> tuple[set[int], datetime]:
    """Extend the lease of the notifications still the owner's; (their ids, the new lease end)."""
    renewed_until = utcnow() + timedelta(seconds=lease_seconds)
    ids = [n.id for n in notifications]

    def work():
        with database.atomic("IMMEDIATE"):
            # Still ours unless a claim took it back after it expired (that clears or changes the owner).
            mine = (Notification.id.in_(ids) & (Notification.lease_owner == owner)
                    & (Notification.status == "sending"))
            Notification.update(lease_until=renewed_until).where(mine).execute()
            return {n.id for n in Notification.select(Notification.id).where(mine)}

    held = retry_locked(work)
    lost = [i for i in ids if i not in held]
    if lost:
        log.warning("outbox worker %s lost the lease of %s; another worker has them", owner, lost)
    return held, renewed_until


# --- Outcomes --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
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


def record(owner: str, outcomes: list[Outcome], settings: OutboxSettings) -> None:
    """Record attempts and the notifications' new states, all in one transaction: a row in delivery_attempt each,
    and the notification updated under the owner's lease (plain SQL with executemany: a statement built by the ORM
    for each message cost about as much as sending it)."""
    now = utcnow()
    rows, earlier = [], Counter()
    for outcome in outcomes:
        # A reconnected message has two outcomes here (the lost try, then the real one): both count.
        rows.append((outcome, _new_values(outcome, now, earlier[outcome.notification.id], settings)))
        earlier[outcome.notification.id] += 1

    def work():
        # IMMEDIATE: the write lock first (waiting for it), since a read that later wants to write can only fail.
        with database.atomic("IMMEDIATE"):
            ids = [outcome.notification.id for outcome, _ in rows]
            held = {row[0] for row in db.execute(
                f'SELECT "id" FROM "notification" WHERE "id" IN ({", ".join("?" * len(ids))}) '
                f'AND "lease_owner" = ?', (*ids, owner))}
            db.execute_many(_INSERT_ATTEMPT, [
                (o.notification.id, o.started, int(o.result.elapsed * 1000), o.result.ok, o.result.code,
                 values["last_reply_attempt"], values["last_step"], o.transient, owner)
                for o, values in rows])
            db.execute_many(_UPDATE_LEASED, [
                (values["attempts"], values["last_code"], values["last_reply"], values["last_step"], now,
                 values.get("headers_sent"), values.get("status"), values.get("sent_at"),
                 values.get("next_attempt_at"), o.final, o.final, o.notification.id, owner)
                for o, values in rows if o.notification.id in held])
            metrics.count_outcomes(rows, held)  # GET /metrics's counters, in this transaction: counted once
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
                if not o.result.ok and error is not None and (
                        (error.step is Step.AUTH and o.result.code == 535) or credential_refused(error)):
                    _flag_authentication(o.account, o.result, now)

    retry_locked(work)
    for outcome, values in rows:  # after the commit: work() may run again after contention
        outcome.notification.attempts += 1
        name, number = outcome.account.name, outcome.notification.id
        if outcome.result.ok:
            log.info("notification %s sent via %s (%s)", number, name, outcome.result.code)
        else:
            log.warning("notification %s via %s: %s (%s)", number, name, reply_words(values["last_reply"]),
                        values.get("status", "sending"))


def _new_values(outcome: Outcome, now: datetime, earlier: int, settings: OutboxSettings) -> dict:
    """The notification's columns after this attempt (status only when final); earlier: its attempts recorded
    before this one in the same transaction."""
    result, notification = outcome.result, outcome.notification
    facts = reply_facts(result)
    reply = json.dumps(facts)
    attempts = notification.attempts + earlier + 1
    values = dict(attempts=attempts, last_code=result.code, last_reply=reply, last_reply_attempt=reply,
                  last_step=None if result.ok else (result.error.step.value if result.error else None))
    if outcome.headers is not None:
        values["headers_sent"] = outcome.headers
    if outcome.final:
        give_up = None if result.ok or not outcome.transient else give_up_reason(notification, attempts, now, settings)
        if result.ok:
            values.update(status="sent", sent_at=now)
        elif outcome.transient and not give_up:
            values.update(status="retrying", next_attempt_at=now + timedelta(seconds=settings.backoff(attempts)))
        else:
            values.update(status="failed", last_reply=json.dumps({**facts, "gave_up": give_up}) if give_up else reply)
    return values


def _flag_authentication(account: SmtpAccount, result: SendResult, now: datetime) -> None:
    """A 535, or a token endpoint refusing the credential, during delivery shows on the account as a failed check
    (the accounts report's status); its summary is facts, put in words in the reader's language by the report."""
    facts = {**result.facts(), "delivery": True, "reply": (result.reply or "")[:500]}
    SmtpAccount.update(last_test_at=now, last_test_ok=False, last_test_summary=json.dumps(facts)).where(
        SmtpAccount.id == account.id).execute()
