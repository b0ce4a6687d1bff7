"""Failover: while an account's relay fails, its notifications go out through its backup account.

- A relay failure means "this relay, not this message" (relay_failure()): the connection refused or timed out, the
  name not resolved, the proxy hop, TLS or its certificate, a 421 anywhere, any refusal at the greeting or STARTTLS,
  the connection lost while opening, and a login refused (535, or the token endpoint refusing the credential) with
  the very credential that last logged in successfully (SmtpAccount.auth_worked_with, kept by deliveries and tests).
  A 5xx about the message or a recipient never is one. Only accounts with an enabled backup count them.
- The state is the account's row (failover_* columns), so every worker on every host sees the same: the relay
  failures in a row, counted from failover_since (FAILOVER_AFTER_FAILURES within FAILOVER_WINDOW_SECONDS start a
  failover), the cool-down's end (failover_until, FAILOVER_COOLDOWN_SECONDS later) and the last failure, as facts.
  A delivery through the account's own relay clears it. After the cool-down the next claim tries the primary again;
  a relay failure then, with no success since, starts another cool-down at once. Until the failover starts, a
  notification that met a relay failure is tried again within RELAY_RETRY_SECONDS, not after the backoff, so that the
  failures that start it come within seconds even when nothing else is on its way; once it starts, the account's
  notifications that failed are due at once.
- While an account fails over, claim() gives its notifications to its backup's lane (Notification.sent_via): they
  count against the backup's limits, go over the backup's connection, composed by the backup's rules (its From,
  Reply-To, Return-Path, footer: a relay may refuse a foreign sender domain), and their attempts say "sent through
  backup B after A failed: <reason>". One hop only: the backup's own backup never carries them. When the backup fails
  too, they are retried as any notification, except that a failure of the backup's session (not about the message
  or a recipient) is always retried, never final: the primary may carry them after its cool-down.
- Lock order (PostgreSQL): the account's row is changed in a transaction of its own, never together with
  notification rows, so that it cannot wait in a circle with a recording of outcomes (notifications, then the tally,
  then an account flagged by a 535).
"""
import json
import logging
from datetime import datetime, timedelta

from webapp import db
from webapp.mail.errors import Step
from webapp.mail.oauth_errors import credential_refused
from webapp.mail.transport import SendResult
from webapp.models import Notification, SmtpAccount, utcnow
from webapp.outbox.outcomes import Outcome
from webapp.outbox.queue import retry_locked
from webapp.outbox.settings import OutboxSettings

log = logging.getLogger(__name__)

RELAY_STEPS = frozenset({Step.DNS, Step.CONNECT, Step.PROXY, Step.TLS, Step.CERTIFICATE, Step.GREETING,
                         Step.STARTTLS})
OPENING_STEPS = frozenset({Step.TIMEOUT, Step.CONNECTION_LOST})  # relay failures while opening the connection
MESSAGE_STEPS = frozenset({Step.RECIPIENT, Step.DATA})  # failures about the message or a recipient
RELAY_RETRY_SECONDS = 1.0  # a relay failure of an account with a backup is tried again this soon (at most)


def relay_failure(result: SendResult, account: SmtpAccount) -> bool:
    """Whether a failed attempt through the account's relay says the relay, not the message, failed."""
    error = result.error
    if result.ok or error is None:
        return False
    if result.code == 421 or error.step in RELAY_STEPS or (error.step in OPENING_STEPS and result.opening):
        return True
    if (error.step is Step.AUTH and result.code == 535) or credential_refused(error):
        key = account.credential_key()
        return key is not None and key == account.auth_worked_with  # it worked before: the relay changed
    return False


# --- The state: changed by the lanes that meet a relay failure or a success ----------------------------------------


def record_failure(account: SmtpAccount, result: SendResult, settings: OutboxSettings) -> bool:
    """Count a relay failure of the account (one per failed session) and say whether its notifications go through
    its backup from now on: when the failures reach FAILOVER_AFTER_FAILURES within the window, or at once after a
    cool-down no success ended. A failover starting makes the account's retrying notifications due now."""
    now = utcnow()
    reason = json.dumps(result.facts())

    def work() -> tuple[bool, bool]:
        with db.row_locking():
            row = db.locked(SmtpAccount.select(
                SmtpAccount.failover_failures, SmtpAccount.failover_since, SmtpAccount.failover_until,
                SmtpAccount.backup_account).where(SmtpAccount.id == account.id)).first()
            if row is None or row.backup_account_id is None:
                return False, False
            backup_enabled = SmtpAccount.select().where(SmtpAccount.id == row.backup_account_id,
                                                        SmtpAccount.enabled == True).exists()  # noqa: E712
            if row.failover_until is not None and row.failover_until > now:
                return backup_enabled, False  # another lane started it meanwhile
            failures, since = row.failover_failures, row.failover_since
            if row.failover_until is None and (
                    since is None or (now - since).total_seconds() > settings.failover_window_seconds):
                failures, since = 0, now  # the first of a new series
            failures += 1
            starts = backup_enabled and (failures >= settings.failover_after_failures
                                         or row.failover_until is not None)
            until = now + timedelta(seconds=settings.failover_cooldown_seconds) if starts else row.failover_until
            SmtpAccount.update(failover_failures=failures, failover_since=since, failover_until=until,
                               failover_reason=reason).where(SmtpAccount.id == account.id).execute()
            return starts, starts

    failing_over, started = retry_locked(work)
    if started:
        log.warning("account %s fails over to its backup for %g s: %s", account.name,
                    settings.failover_cooldown_seconds, result.error)
        retry_locked(lambda: _due_now(account.id, now))
    return failing_over


