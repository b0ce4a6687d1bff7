"""A hostile SMTP server or proxy cannot exhaust memory (SECURITY 35): each reply is read up to a limit, the
transcript kept and shown is capped with a visible marker, and the failure reads "the server sent an oversized
reply" at the step it happened, in the transport, the test dialog and the worker. Against a real server on loopback
that sends a 100 MB multi-line reply as fast as it can (tests/fixtures/smtp.py flooding_server)."""
import contextlib
import socket
import threading
import tracemalloc

import pytest

from tests.support.dialog import dialog_of, text_of
from tests.support.factories import make_account
from tests.support.mail import BOUNCE, RECIPIENT, make_message
from tests.support.outbox import drain
from webapp.mail import Hop, MailError, SmtpSettings, Step, open_connection, send_message
from webapp.mail.client import MAX_REPLY, MAX_TRANSCRIPT, TRANSCRIPT_CUT, Transcript
from webapp.models import DeliveryAttempt, Notification
from webapp.outbox import Worker, send_notification
from webapp.outbox.message import reply_words

# What a bounded client may allocate while refusing a 100 MB reply: its buffers, one capped reply, the page.
FEW_MEGABYTES = 4 * 1024 * 1024


@contextlib.contextmanager
def peak_allocation():
    """measured["peak"]: the most memory Python code (every thread) held at once inside the block, over what it
    held before, traced by tracemalloc."""
    measured = {}
    tracemalloc.start()
    try:
        yield measured
        measured["peak"] = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def transcript_size(lines) -> int:
    return sum(len(line) + 1 for line in lines)


def settings_for(address, **overrides) -> SmtpSettings:
    host, port = address
    # Generous limits: the reply limit, not a timeout, must be what ends the dialogue.
    return SmtpSettings(**{"host": host, "port": port, "mode": "plain", "timeout": 20.0, "deadline": 40.0,
                           **overrides})


def send(settings):
    return send_message(settings, make_message(), envelope_from=BOUNCE, recipients=[RECIPIENT])


# --- the transport ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("after,step,words", [
    (None, Step.GREETING, "as its greeting"),
    ("EHLO", Step.GREETING, "to EHLO"),
    ("MAIL", Step.SENDER, "to MAIL"),
])
def test_security_35_an_endless_reply_is_cut_at_the_limit_and_explained_at_its_step(flooding_server, after, step,
                                                                                    words):
    address = flooding_server(after=after)

    with peak_allocation() as memory:
        result = send(settings_for(address))

    assert memory["peak"] < FEW_MEGABYTES
    error = result.error
    assert not result.ok and error.step is step and not error.transient
    assert "sent an oversized reply" in str(error) and words in str(error) and "64 KiB" in str(error)
    assert error.code is None and error.reply is None
    assert transcript_size(result.transcript) <= MAX_TRANSCRIPT + 2000
    assert any("cut off" in line for line in result.transcript)


@pytest.mark.parametrize("after,words", [(None, "as its greeting"), ("EHLO", "to EHLO")])
def test_security_35_a_reply_line_past_the_line_limit_is_explained_with_that_limit(flooding_server, after, words):
    address = flooding_server(after=after, size=9000, line=9000)  # the first 9,000-byte line passes the line limit

    result = send(settings_for(address))

    error = result.error
    assert not result.ok and error.step is Step.GREETING and not error.transient
    assert str(error) == (f"{address[0]} sent an oversized reply (a line longer than 8 KiB) {words}, so the "
                          "connection was closed.")
    assert any("a reply line went on past 8 KiB" in line for line in result.transcript)
    assert not any("64 KiB" in line for line in result.transcript)


