"""Composing messages without a server: notifications by their account's rules (headers, parts, encodings, refusals)
and the test dialog's message."""
import email
import email.header
import email.policy
import email.utils
import quopri
import re
import time
from datetime import datetime
from email.utils import parsedate_to_datetime

import pytest

from webapp.mail import compose_test_message
from webapp.mail.compose import (
    Attachment,
    compose_notification,
    envelope_address,
    header_block,
    message_bytes,
    new_message_id,
    notification_bytes,
    resolve_addressing,
    with_footer,
)


def compose(**overrides):
    fields = dict(sender="Ops <ops@example.com>", to=["ana@example.org"], subject="Disk almost full",
                  text="The disk is 91% full.", message_id="<fixed.1@example.com>")
    fields.update(overrides)
    return compose_notification(**fields)


def parsed(message):
    """The message as a receiving server would parse its bytes."""
    return email.message_from_bytes(message.as_bytes(), policy=email.policy.default)


def content(part) -> str:
    """A text part's decoded content with the wire's CRLF read as LF."""
    return part.get_content().replace("\r\n", "\n")


def test_a_text_notification_has_the_headers_of_the_account_and_the_notification():
    message = parsed(compose(cc=["Bia <bia@example.org>"], reply_to="help@example.com",
                             date=datetime(2030, 1, 2, 3, 4, 5)))
    assert message["From"] == "Ops <ops@example.com>"
    assert message["To"] == "ana@example.org"
    assert message["Cc"] == "Bia <bia@example.org>"
    assert message["Reply-To"] == "help@example.com"
    assert message["Subject"] == "Disk almost full"
    assert message["Date"] == "Wed, 02 Jan 2030 03:04:05 +0000"
    assert message["Message-ID"] == "<fixed.1@example.com>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Disposition-Notification-To"] is None
    assert message["Bcc"] is None
    assert message.get_content_type() == "text/plain"
    assert content(message) == "The disk is 91% full.\n"


def test_the_wire_form_uses_crlf_only():
    raw = compose(text="one\ntwo\r\nthree\rfour").as_bytes()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")


def test_text_and_html_make_a_multipart_alternative():
    message = parsed(compose(html="<p>The disk is <b>91%</b> full.</p>"))
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert "<b>91%</b>" in message.get_body(("html",)).get_content()


def test_attachments_make_a_multipart_mixed_message():
    message = parsed(compose(html="<p>x</p>", attachments=[Attachment("accounts.csv", "text/csv", b"a;b\r\n1;2\r\n")]))
    assert message.get_content_type() == "multipart/mixed"
    attachment = next(message.iter_attachments())
    assert attachment.get_filename() == "accounts.csv"
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_payload(decode=True) == b"a;b\r\n1;2\r\n"


def test_several_recipients_utf8_subject_and_names_and_internationalised_domains():
    message = compose(sender="Operações <ops@exämple.com>", to=["José <jose@bücher.example>", "ana@example.org"],
                      subject="Relatório de falhas — ação necessária", text="Olá, José!")
    raw = message.as_bytes()
    assert raw.isascii()  # encoded words and punycode: no SMTPUTF8 needed
    assert b"ops@xn--exmple-cua.com" in raw
    assert b"jose@xn--bcher-kva.example" in raw
    back = parsed(message)
    assert back["Subject"] == "Relatório de falhas — ação necessária"
    assert back["From"].addresses[0].display_name == "Operações"
    assert [a.addr_spec for a in back["To"].addresses] == ["jose@xn--bcher-kva.example", "ana@example.org"]
    assert content(back) == "Olá, José!\n"


LONG_NAME = "Maria da Conceição Gonçalves de Araújo Magalhães Brandão Simões"
LONG_SUBJECT = "Relatório diário de operações nº 42: atenção à manutenção programada do servidor de produção às 03h15"


def rfc2047(text: str) -> str:
    """A header text as an RFC 2047 reader decodes it: the space between two encoded words is dropped (6.2)."""
    return str(email.header.make_header(email.header.decode_header(text)))