def _due_now(account_id: int, now: datetime) -> None:
    """The account's retrying notifications due now: the next claim sends them through the backup."""
    with db.row_locking():
        ids = [n.id for n in db.locked(Notification.select(Notification.id).where(
            Notification.account == account_id, Notification.status == "retrying",
            Notification.next_attempt_at > now), skip_locked=True)]  # one being claimed now is the claim's
        if ids:
            db.lock_tally(("retrying",))
            Notification.update(next_attempt_at=now).where(Notification.id.in_(ids)).execute()


def record_success(account: SmtpAccount) -> None:
    """The account's own relay delivered: its failover state ends, and the credential it logged in with is the one
    that worked (only written when something changes)."""
    key = account.credential_key() or account.auth_worked_with
    if not (account.failover_failures or account.failover_since or account.failover_until
            or key != account.auth_worked_with):
        return
    if account.failover_until is not None:
        log.info("account %s delivers through its own relay again", account.name)
    retry_locked(lambda: SmtpAccount.update(
        failover_failures=0, failover_since=None, failover_until=None, failover_reason=None, auth_worked_with=key,
    ).where(SmtpAccount.id == account.id).execute())
    account.failover_failures, account.failover_since, account.failover_until = 0, None, None
    account.failover_reason, account.auth_worked_with = None, key


# --- A lane: one relay, carrying its account's notifications and those of accounts failing over to it --------------


class Relay:
    """What a lane needs of failover: the lane's account (the carrier), the accounts whose notifications it carries,
    and each attempt's outcome (outcome()), which counts relay failures and successes as they come."""

    def __init__(self, carrier: SmtpAccount, notifications: list[Notification], settings: OutboxSettings):
        self.carrier, self.settings = carrier, settings
        others = {n.account_id for n in notifications} - {carrier.id}
        self.primaries = {a.id: a for a in SmtpAccount.select().where(SmtpAccount.id.in_(others))} if others else {}
        self.has_backup = bool(carrier.backup_account_id) and SmtpAccount.select().where(
            SmtpAccount.id == carrier.backup_account_id, SmtpAccount.enabled == True).exists()  # noqa: E712
        self.failing_over = False  # the carrier's own notifications go through its backup from now on
        self._counted: SendResult | None = None
        self._delivered = False
        self.carried: list[Notification] = [n for n in notifications if n.account_id in self.primaries]

    def outcome(self, notification: Notification, result: SendResult, started: datetime, headers: str | None,
                final: bool) -> Outcome:
        """The attempt's outcome to record, after counting what it says about the carrier's relay."""
        primary = self.primaries.get(notification.account_id)
        if result.ok and not self._delivered:
            self._delivered = True
            record_success(self.carrier)
        if primary is not None:
            # A failure of the backup's session is retried whatever its code: not the message's fault.
            retry = not result.ok and result.error is not None and result.error.step not in MESSAGE_STEPS
            return Outcome(notification, primary, result, started, headers, final, via=self.carrier,
                           failover=self.facts(primary), retry=retry)
        relay = final and self.has_backup and relay_failure(result, self.carrier)
        if relay and result is not self._counted:  # a session's failure is shared by the rest of its group: once
            self._counted = result
            self.failing_over = record_failure(self.carrier, result, self.settings)
        # Failing over: due at once, for the backup. Not yet: tried again soon, so that the failures that start a
        # failover come within seconds even when no other notification is on its way.
        due_in = (0 if self.failing_over else RELAY_RETRY_SECONDS) if relay else None
        return Outcome(notification, self.carrier, result, started, headers, final, retry=relay, due_in=due_in)

    def facts(self, primary: SmtpAccount) -> dict:
        """Why the notification went through the backup, for the delivery log (message.SENT_THROUGH_BACKUP)."""
        try:
            reason = json.loads(primary.failover_reason or "{}")
        except ValueError:
            reason = {}
        return {"primary": primary.name, "backup": self.carrier.name, "reason": reason}
