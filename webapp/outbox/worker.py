"""The worker: claims a batch, delivers each account's notifications over one kept SMTP session, records outcomes.

- Only the lease owner sends a notification, and only while at least half of the lease (more than one SMTP deadline)
  is left; it renews the lease otherwise.
- A notification is never lost. The one unavoidable duplicate: when the process dies (or the connection drops) after
  the server accepted the message but before its "250" was recorded, the message is sent again, with the same
  Message-ID (assigned at enqueue, reused on every attempt), so mail clients show it once. Outcomes are recorded
  together, one transaction per RECORD_EVERY messages or RECORD_SECONDS (a write per message cost as much as the
  message): a process killed mid-batch may send up to that many messages twice, never fewer than once.
- Each account's notifications are delivered on a thread of their own (a lane; `concurrency` lanes at most) while the
  loop goes on claiming for the accounts without one: a slow or dead relay holds up its own account (and one of the
  lanes) only. An account with a lane gets no new claim until the lane ends: one connection per account.
- Claimed notifications are grouped by account; each group goes over one SmtpSession (one connection for many
  messages), reconnecting once at once when a reused connection was dropped before the message was handed over.
  Failures of the session itself (DNS, connect, outbound policy, proxy, TLS, greeting, STARTTLS, AUTH) apply to the
  rest of the group, so a wrong password costs one login attempt per batch, not one per message. A relay that
  stalls or drops mid-transaction gets the rest of the group back in the queue, untried, after the same backoff.
- Failover (webapp.outbox.failover): an account failing over has its notifications claimed for its backup's lane
  (grouped by the relay that carries them) and composed by the backup's rules; a relay failure that starts a
  failover sends the rest of its group back to the queue, due at once, for the backup.
- Graceful stop: the message being sent finishes and is recorded; the rest of the claimed batch goes back to the queue.
"""
import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta

from webapp.mail.compose import header_block
from webapp.mail.errors import N_, MailError, Step
from webapp.mail.transport import SendResult, SmtpSession
from webapp.models import Credential, Notification, SmtpAccount, utcnow
from webapp.outbox import outcomes, queue
from webapp.outbox.failover import Relay
from webapp.outbox.message import Composer, footer_for
from webapp.outbox.outcomes import Outcome
from webapp.outbox.queue import claim, connection, outbox_counts
from webapp.outbox.sessions import KeptSessions
from webapp.outbox.settings import (
    ACTIVE,
    CONTENDED_SECONDS,
    RECORD_EVERY,
    RECORD_SECONDS,
    SESSION_STEPS,
    OutboxSettings,
)

log = logging.getLogger(__name__)


