"""One request at a time runs Python; the others wait their turn asleep instead of fighting for the GIL.

waitress serves with 8 threads so that a slow request (a test dialog waits on a remote SMTP server for up to
SMTP_DEADLINE) does not hold up the rest. But the pages themselves are Python, which runs one thread at a time
anyway, and threads that take turns through the GIL pay for it: every SQLite step, zlib call and socket send
releases the GIL, and getting it back behind a busy thread waits for the switch interval. Measured with wrk and 8
clients on the accounts report, 8 threads served 100 pages/s at 13 ms of CPU each; 1 thread served 180 pages/s at
7.5 ms.

So the app runs behind a gate: a request holds it from the moment Flask takes the request until the response is
built (what waitress then writes is outside it), and the code that waits on the network (a test dialog's SMTP
conversation, a connector test, hashing a password) lets go of it with `released()` so other requests run
meanwhile.
"""
import threading
from contextlib import contextmanager

from webapp.db import database

_held = threading.local()


class RequestGate:
    """WSGI middleware: the wrapped app serves one request at a time."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            _held.gate = self
            try:
                return self.app(environ, start_response)
            finally:
                _held.gate = None


def init_app(app) -> None:
    app.wsgi_app = RequestGate(app.wsgi_app)


@contextmanager
def released():
    """Let other requests run while this one waits on something outside Python (network, argon2).

    Outside a request (the outbox worker, the CLI) there is no gate to let go of, and this does nothing. Nor does
    it inside a transaction: another request could then wait, holding the gate, for the SQLite lock this one holds
    while this one waits for the gate.
    """
    gate = getattr(_held, "gate", None)
    if gate is None or database.in_transaction():
        yield
        return
    _held.gate = None
    gate.lock.release()
    try:
        yield
    finally:
        gate.lock.acquire()
        _held.gate = gate
