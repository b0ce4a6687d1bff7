"""RFC 2920 PIPELINING against real aiosmtpd servers that offer it (or not): one write for MAIL, RCPT and DATA,
and a session still in step after any refusal. (tests/test_mail_transport.py runs all its cases both ways.)"""
import pytest

from tests.test_mail_transport import BOUNCE, RECIPIENT, make_message, send
from webapp.mail import SmtpSession, Step


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
