"""The queue in the database: claims under a lease, per-account limits, releases and renewals, recorded outcomes.

- A worker claims due notifications: it sets status "sending", its name as `lease_owner` and `lease_until`. Only the
  lease owner records a notification's attempts, renews or releases its lease. A worker that dies leaves its claims in
  "sending"; once their lease has expired the next claim takes them back (recording the lost attempt, once).
- Several workers, on one host or many, claim at once (db.row_locking()). SQLite has one writer: every such
  transaction takes its write lock at once (BEGIN IMMEDIATE). PostgreSQL locks rows, not the database: a claim tries
  each candidate account's advisory lock (ACCOUNT_CLAIMS, one per account id) and passes over an account another
  worker is claiming right now (it claims again CONTENDED_SECONDS later); it takes the rows with FOR UPDATE SKIP LOCKED,
  checking that they are still waiting, and takes back expired leases the same way, so that two workers never both
  record the lost attempt. Records, renewals and releases touch only rows leased to their worker (lease_owner in
  WHERE, read FOR UPDATE), so no claim takes them back meanwhile. Every one of these transactions locks the
  notifications' rows first, then the notification_tally rows the m0005 triggers change, in one order
  (db.lock_tally): two workers wait for each other there, briefly, but never deadlock. Contention (SQLite's lock
  after its busy timeout, a PostgreSQL deadlock with another writer) is retried.
- Per account (its form's "Sending limits", smtp_account.max_connections and .rate_per_minute; when empty,
  OUTBOX_MAX_CONNECTIONS and OUTBOX_RATE_PER_MINUTE): at most that many workers are connected to the account at once
  (holding its leases, or keeping their connection open for the next batch: webapp.outbox.sessions), and at most that
  many attempts are started in any 60 seconds. The limits are read, and both counted, at claim time under the
  account's lock (SQLite: the write lock), in one statement, so they hold across threads, processes and hosts, and a
  limit changed on the form holds from the next claim on.
  While an account fails over (webapp.outbox.failover), its notifications are claimed for its backup (sent_via):
  under the backup's lock, for the backup's lane, within the backup's limits.
- 4yz replies, timeouts and lost connections are transient: retried with exponential backoff and jitter, until
  OUTBOX_MAX_ATTEMPTS attempts or OUTBOX_MAX_AGE_SECONDS of age; 5yz replies fail at once. So do an OAuth 2.0 token
  endpoint's refusals (its timeouts, 5xx and temporarily_unavailable are transient). A 535, or a token endpoint
  refusing the credential itself (invalid_client, invalid_grant, unauthorized_client, invalid_scope), also marks the
  account: last_test_ok = False with a summary saying that delivery found an authentication problem (the accounts
  report shows it as a failed check).
"""
import json
import logging
import random
import time
from contextlib import contextmanager
from datetime import datetime, timedelta

from peewee import Case, OperationalError

from webapp import db, metrics
from webapp.db import database
from webapp.mail.errors import N_
from webapp.models import DeliveryAttempt, Notification, utcnow
from webapp.outbox.settings import LEASE_EXPIRED, LOCK_RETRY_SECONDS, WAITING, OutboxSettings

log = logging.getLogger(__name__)