def test_a_long_reply_within_the_limit_is_read_whole(flooding_server):
    address = flooding_server(size=MAX_REPLY // 2)

    result = send(settings_for(address))

    assert result.ok, result.error
    greeting = [line for line in result.transcript if line.startswith("S: 220")]
    assert len(greeting) > MAX_REPLY // 2 // 1000
    assert greeting[-1] == "S: 220 end of a very long reply"


# --- the test dialog ----------------------------------------------------------------------------------------------


def test_security_35_a_hostile_greeting_gives_a_small_page_and_costs_a_few_megabytes(app, admin, flooding_server):
    app.config.update(SMTP_TIMEOUT=20, SMTP_DEADLINE=40)
    host, port = flooding_server()
    account = make_account(name="Hostile", host=host, port=port)
    form = {"to": "rita@example.org", "subject": "Check", "body": "Hello.", "next": "/accounts/"}
    # Once outside the measure: the first answer loads templates and Babel's locale data (about 4 MB, once).
    admin.htmx("post", f"/accounts/{account.id}/test", data=form)

    with peak_allocation() as memory:
        response = admin.htmx("post", f"/accounts/{account.id}/test", data=form)

    assert memory["peak"] < FEW_MEGABYTES
    html = text_of(response)
    assert len(html.encode()) < 1024 * 1024
    dialog = dialog_of(html)
    assert "<strong>Step: server greeting</strong>" in dialog
    assert f"{host} sent an oversized reply (more than 64 KiB) as its greeting" in dialog
    assert "permanent — fix the settings" in dialog
    assert "cut off" in dialog  # the transcript says where it stopped


# --- the worker ---------------------------------------------------------------------------------------------------


def test_security_35_a_notification_through_a_hostile_server_fails_with_the_explanation(app, flooding_server,
                                                                                        monkeypatch):
    outcomes = []
    original = Worker._record
    monkeypatch.setattr(Worker, "_record", lambda self, noted: outcomes.extend(noted) or original(self, noted))
    host, port = flooding_server(after="EHLO")
    account = make_account(host=host, port=port, is_default=True)
    notification_id = send_notification(account=account, to=["ana@example.org"], subject="Disk", text="Full.")

    with peak_allocation() as memory:
        drain(smtp_timeout=20, smtp_deadline=40, lease_seconds=90)

    assert memory["peak"] < FEW_MEGABYTES
    notification = Notification.get_by_id(notification_id)
    assert notification.status == "failed" and notification.attempts == 1
    assert notification.last_step == "greeting"
    assert "sent an oversized reply (more than 64 KiB) to EHLO" in reply_words(notification.last_reply)
    attempt = DeliveryAttempt.get(DeliveryAttempt.notification == notification_id)
    assert len(attempt.reply) < 1000 and "oversized reply" in reply_words(attempt.reply)
    [outcome] = outcomes
    assert transcript_size(outcome.result.transcript) <= MAX_TRANSCRIPT + 2000


# --- an HTTP CONNECT proxy ----------------------------------------------------------------------------------------


@pytest.fixture
def endless_http_proxy():
    """A fake HTTP proxy that answers CONNECT with a status line and then header lines without end: a Hop to it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    done = threading.Event()

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            try:
                while not conn.recv(1024).endswith(b"\r\n\r\n"):
                    pass
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n")
                chunk = b"X-Padding: " + b"x" * 1000 + b"\r\n"
                while not done.is_set():
                    conn.sendall(chunk)
            except OSError:  # the client closed the connection
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield Hop("http", *listener.getsockname())
    done.set()
    listener.close()
    thread.join(5)


def test_security_35_an_http_proxy_answer_without_end_is_cut_off_and_explained(endless_http_proxy):
    with pytest.raises(MailError) as raised:
        open_connection("127.0.0.1", 25, timeout=10, hop=endless_http_proxy)

    error = raised.value
    assert error.step is Step.PROXY and not error.transient
    assert "sent an oversized reply" in str(error) and "16 KiB" in str(error)


def test_a_transcript_keeps_a_limited_share_of_server_lines_and_all_of_ours():
    transcript = Transcript()
    transcript.note("*: connected to smtp.test:25")
    for n in range(200):
        transcript.note(f"S: 250-{'x' * 995}")
        transcript.note(f"C: RCPT TO:<r{n}@example.org>")

    lines = transcript.take()

    server = [line for line in lines if line.startswith("S:")]
    assert sum(map(len, server)) <= MAX_TRANSCRIPT
    assert lines.count(TRANSCRIPT_CUT) == 1 and lines.index(TRANSCRIPT_CUT) < len(lines) - 1
    assert len([line for line in lines if line.startswith("C:")]) == 200  # what we said stays readable
    assert transcript.take() == []
