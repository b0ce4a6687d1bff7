"""Retention: notifications in a final status (sent, failed) and audit entries older than the periods set under
Settings are deleted, a few hundred rows per transaction, by the worker at most once an hour (run_if_due) or by hand
(`smtpdesk outbox prune`), each writing an audit entry (the worker only when it deleted anything); SQLite then gives
the freed pages back to the file system (incremental vacuum), so the file stops growing once retention holds.
Queued, sending and retrying notifications are never deleted, however old. PostgreSQL reuses the space of deleted
rows through autovacuum."""
import dataclasses
import logging
import sqlite3
import time
from datetime import datetime, timedelta

from webapp import db, postgresql
from webapp.config import Defaults
from webapp.db import database
from webapp.models import AuditEntry, DeliveryAttempt, Notification, Setting, utcnow
from webapp.outbox.queue import retry_locked

log = logging.getLogger(__name__)

# Every status is either ACTIVE (never pruned) or FINAL: a new status must be put in one of them (a test checks).
FINAL = ("sent", "failed")
DELIVERY_DAYS = "retention_delivery_days"  # Setting keys; config gives the defaults until an admin saves a value
AUDIT_DAYS = "retention_audit_days"
NEXT_RUN = "retention_next_run"  # when any worker may prune next (ISO time, UTC): claimed in one transaction
MIN_DAYS, MAX_DAYS = 1, 3650
CLAIM_SECONDS = 600  # a pass claims the next run this far ahead, so that a worker that dies mid-pass does not stop it
VACUUM_STEP_PAGES = 256  # pages given back per incremental_vacuum transaction (1 MB of the default 4 KB pages)


@dataclasses.dataclass(frozen=True)
class Retention:
    """How long rows are kept and how the pruning proceeds; from_config() reads both (defaults: webapp.config)."""

    delivery_days: int        # notifications in a final status, from their last change (updated_at)
    audit_days: int           # audit entries, from when they were written
    batch_size: int           # rows deleted per transaction
    interval_seconds: float   # the worker prunes at most this often (all its threads and processes together)...
    pass_seconds: float       # ...for about this long a pass; a backlog goes on in the next passes (a hook interval)

    @classmethod
    def from_config(cls, config) -> "Retention":
        """The periods saved under Settings (config's RETENTION_*_DAYS until then) and config's RETENTION_* knobs;
        needs a database connection."""
        return cls(delivery_days=stored_days(DELIVERY_DAYS, int(config["RETENTION_DELIVERY_DAYS"])),
                   audit_days=stored_days(AUDIT_DAYS, int(config["RETENTION_AUDIT_DAYS"])),
                   batch_size=int(config["RETENTION_BATCH_SIZE"]),
                   interval_seconds=float(config["RETENTION_INTERVAL_SECONDS"]),
                   pass_seconds=float(config["RETENTION_PASS_SECONDS"]))


def valid_days(value) -> bool:
    """Whether value is a retention period the settings accept: a whole number of days from MIN_DAYS to MAX_DAYS."""
    return isinstance(value, int) and not isinstance(value, bool) and MIN_DAYS <= value <= MAX_DAYS


def stored_days(key: str, default: int) -> int:
    """The period saved under this Setting key, or default when none (or none valid) was saved."""
    text = Setting.get_value(key)
    days = int(text) if text.isascii() and text.isdigit() and len(text) <= 5 else None
    return days if valid_days(days) else default


@dataclasses.dataclass
class Pruned:
    """What a prune deleted (or, counting only, would delete), and the SQLite pages it gave back."""

    notifications: int = 0
    attempts: int = 0
    audit_entries: int = 0
    vacuumed_pages: int = 0
    finished: bool = True  # False: the pass ran out of time with rows (or free pages) left for the next one


def _old_notifications(cutoff: datetime, statuses=FINAL):
    # updated_at >= created_at, so created_at < cutoff adds nothing but lets the (status, created_at) index of m0005
    # find the candidates: no index of its own, which every claim and outcome would have to keep up to date.
    return (Notification.status.in_(statuses) & (Notification.created_at < cutoff)
            & (Notification.updated_at < cutoff))