def worker_name() -> str:
    """host:pid:random — unique per Worker, readable in the delivery log."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Claims due notifications and delivers each account's on a lane: run_forever(stop_event) until stopped,
    run_until_idle() until the outbox is empty, run_once() for one batch (waiting for its lanes).

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
        self._sessions = KeptSessions(self.name)
        self._pool: ThreadPoolExecutor | None = None
        self._lanes: dict[int, Future] = {}  # account id -> the lane delivering its claimed notifications
        self._lanes_lock = threading.Lock()
        self._lane_ended = threading.Event()
        self._next_hooks = 0.0
        self._contended = False  # the last claim passed over an account another worker was claiming
        Credential.watch_refresh_token_rotation()  # as create_app() does: a worker may be built without it

    # -- running --

    def run_forever(self, stop_event: threading.Event | None = None) -> None:
        """Deliver until stop_event (or self.stop()) is set; then each lane finishes its message in flight and puts
        the rest of its batch back, and the connections close."""
        if stop_event is not None:
            self.stop_event = stop_event
        log.info("outbox worker %s started", self.name)
        try:
            while not self.stop_event.is_set():
                self._run_hooks()
                self._lane_ended.clear()
                try:
                    self._dispatch()
                except Exception:  # a database hiccup must not end the worker: log, wait, go on
                    log.exception("outbox worker %s: claim failed", self.name)
                self.close_idle_sessions()
                self._wait(self.settings.poll_seconds)
        finally:
            self.close()
            log.info("outbox worker %s stopped", self.name)

    def stop(self) -> None:
        """Ask run_forever() to stop after the messages in flight."""
        self.stop_event.set()

    def run_once(self) -> int:
        """Claim one batch for the accounts without a lane, deliver it and wait for its lanes; return how many were
        claimed. (run_forever and run_until_idle never wait for an account's lane before claiming for the others.)"""
        claimed = self._dispatch()
        with self._lanes_lock:
            lanes = list(self._lanes.values())
        wait(lanes)
        return claimed

    def run_until_idle(self, timeout: float = 30.0) -> None:
        """Deliver until nothing is queued, sending or retrying (tests, `smtpdesk worker --until-idle`)."""
        deadline = time.monotonic() + timeout
        # One database connection for the whole run: closing the last connection to the database checkpoints its
        # write-ahead log, work better done once than after every claim.
        with connection():
            while True:
                self._lane_ended.clear()
                if not self._dispatch() and not self._running():
                    counts = outbox_counts()
                    if not any(counts[status] for status in ACTIVE):
                        return
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"outbox not drained after {timeout}s: {counts}")
                self._wait(min(0.05, self.settings.poll_seconds))

    def close(self) -> None:
        """Stop: each lane finishes its message in flight and puts the rest of its batch back (a Ctrl+C during
        run_until_idle comes here without stop()); then close every kept connection, their QUITs bounded together
        by QUIT_SECONDS."""
        self.stop_event.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._sessions.close_all()

    def close_idle_sessions(self) -> None:
        """Close connections unused for session_idle_seconds (see KeptSessions.close_idle)."""
        self._sessions.close_idle(self.settings.session_idle_seconds)

    # -- lanes: one thread per relay (an account, carrying its own notifications and those of the accounts failing
    # over to it: webapp.outbox.failover) with claimed notifications --

    def _dispatch(self) -> int:
        """Claim for the accounts without a lane (as many accounts as lanes are free) and start a lane for each;
        return how many notifications were claimed. Never waits for a lane."""
        with self._lanes_lock:
            busy = set(self._lanes)
        free = self.settings.concurrency - len(busy)
        if free <= 0:
            return 0
        contended: set[int] = set()
        with connection():
            batch = claim(self.name, self.settings, busy=busy, accounts=free, contended=contended)
        self._contended = bool(contended)
        groups: dict[int, list[Notification]] = {}
        for notification in batch:
            groups.setdefault(notification.sent_via_id or notification.account_id, []).append(notification)
        if groups and self._pool is None:
            self._pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="outbox")
        with self._lanes_lock:  # held until every lane is listed: a lane that ends at once removes itself after
            for account_id, notifications in groups.items():
                self._lanes[account_id] = self._pool.submit(self._lane, account_id, notifications)
        return len(batch)

    def _lane(self, account_id: int, notifications: list[Notification]) -> None:
        """Deliver one account's claimed notifications, then free the account for the next claim."""
        try:
            self._deliver_group(notifications)
        except Exception:  # the claims left behind come back when their lease expires
            log.exception("outbox worker %s: delivery for account %s failed", self.name, account_id)
        finally:
            with self._lanes_lock:
                del self._lanes[account_id]
            self._lane_ended.set()

    def _running(self) -> bool:
        with self._lanes_lock:
            return bool(self._lanes)

    def _wait(self, idle_seconds: float) -> None:
        """Until a lane ends (its account and thread are free again), or a while; when no lane ran since the last
        claim, until a stop or idle_seconds. A lane that already ended means work was found: claim again at once.
        An account that another worker was claiming meanwhile may have notifications left: claim again soon."""
        soon = CONTENDED_SECONDS if self._contended else float("inf")
        if self._running() or self._lane_ended.is_set():
            self._lane_ended.wait(min(self.settings.poll_seconds, soon))
        else:
            self.stop_event.wait(min(idle_seconds, soon))

    def _run_hooks(self) -> None:
        if not self.hooks or time.monotonic() < self._next_hooks:
            return
        self._next_hooks = time.monotonic() + self.hook_seconds
        for hook in self.hooks:
            try:
                hook()
            except Exception:
                log.exception("outbox worker %s: hook %r failed", self.name, hook)

    # -- one relay's notifications over one connection --

    def _deliver_group(self, notifications: list[Notification]) -> None:
        with connection():
            first = notifications[0]
            account = SmtpAccount.get_or_none(SmtpAccount.id == (first.sent_via_id or first.account_id))
            if account is None:  # RESTRICT makes this impossible for its own; kept so that a claim is never left behind
                queue.release(self.name, notifications)
                return
            relay = Relay(account, notifications, self.settings)
            if relay.carried and not account.enabled:  # a backup disabled since: their own relay's, next claim
                queue.release(self.name, relay.carried)
                notifications = [n for n in notifications if n.account_id == account.id]
                if not notifications:
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
                self._deliver_over(session, relay, notifications, shared, footer_for(account) or "")
            finally:
                self._sessions.keep(account.id, session)

    def _deliver_over(self, session: SmtpSession | None, relay: Relay, pending: list[Notification],
                      shared: SendResult | None, footer: str) -> None:
        """Send the pending notifications in order; once the session itself failed, the rest share that outcome,
        unless the relay's account now fails over: then they go back to the queue, due, for its backup."""
        account = relay.carrier
        group = _Leased(self, pending)
        composer = Composer(account, footer)  # the relay's rules, for the notifications it carries too
        try:
            while group.pending:
                if self.stop_event.is_set():
                    queue.release(self.name, group.pending)
                    return
                if not group.holds_next():
                    continue
                notification = group.pending[0]
                if shared is not None:
                    self._finish(group, notification, relay, shared, started=utcnow())
                else:
                    result = self._send(session, relay, notification, group, composer)
                    if not result.ok and relay.failing_over:
                        group.done(notification)
                        self._put_back(group, None)
                        return
                    if not result.ok and result.error is not None and _session_failed(result):
                        shared = result
                    elif not result.ok and _broke_mid_transaction(result):
                        group.done(notification)
                        self._put_back(group, notification)
                        return
                group.done(notification)
        except Exception:
            log.exception("outbox worker %s: delivery through %s failed", self.name, account.name)
            # The one in flight counts a transient attempt, so backoff and the attempt limit apply: a fault that
            # repeats cannot spin. Unrecorded by the server, it may go out again (the documented window).
            in_flight, rest = group.pending[:1], group.pending[1:]
            queue.release(self.name, rest)
            for notification in in_flight:
                self._finish(group, notification, relay, SendResult.refusal(MailError(
                    Step.INTERNAL, True, N_("An unexpected error interrupted this delivery."),
                    N_("It will be retried; if it repeats, look at the server log."))), started=utcnow())
        finally:
            group.flush()

    def _put_back(self, group: "_Leased", failed: Notification | None) -> None:
        """The relay stalled or dropped in the middle of a transaction: the next message would most likely wait as
        long. The one in flight is retried as recorded (its outcome is unknown: same Message-ID); the rest go back
        to the queue untried, without an attempt, due when it is (failed None: due now, for a backup)."""
        group.flush()  # records its attempt, which counts in its backoff
        due = None if failed is None else utcnow() + timedelta(seconds=self.settings.backoff(failed.attempts))
        queue.release(self.name, group.pending, due=due)
        group.pending = []

    def _session(self, account: SmtpAccount) -> SmtpSession:
        settings = account.smtp_settings(self.settings.smtp_timeout, self.settings.smtp_deadline,
                                         blocked_networks=self.settings.blocked_networks,
                                         oauth_allow_loopback=self.settings.oauth_allow_loopback)
        return self._sessions.take(account.id, settings)

    def _send(self, session: SmtpSession, relay: Relay, notification: Notification, group: "_Leased",
              composer: Composer) -> SendResult:
        started = utcnow()
        try:
            message, envelope_from, recipients = composer.message_for(notification)
        except ValueError as exc:
            result = SendResult.refusal(MailError(Step.POLICY, False,
                                        N_("The message could not be composed (%(reason)s)."),
                                        N_("Check the account's addresses and the notification's recipients."),
                                        {"reason": str(exc)}))
            self._finish(group, notification, relay, result, started=started)
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
            self._finish(group, notification, relay, result, started=started, headers=headers, final=False)
            started = utcnow()
            result = session.send(message, envelope_from=envelope_from, recipients=recipients, then=then)
        self._finish(group, notification, relay, result, started=started, headers=headers)
        return result

    def _finish(self, group: "_Leased", notification: Notification, relay: Relay, result: SendResult, *,
                started: datetime, headers: str | None = None, final: bool = True) -> None:
        """Note one attempt's outcome; the group records its outcomes together (see _Leased.note)."""
        group.note(relay.outcome(notification, result, started, headers, final))

    def _record(self, recorded: list[Outcome]) -> None:
        """Record outcomes in one transaction (outcomes.record)."""
        outcomes.record(self.name, recorded, self.settings)