ACCOUNT_CLAIMS = 0x6F757462  # "outb": PostgreSQL's advisory lock space of the claims, one lock per account id


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
    deadlock), say so in the log, wait a little and try again."""
    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    while True:
        try:
            return work()
        except OperationalError as error:
            if not db.contention(error) or time.monotonic() > deadline or database.in_transaction():
                raise
            # The database's own first line ("database is locked", "deadlock detected"): no values, no names.
            first_line = next(iter(str(error).splitlines()), type(error).__name__)
            log.warning("outbox transaction ran into another (%s): running it again", first_line)
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
          accounts: int | None = None, contended: set | None = None) -> list[Notification]:
    """Lease up to batch_size due notifications to `owner`, atomically, respecting each account's connection and
    rate limits (see the module's notes on locks); expired leases of dead workers come back first. Returns them in
    sending order.

    busy: ids of accounts the owner is delivering already (none of theirs is taken); accounts: take the
    notifications of at most this many accounts (the owner's free delivery threads); contended: a set that gets the
    ids of the accounts passed over because another worker was claiming them (PostgreSQL; what it leaves may be due
    at once)."""
    contended = set() if contended is None else contended

    def work() -> list[int]:
        current = now or utcnow()
        with db.row_locking():
            _reclaim_expired(current, settings)
            # The relay carrying each account's notifications: a backup's while the account fails over.
            relays = dict(db.execute(FAILING_OVER, (current, True, True)).fetchall())
            via: dict[int, int] = {}
            ids = _due_ids(owner, current, settings, busy, accounts or settings.batch_size, contended, relays, via)
            if ids:
                # Still waiting, and no one else's: the candidates were read before the accounts were locked. The
                # status is compared as ("status" || ''), which no index covers, so that SQLite looks the ids up by
                # primary key: given "status" it walked the status index over every waiting notification instead
                # (10 ms behind a backlog of 100,000, bench/claim_backlog.py).
                ids = [row[0] for row in db.execute(db.for_update(
                    f'SELECT "id" FROM "notification" WHERE "id" IN ({", ".join("?" * len(ids))}) '
                    f'AND ("status" || \'\') IN ({", ".join("?" * len(WAITING))})', skip_locked=True),
                    (*ids, *WAITING))]
            if ids:
                db.lock_tally((*WAITING, "sending"))
                Notification.update(status="sending", lease_owner=owner,
                                    lease_until=current + timedelta(seconds=settings.lease_seconds),
                                    updated_at=current, sent_via=None).where(Notification.id.in_(ids)).execute()
                for backup in set(via.values()):
                    Notification.update(sent_via=backup).where(Notification.id.in_(
                        [i for i in ids if via.get(i) == backup])).execute()
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
    # Locked as read, passing over those another worker is taking back right now: one lost attempt each.
    expired = list(db.locked(Notification.select().where(Notification.status == "sending",
                                                         Notification.lease_until < now), skip_locked=True))
    if expired:
        db.lock_tally((*WAITING, "sending", "failed"))  # all that the claim changes next, in their one order
    gave_up = []  # the accounts of those failed now
    for notification in expired:
        facts = {"ok": False, "step": LEASE_EXPIRED, "code": None, "reply": None, "params": {}, "message": N_(
            "The worker sending it stopped before recording the result; the message may have been sent.")}
        reply = json.dumps(facts)
        DeliveryAttempt.create(notification=notification, started_at=notification.updated_at or now,
                               duration_ms=0, ok=False, code=None, reply=reply, step=LEASE_EXPIRED, transient=True,
                               worker=notification.lease_owner or "",
                               relay_account=notification.sent_via_id or notification.account_id)
        attempts = notification.attempts + 1
        values = dict(attempts=attempts, lease_owner=None, lease_until=None, updated_at=now, last_code=None,
                      last_reply=reply, last_step=LEASE_EXPIRED)
        give_up = give_up_reason(notification, attempts, now, settings)
        if give_up:
            values.update(status="failed", last_reply=json.dumps({**facts, "gave_up": give_up}))
            gave_up.append(notification.account_id)
        else:
            values.update(status="retrying", next_attempt_at=now)
        Notification.update(**values).where(Notification.id == notification.id).execute()
        log.warning("notification %s: lease of %s expired; %s", notification.id, notification.lease_owner,
                    "failed" if give_up else "queued again")
    metrics.count_gave_up(gave_up)  # in this transaction, after the tally's rows (the order record() takes them in)


# The oldest due notifications, each waiting status walked in order on its (status, next_attempt_at) index and
# stopping at the limit: the cost of a claim does not grow with the length of the queue.
_OLDEST_DUE = (
    'SELECT "n"."id", "n"."account_id" FROM ('
    + " UNION ALL ".join(
        'SELECT * FROM (SELECT "id", "account_id", "next_attempt_at" FROM "notification" '
        f'WHERE "status" = \'{status}\' AND "next_attempt_at" <= ? ORDER BY "next_attempt_at", "id" LIMIT ?) '
        f'AS "{status}"' for status in WAITING)
    + ') AS "n" ORDER BY "n"."next_attempt_at", "n"."id" LIMIT ?')


def _due_ids(owner: str, now: datetime, settings: OutboxSettings, busy, accounts: int, contended: set,
             relays: dict, via: dict) -> list[int]:
    """Up to batch_size due notifications, oldest first, of at most `accounts` relays, none busy nor being
    claimed by another worker, whose limits allow them. A relay is an account, or the backup carrying the
    notifications of an account failing over (relays: {account id: backup id}; via gets {notification id: backup
    id} for those): its lock, lane and limits are the backup's."""
    looked_at = settings.batch_size * 2
    rows = db.execute(_OLDEST_DUE, (now, looked_at) * len(WAITING) + (looked_at,)).fetchall()
    ids: list[int] = []
    allowance: dict[int, int] = {}
    passed = set(busy)
    for notification_id, account_id in rows:
        relay = relays.get(account_id, account_id)
        if relay in passed or (relay not in allowance and len(allowance) == accounts):
            continue
        if relay not in allowance:
            if not _lock_account(relay):
                passed.add(relay)  # another worker is claiming its notifications: its turn, not ours
                contended.add(relay)
                continue
            allowance[relay] = _allowance(relay, owner, now, settings)
        if allowance[relay] <= 0:
            # The oldest belong to a relay at its limits: look past it, account by account (the slow way).
            return _due_ids_by_account(owner, now, settings, passed, accounts, contended, relays, via)
        allowance[relay] -= 1
        ids.append(notification_id)
        if relay != account_id:
            via[notification_id] = relay
        if len(ids) == settings.batch_size:
            return ids
    if len(rows) == looked_at:
        # Every row looked at was passed over or taken, and the batch is not full: later ones may be another's.
        return _due_ids_by_account(owner, now, settings, passed, accounts, contended, relays, via)
    return ids


# The accounts with due notifications, oldest first: one seek in m0014's index per account and waiting status, however
# long the queue (the smtp_account table is small).
_ACCOUNTS_BY_OLDEST_DUE = (
    'SELECT "account_id" FROM ('
    + " UNION ALL ".join(
        'SELECT "a"."id" AS "account_id", (SELECT "n"."next_attempt_at" FROM "notification" AS "n" '
        f'WHERE "n"."account_id" = "a"."id" AND "n"."status" = \'{status}\' AND "n"."next_attempt_at" <= ? '
        'ORDER BY "n"."next_attempt_at" LIMIT 1) AS "first" FROM "smtp_account" AS "a"' for status in WAITING)
    + ') AS "due" WHERE "first" IS NOT NULL GROUP BY "account_id" ORDER BY MIN("first"), "account_id"')
# An account's oldest due notifications, as _OLDEST_DUE walks the queue, on m0014's index.
_ACCOUNT_OLDEST_DUE = (
    'SELECT "n"."id" FROM ('
    + " UNION ALL ".join(
        'SELECT * FROM (SELECT "id", "next_attempt_at" FROM "notification" WHERE "account_id" = ? '
        f'AND "status" = \'{status}\' AND "next_attempt_at" <= ? ORDER BY "next_attempt_at", "id" LIMIT ?) '
        f'AS "{status}"' for status in WAITING)
    + ') AS "n" ORDER BY "n"."next_attempt_at", "n"."id" LIMIT ?')


def _due_ids_by_account(owner: str, now: datetime, settings: OutboxSettings, busy, accounts: int,
                        contended: set, relays: dict, via: dict) -> list[int]:
    """Accounts by their oldest due notification, each taking what its relay's limits allow (relays and via as for
    _due_ids)."""
    via.clear()
    allowance: dict[int, int] = {}
    lanes: set[int] = set()
    ids: list[int] = []
    for (account_id,) in db.execute(_ACCOUNTS_BY_OLDEST_DUE, (now,) * len(WAITING)).fetchall():
        room = settings.batch_size - len(ids)
        relay = relays.get(account_id, account_id)
        if room <= 0 or (len(lanes) == accounts and relay not in lanes):
            break
        if relay in busy:
            continue
        if relay not in allowance:
            if not _lock_account(relay):
                contended.add(relay)
                busy = {*busy, relay}
                continue
            allowance[relay] = _allowance(relay, owner, now, settings)
        if allowance[relay] <= 0:
            continue
        limit = min(room, allowance[relay])
        taken = [row[0] for row in db.execute(_ACCOUNT_OLDEST_DUE, (account_id, now, limit) * len(WAITING) + (limit,))]
        allowance[relay] -= len(taken)
        ids.extend(taken)
        lanes.add(relay)
        via.update((i, relay) for i in taken if relay != account_id)
    return ids


def _lock_account(account_id: int) -> bool:
    """Take the account's claim lock for this transaction, unless another worker's claim holds it (PostgreSQL: an
    advisory lock per account; SQLite's write lock admits one claim at a time anyway)."""
    return db.try_lock(ACCOUNT_CLAIMS, account_id % 2**31)


# Under the account's claim lock, in one statement (one snapshot: a record moving a message from in flight to
# started between two counts would hide it from both): the account's limits (its own, else the defaults), the other
# workers connected to it (holding its leases, or keeping a connection open: webapp.outbox.sessions), its messages in
# flight, and, when it has a rate, the attempts started in the last 60 seconds (the lost ones of dead workers are not
# attempts started), one range of m0015's index. An account's are those its relay carries: its own (sent_via_id NULL)
# and those of accounts failing over to it (webapp.outbox.failover).
_RELAYED = '(("account_id" = ? AND "sent_via_id" IS NULL) OR "sent_via_id" = ?)'
_USAGE = ('SELECT COALESCE("a"."max_connections", ?), COALESCE("a"."rate_per_minute", ?), '
          f'(SELECT COUNT(*) FROM (SELECT "lease_owner" FROM "notification" WHERE {_RELAYED} '
          'AND "status" = \'sending\' AND "lease_until" >= ? AND "lease_owner" <> ? UNION '
          'SELECT "worker" FROM "outbox_connection" WHERE "account_id" = ? AND "until" >= ? AND "worker" <> ?) '
          'AS "holders"), '
          f'(SELECT COUNT(*) FROM "notification" WHERE {_RELAYED} AND "status" = \'sending\'), '
          'CASE WHEN COALESCE("a"."rate_per_minute", ?) > 0 THEN (SELECT COUNT(*) FROM "delivery_attempt" '
          'WHERE "relay_account_id" = ? AND "started_at" >= ? '
          f'AND ("step" IS NULL OR "step" <> \'{LEASE_EXPIRED}\')) ELSE 0 END '
          'FROM "smtp_account" AS "a" WHERE "a"."id" = ?')


def _allowance(account_id: int, owner: str, now: datetime, settings: OutboxSettings) -> int:
    """How many notifications this relay (an account: its own, and those it carries as a backup) the owner may
    claim now (connection and rate limits); call under the account's claim lock, so that the limits hold across
    workers."""
    minute_ago = now - timedelta(seconds=60)
    row = db.execute(_USAGE, (settings.max_connections, settings.rate_per_minute,
                              account_id, account_id, now, owner, account_id, now, owner, account_id, account_id,
                              settings.rate_per_minute, account_id, minute_ago, account_id)).fetchone()
    if row is None:  # deleted meanwhile: its notifications went with it
        return 0
    max_connections, per_minute, holding, in_flight, started = row
    if holding >= max_connections:
        return 0
    return per_minute - started - in_flight if per_minute > 0 else settings.batch_size


# The accounts failing over now, with the backup carrying their notifications (a few rows at most). A disabled
# account's notifications go nowhere, not even through its backup.
FAILING_OVER = ('SELECT "a"."id", "b"."id" FROM "smtp_account" AS "a" JOIN "smtp_account" AS "b" '
                'ON "b"."id" = "a"."backup_account_id" WHERE "a"."failover_until" > ? AND "a"."enabled" = ? '
                'AND "b"."enabled" = ?')


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
        with db.row_locking():  # only the owner's rows: their row locks suffice, then the tally's (db.lock_tally)
            mine = db.locked(Notification.select(Notification.id).where(
                Notification.id.in_(ids), Notification.lease_owner == owner, Notification.status == "sending"))
            held = [n.id for n in mine]
            if held:
                db.lock_tally(("sending", *WAITING))
                Notification.update(**values).where(Notification.id.in_(held)).execute()

    retry_locked(work)
    log.info("outbox worker %s put %d notifications back in the queue", owner, len(ids))


def renew(owner: str, notifications: list[Notification], lease_seconds: float) -> tuple[set[int], datetime]:
    """Extend the lease of the notifications still the owner's; (their ids, the new lease end)."""
    renewed_until = utcnow() + timedelta(seconds=lease_seconds)
    ids = [n.id for n in notifications]

    def work():
        with db.row_locking():
            # Still ours unless a claim took it back after it expired (that clears or changes the owner); locked as
            # read, before the update takes the tally's row (db.lock_tally).
            held = {n.id for n in db.locked(Notification.select(Notification.id).where(
                Notification.id.in_(ids), Notification.lease_owner == owner, Notification.status == "sending"))}
            if held:
                Notification.update(lease_until=renewed_until).where(Notification.id.in_(held)).execute()
            return held

    held = retry_locked(work)
    lost = [i for i in ids if i not in held]
    if lost:
        log.warning("outbox worker %s lost the lease of %s; another worker has them", owner, lost)
    return held, renewed_until


def let_go(owner: str, account_ids: list[int]) -> None:
    """The owner closed its connections to these accounts: they no longer count against their limits. (Rows of
    workers that died lapse at their "until"; they go too.)"""
    now = utcnow()

    def work():
        with db.row_locking():
            db.execute(f'DELETE FROM "outbox_connection" WHERE ("worker" = ? AND "account_id" IN '
                       f'({", ".join("?" * len(account_ids))})) OR "until" < ?', (owner, *account_ids, now))

    with connection():
        retry_locked(work)
