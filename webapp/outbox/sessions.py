"""The SMTP connections a worker keeps open between batches, one per account.

A kept connection counts against the account's connection limit like a held lease: record() writes the worker's
row in outbox_connection with each batch's outcomes (so there is no moment between the last lease ending and the
row), and the row goes only after the connection is closed. Another worker's claim counts it (queue._allowance), so
that with OUTBOX_MAX_CONNECTIONS=1 an idle connection of one worker and a new one of another are never open at once.
"""
import dataclasses
import logging
import threading
import time

from webapp.mail.transport import QUIT_SECONDS, SmtpSession, SmtpSettings
from webapp.outbox import queue

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Kept:
    session: SmtpSession
    last_used: float


class KeptSessions:
    """A worker's kept connections by account id, shared by its lanes."""

    def __init__(self, owner: str):
        self.owner = owner
        self._kept: dict[int, _Kept] = {}
        self._lock = threading.Lock()

    def take(self, account_id: int, settings: SmtpSettings) -> SmtpSession:
        """The account's kept connection if its settings are still these, else a new session (not yet connected)."""
        with self._lock:
            entry = self._kept.pop(account_id, None)
        if entry is not None and entry.session.settings == settings:
            return entry.session
        if entry is not None:  # the account's settings changed: a new connection
            entry.session.close()
        return SmtpSession(settings)

    def keep(self, account_id: int, session: SmtpSession | None) -> None:
        """Keep the account's connection for its next batch (None: the batch needed none, such as a disabled
        account's, and the account counts no connection of this worker any more)."""
        if session is None:
            self._let_go([account_id])
            return
        with self._lock:
            self._kept[account_id] = _Kept(session, time.monotonic())

    def close_idle(self, idle_seconds: float) -> None:
        """Close connections unused for idle_seconds (servers drop idle clients anyway). Without QUIT: this runs on
        the claiming thread, which must never wait on a relay."""
        limit = time.monotonic() - idle_seconds
        with self._lock:
            idle = [key for key, entry in self._kept.items() if entry.last_used < limit]
            closing = {key: self._kept.pop(key) for key in idle}
        for entry in closing.values():
            entry.session.close(quit_seconds=0)
        self._let_go(list(closing))

    def close_all(self) -> None:
        """Close every kept connection, their QUITs bounded together by QUIT_SECONDS."""
        with self._lock:
            kept, self._kept = self._kept, {}
        end = time.monotonic() + QUIT_SECONDS
        for entry in kept.values():
            entry.session.close(max(0.0, end - time.monotonic()))
        self._let_go(list(kept))

    def _let_go(self, account_ids: list[int]) -> None:
        """After closing: the accounts no longer count this worker's connections (a failure here is logged; the
        rows lapse by themselves)."""
        if not account_ids:
            return
        try:
            queue.let_go(self.owner, account_ids)
        except Exception:
            log.exception("outbox worker %s: could not give up its connections to accounts %s", self.owner,
                          account_ids)