class _Leased:
    """One account's claimed notifications and their lease: a message is sent only while more than half of the
    lease (at least one SMTP deadline and a second) is left, renewing it for the whole group otherwise."""

    def __init__(self, worker: Worker, notifications: list[Notification]):
        self.worker = worker
        self.pending = list(notifications)
        self.lease_until = min((n.lease_until for n in self.pending if n.lease_until), default=utcnow())
        self.outcomes: list[Outcome] = []
        self._first_noted = 0.0

    def note(self, outcome: Outcome) -> None:
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
            held, self.lease_until = queue.renew(self.worker.name, self.pending, self.worker.settings.lease_seconds)
            first = self.pending[0] if self.pending else None
            self.pending = [n for n in self.pending if n.id in held]
            return bool(self.pending) and self.pending[0] is first
        return bool(self.pending)

    def done(self, notification: Notification) -> None:
        # Always the head (sent in order); by identity: a model's == compares by query, slow over a long batch.
        if self.pending and self.pending[0] is notification:
            del self.pending[0]


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
    """Whether the failure is the session's (the rest of the account's group would fail the same way): opening the
    connection failed (a blocked host included), or it broke before the transaction began."""
    error = result.error
    if error.step in SESSION_STEPS or result.opening:
        return True
    # smtplib writes "mail FROM:<...>": compare without case.
    mail_said = any(line[:7].upper() == "C: MAIL" for line in result.transcript)
    return error.step in (Step.CONNECTION_LOST, Step.TIMEOUT) and not mail_said


def _broke_mid_transaction(result: SendResult) -> bool:
    """A timeout or a lost connection after MAIL (before it, _session_failed applies)."""
    error = result.error
    return error is not None and error.transient and error.step in (Step.CONNECTION_LOST, Step.TIMEOUT)


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