@pytest.mark.parametrize("html", [None, "<p>Olá</p>"])  # written directly / through the email package
def test_long_non_ascii_names_and_subjects_go_as_encoded_words_folded_within_78_columns(html):
    raw = notification_bytes(sender=f"{LONG_NAME} <ops@example.com>", subject=LONG_SUBJECT, text="Olá", html=html,
                             to=[f"{LONG_NAME} <ana@example.org>", "Zé <ze@example.org>", "Bob Smith <bob@example.org>",
                                 "carol@example.org"], message_id="<fixed.1@example.com>")
    head = raw.partition(b"\r\n\r\n")[0]
    assert head.isascii() and max(len(line) for line in head.split(b"\r\n")) <= 78
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert rfc2047(message["Subject"]) == LONG_SUBJECT
    assert [(rfc2047(name), address) for name, address in email.utils.getaddresses(message.get_all("To"))] == [
        (LONG_NAME, "ana@example.org"), ("Zé", "ze@example.org"), ("Bob Smith", "bob@example.org"),
        ("", "carol@example.org")]
    assert email.utils.getaddresses(message.get_all("From"))[0][1] == "ops@example.com"


def test_a_subject_that_looks_like_an_encoded_word_reads_back_as_typed():
    subject = "Literal =?utf-8?q?x?= in a subject"
    message = parsed(compose(subject=subject))
    assert message["Subject"] == subject


def test_message_id_is_on_the_senders_punycoded_domain_and_unique():
    first, second = new_message_id("Ops <ops@exämple.com>"), new_message_id("ops@exämple.com")
    assert first.startswith("<") and first.endswith("@xn--exmple-cua.com>")
    assert first != second


def test_the_envelope_address_is_the_bare_address_with_a_punycoded_domain():
    assert envelope_address("Bounces <bounces@exämple.com>") == "bounces@xn--exmple-cua.com"


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: victim@example.com", "Hi\nX-Injected: 1", "Hi\rthere"])
def test_security_19_line_breaks_in_the_subject_are_refused(subject):
    with pytest.raises(ValueError):
        compose(subject=subject)


@pytest.mark.parametrize("field", ["sender", "reply_to", "confirmation_email"])
def test_security_19_line_breaks_in_names_and_addresses_are_refused(field):
    value = "Ops\r\nBcc: victim@example.com <ops@example.com>"
    with pytest.raises(ValueError):
        compose(**{field: value})


def test_security_19_line_breaks_in_a_recipient_name_are_refused():
    with pytest.raises(ValueError):
        compose(to=["Ana\nBcc: victim@example.com <ana@example.org>"])


def test_read_confirmation_asks_with_disposition_notification_to():
    message = parsed(compose(confirmation_email="Recibos Ç <receipts@example.com>"))
    assert email.utils.parseaddr(str(message["Disposition-Notification-To"])) == ("Recibos Ç",
                                                                                  "receipts@example.com")


def test_the_footer_is_appended_to_the_text_and_escaped_into_the_html():
    message = parsed(compose(text="Body.", html="<html><body><p>Body.</p></body></html>",
                             footer="Sent by <Ops> & co.\nDo not reply."))
    text = content(message.get_body(("plain",)))
    html = content(message.get_body(("html",)))
    assert text == "Body.\n\nSent by <Ops> & co.\nDo not reply.\n"
    assert "Sent by &lt;Ops&gt; &amp; co.<br>\nDo not reply." in html
    assert html.index("Do not reply") < html.index("</body>")


def test_no_footer_text_means_the_bodies_are_unchanged():
    assert with_footer("Body.", "<p>Body.</p>", "  \n") == ("Body.", "<p>Body.</p>")
    assert with_footer("Body.", None, None) == ("Body.", None)


def test_the_header_block_is_what_goes_on_the_wire_before_the_body():
    message = compose()
    block = header_block(message_bytes(message))
    assert block.endswith("\r\n") and "\r\n\r\n" not in block
    assert "Message-ID: <fixed.1@example.com>\r\n" in block
    assert message.as_bytes().startswith(block.encode())


ACCOUNT = dict(reply_to="reply@example.com", return_path="bounces@example.com",
               confirmation_email="receipts@example.com")
OVERRIDES = dict(override_reply_to="o-reply@example.com", override_return_path="o-bounces@example.com",
                 override_confirmation="o-receipts@example.com")


