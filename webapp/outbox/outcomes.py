"""Recorded outcomes: each attempt in delivery_attempt and the notification's new state, under its worker's lease,
all of a batch in one transaction (see webapp.outbox.queue for the locks)."""
import dataclasses
import json
import logging
from collections import Counter
from datetime import datetime, timedelta

from webapp import db, metrics
from webapp.mail.errors import Step
from webapp.mail.oauth_errors import credential_refused
from webapp.mail.transport import SendResult
from webapp.models import Notification, SmtpAccount, utcnow
from webapp.outbox.message import reply_facts, reply_words
from webapp.outbox.queue import give_up_reason, retry_locked
from webapp.outbox.settings import OutboxSettings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Outcome:
    """One attempt, sent or refused, waiting to be recorded with the others of its group."""

    notification: Notification
    account: SmtpAccount
    result: SendResult
    started: datetime
    headers: str | None
    final: bool
    # Failover (webapp.outbox.failover): the backup whose relay carried it (account is the notification's own), and
    # why, for the delivery log; retry: a failure retried whatever its code; due_in: retried within this many seconds
    # at most, sooner than the backoff would (0: at once, its account fails over now).
    via: SmtpAccount | None = None
    failover: dict | None = None
    retry: bool = False
    due_in: float | None = None

    @property
    def transient(self) -> bool:
        return self.retry or bool(self.result.error is not None and self.result.error.transient)

    @property
    def relay(self) -> SmtpAccount:
        """The account whose relay took the attempt: the backup that carried it, else the notification's own."""
        return self.via or self.account


_INSERT_ATTEMPT = ('INSERT INTO "delivery_attempt" ("notification_id", "started_at", "duration_ms", "ok", "code", '
                   '"reply", "step", "transient", "worker", "via_account_id", "relay_account_id") '
                   'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
# One statement for every outcome: NULL parameters keep the column (headers, status, sent_at, next attempt), and a
# final attempt ends the lease. Only rows still leased to this worker (the last parameter) are touched.
_UPDATE_LEASED = (
    'UPDATE "notification" SET "attempts" = ?, "last_code" = ?, "last_reply" = ?, "last_step" = ?, "updated_at" = ?, '
    '"headers_sent" = COALESCE(?, "headers_sent"), "status" = COALESCE(?, "status"), '
    '"sent_at" = COALESCE(?, "sent_at"), "next_attempt_at" = COALESCE(?, "next_attempt_at"), '
    '"lease_owner" = CASE WHEN ? THEN NULL ELSE "lease_owner" END, '
    '"lease_until" = CASE WHEN ? THEN NULL ELSE "lease_until" END '
    'WHERE "id" = ? AND "lease_owner" = ?')


_KEEP_CONNECTION = ('INSERT INTO "outbox_connection" ("account_id", "worker", "until") VALUES (?, ?, ?) '
                    'ON CONFLICT ("account_id", "worker") DO UPDATE SET "until" = excluded."until"')


def record(owner: str, outcomes: list[Outcome], settings: OutboxSettings) -> None:
    """Record attempts and the notifications' new states, all in one transaction: a row in delivery_attempt each,
    and the notification updated under the owner's lease (plain SQL with executemany: a statement built by the ORM
    for each message cost about as much as sending it)."""
    now = utcnow()
    rows, earlier = [], Counter()
    accounts = sorted({outcome.relay.id for outcome in outcomes})  # whose connections stay open
    for outcome in outcomes:
        # A reconnected message has two outcomes here (the lost try, then the real one): both count.
        rows.append((outcome, _new_values(outcome, now, earlier[outcome.notification.id], settings)))
        earlier[outcome.notification.id] += 1

    def work():
        # SQLite: the write lock first (waiting for it), since a read that later wants to write can only fail.
        # PostgreSQL: the rows, locked as read, so that no claim takes them back meanwhile; then the tally's rows
        # (always in that order: see db.lock_tally).
        with db.row_locking():
            ids = [outcome.notification.id for outcome, _ in rows]
            held = {row[0] for row in db.execute(db.for_update(
                f'SELECT "id", "lease_owner" FROM "notification" WHERE "id" IN ({", ".join("?" * len(ids))})'),
                ids) if row[1] == owner}
            db.execute_many(_INSERT_ATTEMPT, [
                (o.notification.id, o.started, int(o.result.elapsed * 1000), o.result.ok, o.result.code,
                 values["last_reply_attempt"], values["last_step"], o.transient, owner, o.via.id if o.via else None,
                 o.relay.id)
                for o, values in rows])
            changing = {"sending", *(values["status"] for _, values in rows if "status" in values)}
            db.lock_tally(changing if held == set(ids) else Notification.STATUSES)
            db.execute_many(_UPDATE_LEASED, [
                (values["attempts"], values["last_code"], values["last_reply"], values["last_step"], now,
                 values.get("headers_sent"), values.get("status"), values.get("sent_at"),
                 values.get("next_attempt_at"), o.final, o.final, o.notification.id, owner)
                for o, values in rows if o.notification.id in held])
            metrics.count_outcomes(rows, held)  # GET /metrics's counters, in this transaction: counted once
            # The connection that sent these stays open after their leases end (kept for the next batch): it
            # counts against the account's limit from now on, in the same transaction (webapp.outbox.sessions).
            db.execute_many(_KEEP_CONNECTION, [(account_id, owner, now + timedelta(
                seconds=settings.session_idle_seconds + settings.lease_seconds)) for account_id in accounts])
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
                    _flag_authentication(o.relay, o.result, now)
            _count_failovers(rows, held)

    retry_locked(work)
    for outcome, values in rows:  # after the commit: work() may run again after contention
        outcome.notification.attempts += 1
        name, number = outcome.relay.name, outcome.notification.id
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
    if outcome.failover:
        facts["failover"] = outcome.failover
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
            delay = settings.backoff(attempts)
            due = now + timedelta(seconds=delay if outcome.due_in is None else min(delay, outcome.due_in))
            values.update(status="retrying", next_attempt_at=due)
        else:
            values.update(status="failed", last_reply=json.dumps({**facts, "gave_up": give_up}) if give_up else reply)
    return values


def _count_failovers(rows, held) -> None:
    """Notifications delivered through a backup, in the metrics (in record()'s transaction: counted once)."""
    carried = Counter((o.account.id, o.via.id) for o, _ in rows
                      if o.via is not None and o.result.ok and o.final and o.notification.id in held)
    for (primary, backup), count in carried.items():
        metrics.failover(primary, backup, notifications=count)


def _flag_authentication(account: SmtpAccount, result: SendResult, now: datetime) -> None:
    """A 535, or a token endpoint refusing the credential, during delivery shows on the account as a failed check
    (the accounts report's status); its summary is facts, put in words in the reader's language by the report."""
    facts = {**result.facts(), "delivery": True, "reply": (result.reply or "")[:500]}
    SmtpAccount.update(last_test_at=now, last_test_ok=False, last_test_summary=json.dumps(facts)).where(
        SmtpAccount.id == account.id).execute()
