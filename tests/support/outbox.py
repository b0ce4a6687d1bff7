"""Helpers for the outbox tests: accounts pointing at the test SMTP servers, a fast worker, server-side counts."""
import asyncio
import threading
from collections import Counter

from tests.fixtures.smtp import Received
from tests.support.factories import make_account, make_credential
from webapp.models import Notification
from webapp.outbox import Worker

# Small leases, deadlines and backoffs keep the suite fast; lease >= 2 x (deadline + 1) as the worker demands.
FAST = dict(lease_seconds=6, smtp_timeout=1.0, smtp_deadline=2.0, backoff_base_seconds=0.01,
            backoff_max_seconds=0.05, poll_seconds=0.02, session_idle_seconds=5, batch_size=50)


def fast_worker(**overrides) -> Worker:
    """A Worker with the test timings (overrides replace any of them)."""
    return Worker(**{**FAST, **overrides})


def drain(**overrides) -> Worker:
    """Deliver until nothing is queued, sending or retrying; return the (closed) worker."""
    worker = fast_worker(**overrides)
    try:
        worker.run_until_idle(timeout=20)
    finally:
        worker.close()
    return worker


def account_for(server, certificates=None, users=None, **overrides):
    """An enabled default account sending through this test server (TLS modes trust the test CA)."""
    fields = dict(host=server.host, port=server.port, is_default=True)
    if server.mode != "plain":
        fields.update(secure=True, secure_type=server.mode, ca_cert=certificates.ca_pem)
    if users:
        login, secret = next(iter(users.items()))
        fields.update(use_auth=True, credential=make_credential(username=login, secret=secret))
    fields.update(overrides)
    return make_account(**fields)


def message_ids(server) -> Counter:
    """How many times the server received each Message-ID."""
    return Counter(received.message["Message-ID"] for received in server.received)


def statuses() -> Counter:
    return Counter(n.status for n in Notification.select())


def drop_after_data(server, every: int = 1):
    """Make the server accept each message, answer 250, then close the connection (after every `every` messages)."""
    handler = server.handler
    original = handler.handle_DATA

    async def handle_DATA(smtp, session, envelope):
        reply = await original(smtp, session, envelope)
        if reply.startswith("250") and len(handler.received) % every == 0:
            asyncio.get_running_loop().call_later(0.02, smtp.transport.close)
        return reply

    handler.handle_DATA = handle_DATA


def vanish_after_dot(server, times: int = 1):
    """Make the server take the message and close the connection without a reply, the first `times` times
    (SECURITY 17: the connection drops after the final dot, before the 250)."""
    handler = server.handler
    original = handler.handle_DATA
    state = {"left": times}

    async def handle_DATA(smtp, session, envelope):
        if state["left"] > 0:
            state["left"] -= 1
            handler.received.append(_received(envelope))
            smtp.transport.abort()
            await asyncio.sleep(0.05)
            return "250 OK (never seen)"
        return await original(smtp, session, envelope)

    handler.handle_DATA = handle_DATA


class HeldData:
    """A relay stuck in DATA: every message's content is taken, and its reply waits until release() (see hold_data).
    waiting: how many messages are being held right now."""

    def __init__(self):
        self.released = threading.Event()
        self.waiting = 0

    def release(self) -> None:
        self.released.set()


def hold_data(server) -> HeldData:
    """Make the server hold each message's reply after its final dot until the test calls release()."""
    held = HeldData()
    handler = server.handler
    original = handler.handle_DATA

    async def handle_DATA(smtp, session, envelope):
        held.waiting += 1
        while not held.released.is_set():
            await asyncio.sleep(0.01)
        held.waiting -= 1
        return await original(smtp, session, envelope)

    handler.handle_DATA = handle_DATA
    return held


def hold_quit(server, drip: float | None = None) -> HeldData:
    """Make the server hold its answer to QUIT until the test calls release(); with drip, it sends a "221-" line
    every `drip` seconds meanwhile (each read gets something in time, the reply as a whole never ends)."""
    held = HeldData()

    async def handle_QUIT(smtp, session, envelope):
        held.waiting += 1
        while not held.released.is_set():
            if drip:
                await smtp.push("221-still closing")
            await asyncio.sleep(drip or 0.01)
        held.waiting -= 1
        return "221 Bye"

    server.handler.handle_QUIT = handle_QUIT
    return held


def _received(envelope) -> Received:
    return Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content, list(envelope.mail_options))