def _write_lock():
    # SQLite: take the write lock at BEGIN, waiting for it as any writer does. PostgreSQL locks the deleted rows
    # only; its IMMEDIATE would take the advisory lock every claim takes.
    return None if postgresql.is_postgresql(database) else "IMMEDIATE"


def _prune_notifications(status: str, cutoff: datetime, batch_size: int) -> tuple[int, int]:
    """Delete one batch of old notifications in this final status, oldest first; their attempts go by the foreign
    key's cascade, their search keys and the counts by status by m0005's triggers. Returns (notifications, attempts)
    deleted."""

    def work():
        with database.atomic(_write_lock()):
            # One status at a time and in created_at order: a range of the (status, created_at) index on both engines,
            # where PostgreSQL would rather scan the table for "status IN (...)" and find old rows anywhere in it.
            ids = [row[0] for row in Notification.select(Notification.id)
                   .where(_old_notifications(cutoff, [status])).order_by(Notification.created_at)
                   .limit(batch_size).tuples()]
            if not ids:
                return 0, 0
            attempts = DeliveryAttempt.select().where(DeliveryAttempt.notification.in_(ids)).count()
            # The condition again: on PostgreSQL a notification retried meanwhile is queued now, and stays.
            deleted = Notification.delete().where(Notification.id.in_(ids) & _old_notifications(cutoff)).execute()
            return deleted, attempts

    return retry_locked(work)


def _prune_audit(cutoff: datetime, batch_size: int) -> int:
    """Delete one batch of audit entries written before cutoff; return how many."""

    def work():
        with database.atomic(_write_lock()):
            ids = [row[0] for row in AuditEntry.select(AuditEntry.id).where(AuditEntry.at < cutoff)
                   .order_by(AuditEntry.at).limit(batch_size).tuples()]
            return AuditEntry.delete().where(AuditEntry.id.in_(ids)).execute() if ids else 0

    return retry_locked(work)


def _pause(seconds: float) -> None:
    # Between two batches, as long as the last one held the write lock (at most 0.1 s): a writer waiting for it (a
    # claim, an outcome, a page) gets its turn instead of polling against one long run of batches.
    time.sleep(min(seconds, 0.1))


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline


def prune(delivery_days: int, audit_days: int, *, batch_size: int = Defaults.RETENTION_BATCH_SIZE,
          deadline: float | None = None, now: datetime | None = None) -> Pruned:
    """Delete notifications in a final status last changed more than delivery_days ago and audit entries older than
    audit_days, batch_size rows per transaction, then vacuum SQLite's freed pages. With a deadline (time.monotonic()),
    stop after the batch that passes it (each pass makes progress): Pruned.finished tells whether anything was left."""
    now = now or utcnow()
    pruned = Pruned()
    delivery_cutoff = now - timedelta(days=delivery_days)
    kinds = [(status, delivery_cutoff) for status in FINAL] + [(None, now - timedelta(days=audit_days))]  # None: audit
    for status, cutoff in kinds:
        while True:
            started = time.monotonic()
            if status is None:
                deleted = _prune_audit(cutoff, batch_size)
                pruned.audit_entries += deleted
            else:
                deleted, attempts = _prune_notifications(status, cutoff, batch_size)
                pruned.notifications += deleted
                pruned.attempts += attempts
            if deleted < batch_size:
                break
            if _past(deadline):
                pruned.finished = False
                return pruned
            _pause(time.monotonic() - started)
    pruned.vacuumed_pages, pruned.finished = vacuum(deadline)
    return pruned


def count(delivery_days: int, audit_days: int, now: datetime | None = None) -> Pruned:
    """What prune() would delete now, counted without deleting."""
    now = now or utcnow()
    old = Notification.select(Notification.id).where(_old_notifications(now - timedelta(days=delivery_days)))
    return Pruned(notifications=old.count(),
                  attempts=DeliveryAttempt.select().where(DeliveryAttempt.notification.in_(old)).count(),
                  audit_entries=AuditEntry.select().where(AuditEntry.at < now - timedelta(days=audit_days)).count())


# --- SQLite's file: freed pages back to the file system ------------------------------------------------------------


def _can_vacuum() -> bool:
    return not postgresql.is_postgresql(database) and database.execute_sql("PRAGMA auto_vacuum").fetchone()[0] == 2


def _free_pages() -> int:
    return database.execute_sql("PRAGMA freelist_count").fetchone()[0]


