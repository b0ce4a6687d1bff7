"""The test dialog's message: headers, Message-ID on the sender's (punycoded) domain, UTF-8 text body."""
import email
import email.policy
import time
from email.utils import parsedate_to_datetime

import pytest

from webapp.mail import compose_test_message


def compose(**overrides):
    fields = {"sender": "Ops Desk <ops@example.com>", "to": "to@example.net", "subject": "MENSAGEM DE TESTE!",
              "body": "ATENÇÃO: ESTA É UMA MENSAGEM DE TESTE!"}
    return compose_test_message(**{**fields, **overrides})


def test_headers_and_body():
    message = compose()
    wire = bytes(message)
    parsed = email.message_from_bytes(wire, policy=email.policy.default)

    assert parsed["From"] == "Ops Desk <ops@example.com>"
    assert parsed["To"] == "to@example.net"
    assert parsed["Subject"] == "MENSAGEM DE TESTE!"
    assert abs(parsedate_to_datetime(parsed["Date"]).timestamp() - time.time()) < 60
    assert parsedate_to_datetime(parsed["Date"]).tzinfo is not None
    assert parsed["Message-ID"].startswith("<") and parsed["Message-ID"].endswith("@example.com>")
    assert parsed.get_content_type() == "text/plain" and parsed.get_content_charset() == "utf-8"
    assert parsed.get_content().strip() == "ATENÇÃO: ESTA É UMA MENSAGEM DE TESTE!"
    assert b"\r\n" in wire and b"\n" not in wire.replace(b"\r\n", b"")  # SMTP policy: CRLF only
    assert wire.isascii()  # no 8bit body: smtplib does not ask for BODY=8BITMIME


def test_each_message_gets_its_own_message_id():
    assert compose()["Message-ID"] != compose()["Message-ID"]


def test_internationalised_sender_domain_is_punycoded():
    message = compose(sender="Büro <ops@bücher.example>", to="Zoë <zoe@bücher.example>")

    assert message["Message-ID"].endswith("@xn--bcher-kva.example>")
    assert message["From"].addresses[0].domain == "xn--bcher-kva.example"
    assert message["To"].addresses[0].domain == "xn--bcher-kva.example"
    assert bytes(message).isascii()


@pytest.mark.parametrize("to", ["a@b@c", "a <b>", "a, b@example.com", "@", "to@", "", "x\r\nBcc: evil@example.com"])
def test_anything_but_one_address_is_refused(to):
    with pytest.raises(ValueError):
        compose(to=to)


def test_line_breaks_in_the_subject_cannot_add_headers():
    with pytest.raises(ValueError):
        compose(subject="Hello\r\nBcc: evil@example.com")