@pytest.mark.parametrize("read_confirmation", [True, False])
@pytest.mark.parametrize("force_settings", [True, False])
@pytest.mark.parametrize("with_overrides", [True, False])
def test_account_rules_for_every_combination(read_confirmation, force_settings, with_overrides):
    rules = resolve_addressing(**ACCOUNT, read_confirmation=read_confirmation, force_settings=force_settings,
                               **(OVERRIDES if with_overrides else {}))
    honoured = with_overrides and not force_settings
    assert rules.reply_to == ("o-reply@example.com" if honoured else "reply@example.com")
    assert rules.return_path == ("o-bounces@example.com" if honoured else "bounces@example.com")
    expected_confirmation = "o-receipts@example.com" if honoured else "receipts@example.com"
    assert rules.confirmation_email == (expected_confirmation if read_confirmation else None)
    assert rules.overrides_ignored == (with_overrides and force_settings)


def test_one_override_leaves_the_other_account_settings_in_place():
    rules = resolve_addressing(**ACCOUNT, read_confirmation=True, force_settings=False,
                               override_reply_to="o-reply@example.com")
    assert (rules.reply_to, rules.return_path, rules.confirmation_email) == (
        "o-reply@example.com", "bounces@example.com", "receipts@example.com")


# --- The test dialog's message --------------------------------------------------------------------------------


def compose_test(**overrides):
    """The test dialog's message with these fields changed."""
    fields = {"sender": "Ops Desk <ops@example.com>", "to": "to@example.net", "subject": "MENSAGEM DE TESTE!",
              "body": "ATENÇÃO: ESTA É UMA MENSAGEM DE TESTE!"}
    return compose_test_message(**{**fields, **overrides})


def test_headers_and_body():
    message = compose_test()
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
    assert compose_test()["Message-ID"] != compose_test()["Message-ID"]


def test_internationalised_sender_domain_is_punycoded():
    message = compose_test(sender="Büro <ops@bücher.example>", to="Zoë <zoe@bücher.example>")

    assert message["Message-ID"].endswith("@xn--bcher-kva.example>")
    assert message["From"].addresses[0].domain == "xn--bcher-kva.example"
    assert message["To"].addresses[0].domain == "xn--bcher-kva.example"
    assert bytes(message).isascii()


@pytest.mark.parametrize("to", ["a@b@c", "a <b>", "a, b@example.com", "@", "to@", "", "x\r\nBcc: evil@example.com"])
def test_anything_but_one_address_is_refused(to):
    with pytest.raises(ValueError):
        compose_test(to=to)


def test_line_breaks_in_the_subject_cannot_add_headers():
    with pytest.raises(ValueError):
        compose_test(subject="Hello\r\nBcc: evil@example.com")