def vacuum(deadline: float | None = None) -> tuple[int, bool]:
    """Give SQLite's free pages back to the file system, VACUUM_STEP_PAGES per transaction (PostgreSQL: nothing to
    do). Returns (pages given back, whether none is left); stops early at the deadline or when the lock is busy."""
    if not _can_vacuum():
        return 0, True
    freed = 0
    while free := _free_pages():
        started = time.monotonic()
        try:
            # executescript() steps the pragma to its end; execute() gives back one page per call.
            database.connection().executescript(f"PRAGMA incremental_vacuum({min(free, VACUUM_STEP_PAGES):d})")
        except sqlite3.OperationalError as error:
            if not db.contention(error):
                raise
            return freed, False  # busy past the busy timeout: the next pass goes on
        left = _free_pages()
        freed += free - left
        if left and _past(deadline):
            return freed, False
        _pause(time.monotonic() - started)
    return freed, True


def needs_incremental_vacuum() -> bool:
    """Whether this is an SQLite file made before auto_vacuum = INCREMENTAL (webapp.db.PRAGMAS gives it to new ones),
    whose freed pages never go back to the file system."""
    return not postgresql.is_postgresql(database) and database.execute_sql("PRAGMA auto_vacuum").fetchone()[0] != 2


def enable_incremental_vacuum() -> None:
    """Switch the SQLite file to auto_vacuum = INCREMENTAL: a one-time VACUUM, which rewrites the whole file (as long
    as a copy takes, needing as much free disk) and holds the write lock meanwhile."""
    database.execute_sql("PRAGMA auto_vacuum = INCREMENTAL")
    database.execute_sql("VACUUM")


def audit(pruned: Pruned, delivery_days: int, audit_days: int, remote_addr: str = "") -> None:
    """The audit entry of a prune, inside the caller's transaction: by hand (remote_addr "cli", shown as the command
    line), or by the worker (no user, no address: shown as the system; only a pass that deleted something)."""
    AuditEntry.record("prune", actor=None, object_type="retention", remote_addr=remote_addr, changes={
        "notifications": pruned.notifications, "delivery_days": delivery_days,
        "audit_entries": pruned.audit_entries, "audit_days": audit_days})


# --- The worker's hourly pass ---------------------------------------------------------------------------------------


def _claim(now: datetime) -> bool:
    """Whether this process may prune now: the next run is due, and is moved CLAIM_SECONDS ahead in the same
    transaction, so that every other worker finds it taken."""

    def work():
        with database.atomic("IMMEDIATE"):
            try:
                due = datetime.fromisoformat(Setting.get_value(NEXT_RUN))
            except ValueError:
                due = None  # never run (or a value that is no time): due
            if due is not None and due > now:
                return False
            Setting.set_value(NEXT_RUN, (now + timedelta(seconds=CLAIM_SECONDS)).isoformat())
            return True

    return retry_locked(work)


def run_if_due(config, now: datetime | None = None) -> Pruned | None:
    """The worker's periodic hook: prune when the interval has passed since the last run (whichever worker or
    process made it), for at most about pass_seconds; a backlog left over is due again at once, for the next pass of
    any worker. Returns what was pruned, or None when it was not due."""
    now = now or utcnow()
    if not _claim(now):
        return None
    settings = Retention.from_config(config)
    pruned = prune(settings.delivery_days, settings.audit_days, batch_size=settings.batch_size,
                   deadline=time.monotonic() + settings.pass_seconds, now=now)
    next_run = now + timedelta(seconds=settings.interval_seconds) if pruned.finished else utcnow()

    def work():
        with database.atomic(_write_lock()):
            Setting.set_value(NEXT_RUN, next_run.isoformat())
            if pruned.notifications or pruned.audit_entries:  # a pass that deleted nothing leaves no entry
                audit(pruned, settings.delivery_days, settings.audit_days)

    retry_locked(work)
    if pruned.notifications or pruned.audit_entries or pruned.vacuumed_pages:
        log.info("retention: deleted %d notifications (%d delivery attempts) and %d audit entries, gave back %d "
                 "free pages%s", pruned.notifications, pruned.attempts, pruned.audit_entries, pruned.vacuumed_pages,
                 "" if pruned.finished else "; more in the next pass")
    return pruned
