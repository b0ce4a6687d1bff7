"""RFC 2920 PIPELINING against real aiosmtpd servers that offer it (or not): one write for MAIL, RCPT and DATA,
and a session still in step after any refusal. (tests/test_mail_transport.py runs all its cases both ways.)"""
import pytest

from tests.support.mail import BOUNCE, RECIPIENT, make_message, send
from webapp.mail import SmtpSession, Step
from webapp.mail.compose import message_bytes


def test_a_server_offering_pipelining_gets_mail_rcpt_and_data_in_one_write(smtp_server):
    server = smtp_server("plain", pipelining=True)

    with SmtpSession(server.settings()) as session:
        results = [session.send(make_message(subject=f"n{n}", body=".leading dot\n..two"), envelope_from=BOUNCE,
                                recipients=[RECIPIENT, "cc@example.net"]) for n in range(3)]

    assert all(result.ok for result in results)
    assert server.handler.mail_with_more_buffered == [True, True, True]  # RCPT and DATA were already there
    assert [r.message["Subject"] for r in server.received] == ["n0", "n1", "n2"]
    assert server.received[0].rcpt_tos == [RECIPIENT, "cc@example.net"]
    assert ".leading dot\r\n..two" in server.received[0].content.decode()
    lines = results[1].transcript
    assert [line[:7] for line in lines[:3]] == ["C: mail", "C: rcpt", "C: rcpt"]
    assert "C: data" in lines and any(line.startswith("C: <message") for line in lines)


def test_lockstep_server_is_never_sent_a_group(smtp_server):
    server = smtp_server("plain", pipelining=False)

    assert send(server).ok
    assert server.handler.mail_with_more_buffered == [False]


@pytest.mark.parametrize("replies, step", [
    ({"MAIL": "550 5.7.1 not allowed"}, Step.SENDER),
    ({"RCPT": "550 5.1.1 no such user"}, Step.RECIPIENT),
    ({"DATA": "451 4.3.0 try later"}, Step.DATA),
])
def test_after_a_pipelined_refusal_the_session_is_in_step_for_the_next_message(smtp_server, replies, step):
    server = smtp_server("plain", pipelining=True, replies=replies)

    with SmtpSession(server.settings()) as session:
        refused = session.send(make_message(), envelope_from=BOUNCE, recipients=[RECIPIENT])
        server.handler.replies.clear()
        delivered = session.send(make_message(subject="next"), envelope_from=BOUNCE, recipients=[RECIPIENT])

    assert refused.error.step is step
    assert delivered.ok and server.connections == 1
    assert [r.message["Subject"] for r in server.received] == ["next"]


# --- The next message's envelope with this one's final dot (SmtpSession.send's then) ---------------------------


def wire(subject: str, recipients=(RECIPIENT,)) -> tuple[bytes, str, list[str]]:
    """A message as the worker hands it to the session: (bytes, envelope sender, recipients)."""
    return message_bytes(make_message(subject=subject), False), BOUNCE, list(recipients)


def send_wire(session, message, then=None):
    data, sender, recipients = message
    return session.send(data, envelope_from=sender, recipients=recipients, then=then)


def test_the_next_messages_envelope_goes_with_the_final_dot(smtp_server):
    server = smtp_server("plain", pipelining=True)
    messages = [wire(f"n{n}") for n in range(3)]

    with SmtpSession(server.settings()) as session:
        results = [send_wire(session, message, then=messages[n + 1] if n + 1 < len(messages) else None)
                   for n, message in enumerate(messages)]

    assert all(result.ok for result in results) and server.connections == 1
    assert [r.message["Subject"] for r in server.received] == ["n0", "n1", "n2"]
    # One write carried each final dot and the next MAIL, RCPT and DATA: one round trip per message.
    assert server.handler.data_with_more_buffered == [True, True, False]
    # Each message's transcript holds its own commands, wherever they were written.
    for result in results:
        assert [line[:7] for line in result.transcript if line[:7] in ("C: mail", "C: rcpt", "C: data")] == [
            "C: mail", "C: rcpt", "C: data"]


def test_when_another_message_comes_instead_the_announced_one_is_never_completed(smtp_server):
    server = smtp_server("plain", pipelining=True)

    with SmtpSession(server.settings()) as session:
        first = send_wire(session, wire("first"), then=wire("announced"))
        other = send_wire(session, wire("other"))

    assert first.ok and other.ok
    # The server was waiting for the announced message's content: the connection was dropped, not used.
    assert [r.message["Subject"] for r in server.received] == ["first", "other"]
    assert server.connections == 2


def test_closing_with_an_announced_message_sends_no_quit_into_its_content(smtp_server):
    server = smtp_server("plain", pipelining=True)

    session = SmtpSession(server.settings())
    assert send_wire(session, wire("first"), then=wire("announced")).ok
    session.close()
    # A second session's message arrives after the first connection is gone.
    with SmtpSession(server.settings()) as later:
        assert send_wire(later, wire("later")).ok

    assert [r.message["Subject"] for r in server.received] == ["first", "later"]
    assert server.handler.commands.count("QUIT") == 1  # the later session's


def test_a_refused_message_does_not_reset_the_announced_transaction(smtp_server):
    server = smtp_server("plain", pipelining=True, replies={"DATA": "554 5.6.0 message refused"})

    following = wire("next")
    with SmtpSession(server.settings()) as session:
        refused = send_wire(session, wire("refused"), then=following)
        server.handler.replies.clear()
        delivered = send_wire(session, following)

    assert refused.error.step is Step.DATA and refused.code == 554
    assert delivered.ok and server.connections == 1
    assert [r.message["Subject"] for r in server.received] == ["next"]
    assert "RSET" not in server.handler.commands


def test_a_lockstep_server_never_gets_an_announced_envelope(smtp_server):
    server = smtp_server("plain", pipelining=False)

    following = wire("b")
    with SmtpSession(server.settings()) as session:
        assert send_wire(session, wire("a"), then=following).ok
        assert send_wire(session, following).ok

    assert server.handler.data_with_more_buffered == [False, False]
    assert [r.message["Subject"] for r in server.received] == ["a", "b"] and server.connections == 1