@pytest.mark.parametrize("html", [None, "<p>Olá</p>"])  # written directly / through the email package
def test_a_subject_of_one_998_character_word_is_folded_into_lines_of_78(html):
    subject = "x" * 998  # a long token or URL: MAX_SUBJECT allows it, RFC 5322 allows no line that long
    raw = notification_bytes(sender="ops@example.com", to=["ana@example.org"], subject=subject, text="Olá",
                             html=html, message_id="<fixed.1@example.com>")
    head = raw.partition(b"\r\n\r\n")[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    assert rfc2047(email.message_from_bytes(raw, policy=email.policy.compat32)["Subject"]) == subject


# --- Line limits, read back by independent parsers ---------------------------------------------------------

PT_TEXT = ("Olá, equipe de operações!\n\n"
           "A manutenção programada do servidor de produção começará às 03h15 e deverá terminar às 04h00; durante "
           "esse período a aplicação ficará indisponível e as notificações serão enfileiradas.\n"
           "Ação necessária: nenhuma. Dúvidas? Responda a esta mensagem ou ligue para o plantão.\n")
LONG_LINES = ("x" * 76 + "\n" + "y" * 77 + "\n" + "z" * 78 + "\n" + "A line that is just long enough. " * 12 + "\n"
              + "é" * 40 + "\n" + "ação=" * 30 + "\n" + "https://example.com/" + "a" * 300 + "\n")
LONG_TOKEN = "alertas.servidor-de-backup-secundario.datacenter-sao-paulo.exemplos.com.br"  # 74 characters: quoted, 76
CC = [f'"{LONG_TOKEN}" <alertas@corp.local>', f"{LONG_NAME} <maria.simoes@exemplo.com.br>",
      '"Silva, Ana Beatriz" <ana.silva@exemplo.com.br>', 'Night "Shift" Team <night@corp.local>',
      "Zé <ze@exemplo.com.br>", "carol@exemplo.com.br"]
NOTIFICATION = dict(sender="Operações <ops@exemplo.com.br>", to=["Ana <ana@exemplo.com.br>"], subject="Relatório",
                    text=PT_TEXT, message_id="<fixed.1@exemplo.com.br>", reply_to="Plantão <plantao@corp.local>",
                    confirmation_email="Recibos <recibos@corp.local>", footer="Enviado pelo monitoramento.")
COMPOSED = {
    "pt-BR text": lambda: notification_bytes(**NOTIFICATION),
    "long lines": lambda: notification_bytes(**{**NOTIFICATION, "text": LONG_LINES}),
    "cc": lambda: notification_bytes(**{**NOTIFICATION, "cc": CC}),
    "long subject": lambda: notification_bytes(**{**NOTIFICATION, "subject": LONG_SUBJECT * 3}),
    "long subject word": lambda: notification_bytes(**{**NOTIFICATION, "subject": "Falha:" + "ç" * 120}),
    "text+HTML": lambda: notification_bytes(**{**NOTIFICATION, "cc": CC, "subject": LONG_SUBJECT,
                                               "html": f"<p>{PT_TEXT}</p><p>{LONG_LINES}</p>"}),
    "attachment": lambda: notification_bytes(**{**NOTIFICATION, "html": "<p>Olá</p>", "attachments": [
        Attachment("relatório-de-contas-smtp.csv", "text/csv", "conta;remetente\r\nação;é\r\n".encode())]}),
    "SMTPUTF8": lambda: notification_bytes(smtputf8=True, **{**NOTIFICATION, "to": ["José <joão@exemplo.com.br>"],
                                                             "cc": CC}),
    "test message": lambda: message_bytes(compose_test_message(
        sender="Operações <ops@exemplo.com.br>", to=f"{LONG_NAME} <maria.simoes@exemplo.com.br>",
        subject=LONG_SUBJECT, body=PT_TEXT + LONG_LINES)),
}
ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")  # RFC 2047 2


@pytest.mark.parametrize("name", COMPOSED)
def test_composed_messages_keep_to_the_line_limits_of_the_rfcs(name):
    raw = COMPOSED[name]()
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")  # CRLF only
    text = raw.decode("utf-8")
    # The email package's reader, told to raise on any defect it notices (RFC 6532: UTF-8 read as text).
    message = email.message_from_string(text, policy=email.policy.SMTPUTF8.clone(raise_on_defect=True))
    assert message["MIME-Version"] == "1.0" and message["Auto-Submitted"] == "auto-generated"
    for part in message.walk():
        if part is not message:
            assert "MIME-Version" not in part, name  # RFC 2045 4: the message's header, not its parts'
    # Every header line, the parts' included, as it came (the parser keeps a header's folded source): at most 78
    # characters (RFC 5322 2.1.1), and every encoded word in it at most 75 (RFC 2047 2).
    for part in message.walk():
        for header, value in part.raw_items():
            for line in f"{header}: {value}".split("\r\n"):
                assert len(line) <= 78, (name, line)
                assert all(len(word) <= 75 for word in ENCODED_WORD.findall(line)), (name, line)
    # Every quoted-printable body line: at most 76 characters (RFC 2045 6.7 (5)), decoded by quopri to its text.
    bodies = [part for part in message.walk() if not part.is_multipart()]
    for part in bodies:
        if part["Content-Transfer-Encoding"] == "quoted-printable":
            payload = part.get_payload()
            assert max(len(line) for line in payload.split("\r\n")) <= 76, name
            decoded = quopri.decodestring(payload.encode("ascii")).decode("utf-8").replace("\r\n", "\n")
            assert decoded == part.get_content().replace("\r\n", "\n")
    plain = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert plain.startswith(PT_TEXT if name not in ("long lines",) else LONG_LINES)


def test_the_test_message_is_auto_submitted_as_notifications_are():
    assert compose_test()["Auto-Submitted"] == "auto-generated"  # RFC 3834: no vacation reply to it
