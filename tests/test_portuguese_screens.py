"""The pt-BR interface speaks Portuguese where it showed English: a test's outcome on the report and a delivery's
last reply on the deliveries (kept as facts and said in the reader's language), a changed secret in the audit log,
the CSV file name."""
import re

from tests.support.factories import credential_form, make_credential, make_notification, summary_of
from tests.support.outbox import account_for, drain
from webapp.models import Notification, SmtpAccount
from webapp.outbox import send_notification
from webapp.outbox.message import reply_words

ENGLISH = re.compile(r"does not offer|so the connection|changed|smtp-accounts|Delivery failed|authentication\b|"
                     r"refused the|is disabled|Gave up")


def words_of(html: str) -> str:
    """What a reader sees of a page: its text and its tooltips, without tags and htmx attributes."""
    titles = " ".join(re.findall(r'title="([^"]*)"', html))
    return re.sub(r"<[^>]*>", " ", re.sub(r"<script.*?</script>", "", html, flags=re.S)) + " " + titles


def test_a_failed_test_reads_in_each_readers_language_on_the_report(admin, smtp_server):
    server = smtp_server("plain")  # offers no STARTTLS
    account = account_for(server, name="Relay", secure=True, secure_type="tls")
    admin.use_language("en").post(f"/accounts/{account.id}/test",
                                  data={"to": "ops@example.com", "subject": "s", "body": "b"})
    assert SmtpAccount.get_by_id(account.id).last_test_ok is False
    assert summary_of(account, "en") == "STARTTLS: 127.0.0.1 does not offer STARTTLS, so the connection cannot be " \
                                        "encrypted."

    pt = summary_of(account, "pt_BR")
    assert pt.startswith("STARTTLS: 127.0.0.1 não oferece STARTTLS")
    report = words_of(admin.use_language("pt_BR").get("/accounts/").get_data(as_text=True))
    assert "não oferece STARTTLS" in report and not ENGLISH.search(report)
    csv_text = admin.get("/accounts/export.csv").get_data(as_text=True)
    assert "não oferece STARTTLS" in csv_text and not ENGLISH.search(csv_text)


def test_a_refused_login_during_delivery_reads_in_portuguese(app, smtp_server):
    from tests.support.outbox import drain
    from webapp.outbox import send_notification
    server = smtp_server(users={"mailer@example.com": "the-right-one"})
    account = account_for(server, users={"mailer@example.com": "a-wrong-one"})
    send_notification(to=["ops@example.com"], subject="s", text="t")
    drain()
    assert summary_of(account, "pt_BR").startswith("Falha na entrega: autenticação: 535")


def test_a_changed_secret_reads_alterado_in_the_portuguese_audit_log(admin):
    credential = make_credential(name="relay login")
    admin.post(f"/credentials/{credential.id}/edit",
               data=credential_form(name="relay login", secret="a-New-secret-42"))
    admin.use_language("pt_BR")
    page = words_of(admin.get("/audit/?object_type=credential").get_data(as_text=True))
    assert "Segredo: alterado" in page and not ENGLISH.search(page)
    csv_text = admin.get("/audit/export.csv?object_type=credential").get_data(as_text=True)
    assert "Segredo: alterado" in csv_text and not ENGLISH.search(csv_text)


def test_the_csv_file_names_are_portuguese(admin):
    admin.use_language("pt_BR")
    for url, name in (("/accounts/export.csv", "contas-smtp.csv"), ("/audit/export.csv", "log-de-auditoria-")):
        disposition = admin.get(url).headers["Content-Disposition"]
        assert name in disposition and not ENGLISH.search(disposition)


def test_a_failed_delivery_reads_in_each_readers_language_on_the_deliveries(admin, smtp_server):
    """The server's own words stay as it said them; ours are said in the reader's language, on the list, on the
    notification's page (its last reply and each attempt) and on the accounts report's last delivery."""
    server = smtp_server("plain", replies={"RCPT": "550 5.1.1 no such user"})
    account_for(server, name="Relay")
    refused = send_notification(to=["ghost@example.com"], subject="s", text="t")
    disabled = account_for(server, name="Old relay", is_default=False)
    send_notification(account=disabled, to=["ops@example.com"], subject="s", text="t")
    SmtpAccount.update(enabled=False).where(SmtpAccount.id == disabled.id).execute()
    drain()

    english = words_of(admin.use_language("en").get("/deliveries/").get_data(as_text=True))
    assert "550 5.1.1 no such user — The server refused the recipient ghost@example.com." in english
    assert "The account Old relay is disabled." in english
    admin.use_language("pt_BR")
    for url in ("/deliveries/", f"/deliveries/{refused}", "/accounts/"):
        page = words_of(admin.get(url).get_data(as_text=True))
        assert "550 5.1.1 no such user — O servidor recusou o destinatário ghost@example.com." in page, url
        assert not ENGLISH.search(page), (url, ENGLISH.search(page))
    assert "A conta Old relay está desativada." in words_of(admin.get("/deliveries/").get_data(as_text=True))


def test_a_reply_stored_as_a_sentence_before_facts_were_kept_shows_as_it_was(admin):
    make_notification("failed", last_code=554, last_reply="554 refused (Gave up after 3 attempts.)")
    page = words_of(admin.use_language("pt_BR").get("/deliveries/").get_data(as_text=True))
    assert "554 refused (Gave up after 3 attempts.)" in page


def test_every_sentence_of_ours_in_a_delivery_reply_goes_through_the_translation(app, smtp_server):
    """Giving up, recipients refused among accepted ones, a worker that stopped: whatever the outbox adds to the
    server's reply reaches the reader through explain(), where the catalog says it in their language."""
    server = smtp_server("plain", replies={"DATA": "451 4.3.0 try again later"})
    account_for(server)
    gave_up = send_notification(to=["ops@example.com"], subject="s", text="t")
    drain(max_attempts=1)
    stored = Notification.get_by_id(gave_up).last_reply
    assert reply_words(stored) == ("451 4.3.0 try again later — The server refused the message. "
                                   "(Gave up: the attempt limit (1) was reached.)")
    assert reply_words(stored, lambda message, params: "‹ours›") == "451 4.3.0 try again later — ‹ours› (‹ours›)"
    partly = '{"ok": true, "code": 250, "reply": "2.0.0 Ok", "refused": [["ghost@example.com", 550, "no such user"]]}'
    assert reply_words(partly) == "250 2.0.0 Ok (refused: ghost@example.com: 550 no such user)"
    assert reply_words(partly, lambda message, params: "‹ours›") == "250 2.0.0 Ok (‹ours›)"
